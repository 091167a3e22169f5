"""Haven's own cost per message, with a stub engine that answers at once and a real Redis: the dialog manager's
hot path (per-user lock, Redis reads and writes, the safety screen, prompt building, the output guard),
measured side by side with the rules-only screen and with the full screen (rules + the trained classifier).
A third row wires the manager as `core/runtime.py` does (rate limiter, coping tools, check-ins for users who
opted in), with the rules-only screen: the Redis work those add on every message.

    .venv/bin/python benchmarks/core_overhead.py [--messages 300] [--users 20]

Targets (2-core CPU): p50 <= 5 ms and p99 <= 20 ms without the semantic screen; p50 <= 15 ms and p99 <= 40 ms
with it. Prints wall time and this process's CPU time per message side by side (on a shared, busy box the gap
is time spent waiting for a core), a breakdown (the screen alone, the output guard alone, one Redis round trip,
the context read), and the load average.
Never prints message text.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

MESSAGES = [
    "I had a long day at work and I feel drained.",
    "My sister and I argued again and I don't know how to fix it.",
    "I keep putting off my assignments and then I panic.",
    "Sleep has been bad all week, I wake up at 4.",
    "I moved to a new city and I don't know anyone yet.",
    "Today was actually a bit better than yesterday.",
]
REPLY = "That sounds like a lot to carry. What has helped you a little on days like this? I'm here to listen."


class InstantEngine:
    """Answers at once with a fixed reply in a few pieces: the model's time is not what is measured."""

    name = "instant"

    def warm_up(self) -> None:
        return None

    async def stream(self, messages: Sequence[object], *, max_new_tokens: int | None = None) -> AsyncIterator[str]:
        for piece in REPLY.split(" "):
            yield piece + " "


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(count: int, users: int) -> None:
    from core.checkins import CheckinService
    from core.dialog import DialogManager
    from core.ratelimit import RateLimit, UserRateLimiter
    from core.safety import SafetyScreen, guard_reply
    from core.store import EmbeddedRedis, RedisContextStore, connect_redis
    from core.tools import CopingTools
    from core.types import IncomingMessage, UserRef

    rules, full = SafetyScreen(semantic=False), SafetyScreen()
    started = time.perf_counter()
    full.warm_up()
    print(f"full screen ready in {time.perf_counter() - started:.1f} s")

    with EmbeddedRedis(Path(tempfile.mkdtemp()) / "redis") as server:
        client = connect_redis(unix_socket_path=server.socket_path)
        store = RedisContextStore(client, max_turns=12, max_tokens=1200, ttl_seconds=600)
        # Each row has its own screen: a shared one would hand the later rows the verdict the first row cached.
        wired_rules = SafetyScreen(semantic=False)
        checkins = CheckinService(client, store, wired_rules)
        managers = {"rules only": DialogManager(store, InstantEngine(), rules),
                    "full screen": DialogManager(store, InstantEngine(), full),
                    "rules+wiring": DialogManager(  # a limit nobody reaches here: every message is answered
                        store, InstantEngine(), wired_rules, tools=CopingTools(client, store), checkins=checkins,
                        rate_limiter=UserRateLimiter(client, RateLimit(max_messages=10**9)))}
        for i in range(users):
            await store.update_profile(UserRef("bench", str(i)), consent=True)  # history read and written
            if i % 2 == 0:  # half the users have check-ins on: their chat note is a write
                await checkins.opt_in(UserRef("bench", str(i)), times="09:00", timezone="UTC")
        timings: dict[str, list[float]] = {name: [] for name in managers}
        cpu: dict[str, list[float]] = {name: [] for name in managers}
        kinds: dict[str, Counter[str]] = {name: Counter() for name in managers}
        parts: dict[str, list[float]] = {"rules screen alone": [], "full screen alone": [], "output guard alone": [],
                                         "redis PING": [], "context read": []}
        for n in range(-20, count):  # 20 warm-up rounds, not timed
            text = f"{MESSAGES[n % len(MESSAGES)]} ({n})"  # a fresh text each time: no embedding cache hit
            user = UserRef("bench", str(n % users))
            for name, manager in managers.items():  # interleaved: both see the same load
                t0, c0 = time.perf_counter(), time.process_time()
                reply = await manager.handle(IncomingMessage(user, text))
                if n >= 0:
                    kinds[name][str(reply.kind)] += 1
                    timings[name].append((time.perf_counter() - t0) * 1000)
                    cpu[name].append((time.process_time() - c0) * 1000)
            if n >= 0:
                for part, screen in (("rules screen alone", rules), ("full screen alone", full)):
                    t0 = time.perf_counter()
                    screen.assess(f"{text} again", [])
                    parts[part].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                guard_reply(f"{REPLY} ({n})")
                parts["output guard alone"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await client.ping()
                parts["redis PING"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await store.load_context(user)
                parts["context read"].append((time.perf_counter() - t0) * 1000)
        await client.aclose()

    load = os.getloadavg()
    print(f"\n{count} messages per row, {users} users with history, stub engine, embedded redis-server "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs)")
    print(f"{'screen':<14}{'wall p50':>9}{'wall p99':>9}{'CPU p50':>9}{'CPU p99':>9}  (ms)  target on wall")
    targets = {"rules only": (5, 20), "full screen": (15, 40), "rules+wiring": (5, 20)}
    for name, values in timings.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        goal = targets[name]
        verdict = "met" if p50 <= goal[0] and p99 <= goal[1] else "MISSED"
        print(f"{name:<14}{p50:>9.2f}{p99:>9.2f}{percentile(cpu[name], 0.5):>9.2f}{percentile(cpu[name], 0.99):>9.2f}"
              f"        p50<={goal[0]} p99<={goal[1]}: {verdict} (mean {statistics.mean(values):.2f}; "
              f"replies {dict(kinds[name])})")
    print("breakdown, wall ms:" + "".join(f"\n  {part} p50 {percentile(v, 0.5):.2f} / p99 {percentile(v, 0.99):.2f}"
                                          for part, v in parts.items()))
    ratio = percentile(timings["full screen"], 0.5) / max(percentile(timings["rules only"], 0.5), 1e-9)
    print(f"full/rules p50 ratio: {ratio:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(measure(args.messages, args.users))


if __name__ == "__main__":
    main()
