"""The local engine answering 8 conversations at once (continuous batching) vs the same 8 one at a time, on
the bundled SmolLM2-135M, greedy, measured side by side in one run on this machine.

    .venv/bin/python benchmarks/batching.py [--conversations 8] [--max-new-tokens 48]

Prints total tokens/s for both, time-to-first-token p50 for both, the throughput ratio (target >= 3x), and
whether every batched reply is identical to its one-at-a-time reply. Never prints the replies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

PROMPTS = [
    "I can't sleep and my mind keeps racing about work.",
    "I've been feeling really lonely since I moved to a new city.",
    "My exams start next week and I'm panicking.",
    "How do I tell my friend I'm struggling without scaring her?",
    "I snapped at my kids today and I feel awful about it.",
    "Everything feels grey lately and I don't know why.",
    "My partner and I keep arguing about small things.",
    "I got some bad news at the doctor and I'm scared.",
    "I feel like I'm failing at everything at my new job.",
    "My best friend moved away and I miss her a lot.",
]


async def measure(conversations: int, max_new_tokens: int) -> None:
    from core.engines.bundled import bundled_model_dir
    from core.engines.local import TransformersEngine
    from core.prompts import build_messages, system_prompt
    from core.settings import load_settings

    folder = bundled_model_dir(load_settings().data_dir)
    engine = TransformersEngine(folder, max_new_tokens=max_new_tokens, temperature=0.0,
                                max_batch_size=conversations)
    engine.warm_up()
    chats = [build_messages(system_prompt(), [], PROMPTS[i % len(PROMPTS)]) for i in range(conversations)]

    async def answer(messages: list, t0: float) -> tuple[str, float]:
        first, text = None, ""
        async for piece in engine.stream(messages):
            first = first if first is not None else time.perf_counter() - t0
            text += piece
        return text, first if first is not None else time.perf_counter() - t0

    await answer(chats[0], time.perf_counter())  # warm caches before timing

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    alone: list[tuple[str, float]] = []
    for messages in chats:  # one at a time; each user's wait counts from when all of them had asked
        alone.append(await answer(messages, t0))
    alone_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    together = await asyncio.gather(*[answer(messages, t0) for messages in chats])
    together_seconds = time.perf_counter() - t0
    load_after = os.getloadavg()

    def tokens(results: list[tuple[str, float]]) -> int:
        return sum(len(engine.tokenizer(text, add_special_tokens=False)["input_ids"]) for text, _ in results)

    rows = {"one at a time": (alone, alone_seconds), "batched": (together, together_seconds)}
    print(f"\n{conversations} conversations arriving together, up to {max_new_tokens} new tokens each, greedy, "
          f"bundled SmolLM2-135M fp32 on CPU (load average {load_before:.2f} before, "
          f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} after; {os.cpu_count()} CPUs)")
    print(f"{'mode':<15}{'tokens':>8}{'wall s':>9}{'tokens/s':>10}{'TTFT p50 s':>12}{'TTFT max s':>12}")
    speeds = {}
    for name, (results, seconds) in rows.items():
        count = tokens(results)
        speeds[name] = count / seconds
        ttft = [first for _, first in results]
        print(f"{name:<15}{count:>8}{seconds:>9.1f}{speeds[name]:>10.1f}{statistics.median(ttft):>12.2f}"
              f"{max(ttft):>12.2f}")
    ratio = speeds["batched"] / speeds["one at a time"]
    same = sum(a[0] == b[0] for a, b in zip(alone, together, strict=True))
    print(f"throughput ratio batched/one-at-a-time: {ratio:.2f}x (target >= 3x)")
    print(f"batched replies identical to one-at-a-time replies: {same}/{conversations}")
    print(f"engine batch stats: {engine.batch_stats()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    asyncio.run(measure(args.conversations, args.max_new_tokens))


if __name__ == "__main__":
    main()
