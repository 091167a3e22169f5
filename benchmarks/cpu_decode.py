"""CPU decode speed of the bundled model on the same GGUF: transformers (fp32, dequantized from the GGUF) vs
llama.cpp (llama-cpp-python, Q4_1 as shipped), measured side by side in one run on this machine.

    .venv/bin/python benchmarks/cpu_decode.py [--runs 3] [--max-new-tokens 64] [--threads 2]

Decode speed counts the tokens after the first over the time after the first (prompt processing is reported
separately as time to first token). llama.cpp needs the optional `llama-cpp-python` package; without it the
llama.cpp row says so. Prints the load average next to the figures; never prints the replies.
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
]


async def timed(engine: object, messages: list, count_tokens: object) -> tuple[float, float]:
    """(time to first piece, decode tokens/s after it)."""
    t0, first, text = time.perf_counter(), None, ""
    async for piece in engine.stream(messages):  # type: ignore[attr-defined]
        first = first if first is not None else time.perf_counter()
        text += piece
    end = time.perf_counter()
    tokens = count_tokens(text)  # type: ignore[operator]
    first = first or end
    return first - t0, max(tokens - 1, 0) / max(end - first, 1e-9)


async def measure(runs: int, max_new_tokens: int, threads: int) -> None:
    import torch

    from core.engines.bundled import bundled_gguf_path, bundled_model_dir
    from core.engines.local import TransformersEngine
    from core.prompts import build_messages, system_prompt
    from core.settings import load_settings

    torch.set_num_threads(threads)
    gguf = bundled_gguf_path()
    local = TransformersEngine(bundled_model_dir(load_settings().data_dir), max_new_tokens=max_new_tokens,
                               temperature=0.0, max_batch_size=1)
    local.warm_up()

    def count(text: str) -> int:
        return len(local.tokenizer(text, add_special_tokens=False)["input_ids"])

    engines: dict[str, object] = {"transformers fp32": local}
    try:
        from core.engines.llamacpp import LlamaCppEngine

        llama = LlamaCppEngine(gguf, max_new_tokens=max_new_tokens, temperature=0.0, n_threads=threads, n_ctx=2048)
        llama.warm_up()
        engines["llama.cpp Q4_1"] = llama
    except Exception as exc:  # EngineUnavailable when llama-cpp-python is not installed
        print(f"llama.cpp row skipped: {exc}")

    chats = [build_messages(system_prompt(), [], PROMPTS[i % len(PROMPTS)]) for i in range(runs)]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    for engine in engines.values():
        await timed(engine, chats[0], count)  # warm-up
    for messages in chats:
        for name, engine in engines.items():  # interleaved: both see the same load
            results[name].append(await timed(engine, messages, count))

    load = os.getloadavg()
    print(f"\n{runs} prompts, up to {max_new_tokens} new tokens, greedy, {threads} threads, {gguf.name} "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs)")
    print(f"{'path':<20}{'TTFT p50 s':>12}{'decode tok/s p50':>18}")
    speed = {}
    for name, samples in results.items():
        speed[name] = statistics.median(s[1] for s in samples)
        print(f"{name:<20}{statistics.median(s[0] for s in samples):>12.2f}{speed[name]:>18.1f}")
    if len(speed) == 2:
        ratio = speed["transformers fp32"] / speed["llama.cpp Q4_1"]
        print(f"transformers/llama.cpp decode ratio: {ratio:.2f} "
              f"(Haven's fastest CPU path is llama.cpp itself with HAVEN_ENGINE=llamacpp or llama-server)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(measure(args.runs, args.max_new_tokens, args.threads))


if __name__ == "__main__":
    main()
