"""Safety screen latency per message: rules only vs the full screen (rules + MiniLM head), side by side.

Run: python benchmarks/safety_latency.py [--rounds 3]
The embedding model is loaded and the head fitted before timing. Each message is timed with a fresh text (a
counter suffix) so the embedding cache cannot hide the encode; recent messages come from the cache, as in
production. Prints p50/p99 in milliseconds and the full/rules ratio. Never prints message text.
"""

from __future__ import annotations

import argparse
import statistics
import time

from core.safety import SafetyScreen
from core.safety.semantic import read_jsonl


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--limit", type=int, default=300, help="messages per round")
    args = parser.parse_args()

    texts = [row["text"] for row in read_jsonl("eval_holdout.jsonl")][: args.limit]
    rules = SafetyScreen(semantic=False)
    full = SafetyScreen()
    started = time.perf_counter()
    full.warm_up()
    print(f"warm-up (load model, fit head): {time.perf_counter() - started:.1f} s")

    timings: dict[str, list[float]] = {"rules": [], "full": []}
    for round_number in range(args.rounds):
        for i, text in enumerate(texts):
            fresh = f"{text} {round_number}-{i}"  # a new message each time: one real encode per assess
            recent = texts[max(0, i - 3) : i]
            for name, screen in (("rules", rules), ("full", full)):  # interleaved: same load for both
                t0 = time.perf_counter()
                screen.assess(fresh, recent)
                timings[name].append((time.perf_counter() - t0) * 1000)

    for name, values in timings.items():
        print(
            f"{name:<6} n={len(values)} p50={percentile(values, 0.5):.2f} ms "
            f"p99={percentile(values, 0.99):.2f} ms mean={statistics.fmean(values):.2f} ms"
        )
    ratio = percentile(timings["full"], 0.5) / max(percentile(timings["rules"], 0.5), 1e-9)
    print(f"full/rules p50 ratio: {ratio:.1f}x")


if __name__ == "__main__":
    main()
