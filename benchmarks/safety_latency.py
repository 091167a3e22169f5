"""Safety screen latency per message: rules only vs the full screen (rules + MiniLM scorer) vs the full screen on
the static-token encoder, side by side.

Run: python benchmarks/safety_latency.py [--rounds 1] [--split fresh] [--cold] [--no-static] [--no-minilm]
The embedding model is loaded and the scorer fitted before timing (warm-up is timed and printed; --cold first
empties a private embedding cache folder, to time warm-up without the on-disk cache as well). Each message is timed
with a fresh text (a counter suffix) so the in-memory embedding cache cannot hide the encode; recent messages come
from the cache, as in production. The two screens are interleaved message by message, so both see the same load.
Prints p50/p99 in milliseconds, the full/rules ratio, the share of messages that needed an encode, and the load
average before and after. Never prints message text.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from core.safety import SafetyScreen
from core.safety.semantic import Embedder, SemanticLayer, StaticEmbedder, default_cache_dir, read_jsonl


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"
    except OSError:
        return "unavailable"


def timed_warm_up(cache_dir: Path | None, static: bool = False) -> tuple[SafetyScreen, float]:
    """A screen on the contextual MiniLM ("full"), or on its static-token variant (the default SafetyScreen())."""
    embedder = StaticEmbedder(cache_dir=cache_dir) if static else Embedder()
    screen = SafetyScreen(semantic=SemanticLayer(embedder, cache_dir=cache_dir))
    started = time.perf_counter()
    screen.warm_up()
    return screen, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--limit", type=int, default=400, help="messages per round")
    parser.add_argument("--split", default="holdout", choices=("holdout", "tune", "fresh"))
    parser.add_argument("--cold", action="store_true", help="also time a warm-up with an empty embedding cache")
    parser.add_argument("--no-static", action="store_true", help="skip the static-token encoder column")
    parser.add_argument("--no-minilm", action="store_true",
                        help="skip the contextual MiniLM column (its warm-up encodes all training rows after a change)")
    args = parser.parse_args()

    print(f"load average before: {load_average()}")
    if args.cold:
        with tempfile.TemporaryDirectory() as tmp:
            _, seconds = timed_warm_up(Path(tmp))
            print(f"warm-up, no on-disk cache (load model, encode all training rows, fit): {seconds:.1f} s")
    screens: dict[str, SafetyScreen] = {"rules": SafetyScreen(semantic=False)}
    if not args.no_minilm:
        screens["full"], seconds = timed_warm_up(default_cache_dir())
        print(f"warm-up with the on-disk embedding cache (load model, read vectors, fit): {seconds:.1f} s")
    if not args.no_static:
        screens["static"], seconds = timed_warm_up(default_cache_dir(), static=True)
        print(f"warm-up, static-token encoder (token table from the on-disk cache if there): {seconds:.1f} s")
    rules = screens["rules"]

    texts = [row["text"] for row in read_jsonl(f"eval_{args.split}.jsonl")][: args.limit]
    for text in texts[:20]:  # first calls pay one-off costs (allocator, regex caches); not what a user waits for
        for screen in screens.values():
            screen.assess(text + " warm")
    timings: dict[str, list[float]] = {name: [] for name in screens}
    # CPU time of this thread per message: what the screen costs with a core to itself. On a shared, loaded box
    # the wall time above it is mostly waiting for a core.
    cpu: dict[str, list[float]] = {name: [] for name in screens}
    encoded = 0
    for round_number in range(args.rounds):
        for i, text in enumerate(texts):
            fresh = f"{text} {round_number}-{i}"  # a new message each time: a real encode unless rules say crisis
            recent = texts[max(0, i - 3) : i]
            for name, screen in screens.items():  # interleaved: the same load for each
                t0, c0 = time.perf_counter(), time.thread_time()
                screen.assess(fresh, recent)
                timings[name].append((time.perf_counter() - t0) * 1000)
                cpu[name].append((time.thread_time() - c0) * 1000)
            encoded += rules.assess(fresh, recent).level.value != "crisis"

    for name, values in timings.items():
        print(
            f"{name:<6} wall n={len(values)} p50={percentile(values, 0.5):.2f} ms "
            f"p99={percentile(values, 0.99):.2f} ms mean={statistics.fmean(values):.2f} ms | "
            f"thread CPU p50={percentile(cpu[name], 0.5):.2f} ms p99={percentile(cpu[name], 0.99):.2f} ms"
        )
    for name in screens:
        if name != "rules":
            ratio = percentile(timings[name], 0.5) / max(percentile(timings["rules"], 0.5), 1e-9)
            print(f"{name}/rules p50 ratio: {ratio:.1f}x")
    print(f"messages that needed an encode (rules not already crisis): {encoded}/{len(timings['rules'])}")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
