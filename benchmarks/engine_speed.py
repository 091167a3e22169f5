"""Time to first token and decode speed of the bundled model, raw engine and through the dialog manager,
measured side by side in one run on this machine.

    .venv/bin/python benchmarks/engine_speed.py [--runs 5] [--max-new-tokens 64]

The dialog manager adds the safety screen, Redis reads and writes and the output guard around the same engine;
the gap between the two rows is Haven's own overhead on the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "I can't sleep and my mind keeps racing about work.",
    "I've been feeling really lonely since I moved to a new city.",
    "My exams start next week and I'm panicking.",
    "How do I tell my friend I'm struggling without scaring her?",
    "I snapped at my kids today and I feel awful about it.",
    "Everything feels grey lately and I don't know why.",
]


async def measure(runs: int, max_new_tokens: int) -> None:
    from core.dialog import DialogManager
    from core.engines.bundled import bundled_model_dir
    from core.engines.local import TransformersEngine
    from core.prompts import build_messages, system_prompt
    from core.safety import SafetyScreen
    from core.settings import load_settings
    from core.store import EmbeddedRedis, RedisContextStore, connect_redis
    from core.types import IncomingMessage, UserRef

    settings = load_settings()
    started = time.perf_counter()
    folder = bundled_model_dir(settings.data_dir)
    engine = TransformersEngine(folder, max_new_tokens=max_new_tokens, temperature=0.0)
    engine.warm_up()
    print(f"model ready in {time.perf_counter() - started:.1f} s (conversion cached under {folder})")
    screen = SafetyScreen()
    screen.warm_up()

    async def raw(prompt: str) -> tuple[float, int, float]:
        t0, first, text = time.perf_counter(), None, ""
        async for piece in engine.stream(build_messages(system_prompt(), [], prompt)):
            first = first or time.perf_counter() - t0
            text += piece
        total = time.perf_counter() - t0
        return first or total, len(engine.tokenizer(text)["input_ids"]), total

    with EmbeddedRedis(Path(tempfile.mkdtemp()) / "redis") as redis_server:
        client = connect_redis(unix_socket_path=redis_server.socket_path)
        store = RedisContextStore(client, max_turns=12, max_tokens=1200, ttl_seconds=600)
        manager = DialogManager(store, engine, screen)

        async def managed(prompt: str, user: UserRef) -> tuple[float, int, float]:
            t0, first = time.perf_counter(), None

            class Sink:
                async def send(self, reply: object) -> None: ...

                async def partial(self, text_so_far: str) -> None:
                    nonlocal first
                    first = first or time.perf_counter() - t0

            reply = await manager.handle(IncomingMessage(user, prompt), Sink())
            total = time.perf_counter() - t0
            return first or total, len(engine.tokenizer(reply.text)["input_ids"]), total

        await raw("hello")  # warm caches before timing
        rows: dict[str, list[tuple[float, int, float]]] = {"raw engine": [], "dialog manager": []}
        for n in range(runs):
            prompt = PROMPTS[n % len(PROMPTS)]
            user = UserRef("bench", str(n))
            await store.update_profile(user, consent=True)
            rows["raw engine"].append(await raw(prompt))
            rows["dialog manager"].append(await managed(prompt, user))
        await client.aclose()

    print(f"\n{runs} prompts, up to {max_new_tokens} new tokens, greedy, bundled SmolLM2-135M (fp32, CPU)")
    print(f"{'path':<16}{'TTFT p50 (s)':>14}{'TTFT max (s)':>14}{'tokens/s p50':>14}")
    for name, samples in rows.items():
        ttft = [s[0] for s in samples]
        speed = [s[1] / max(s[2] - s[0], 1e-9) for s in samples]  # decode rate after the first token
        print(f"{name:<16}{statistics.median(ttft):>14.2f}{max(ttft):>14.2f}{statistics.median(speed):>14.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(measure(args.runs, args.max_new_tokens))


if __name__ == "__main__":
    main()
