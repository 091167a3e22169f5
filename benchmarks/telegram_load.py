"""200 simulated users on the fake Telegram Bot API server, with a stub model: every message answered exactly once
and in order per user, and the adapter+core latency from the update's arrival to its final text.

    .venv/bin/python benchmarks/telegram_load.py [--users 200] [--messages 3]

The real python-telegram-bot, the real adapter and core and a real Redis run; only Telegram (the fake server on
127.0.0.1 from the test harness) and the model are stand-ins. The adapter keeps to Telegram's ~30 calls/s, so
with a burst of 600 messages the latency is mostly the queue behind that limit, which the output separates.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def measure(users: int, per_user: int) -> None:
    from bots.telegram import TelegramOptions
    from core.store import EmbeddedRedis, connect_redis
    from tests.bots.telegram.harness import TelegramHarness
    from tests.fakes import ScriptedEngine

    server = EmbeddedRedis(Path(tempfile.mkdtemp()) / "redis")
    server.start()
    redis = connect_redis(unix_socket_path=server.socket_path)
    engine = ScriptedEngine(lambda messages: f"ok {messages[-1]['content']}")
    try:
        async with TelegramHarness.start(redis, engine, options=TelegramOptions(poll_timeout_seconds=1)) as bot:
            user_ids = range(10_000, 10_000 + users)
            pushed: dict[tuple[int, int], float] = {}
            started = time.monotonic()
            for n in range(per_user):
                for user_id in user_ids:
                    bot.send_text(user_id, f"m{n}")
                    pushed[(user_id, n)] = time.monotonic()
            await bot.wait_for(lambda: all(bot.api.shown(u).count(f"ok m{per_user - 1}") == 1 for u in user_ids),
                               limit_seconds=600)
            await bot.settle()
            total = time.monotonic() - started
            wrong, latencies = 0, []
            for user_id in user_ids:
                answers = [t for t in bot.api.shown(user_id) if t.startswith("ok ")]
                wrong += answers != [f"ok m{n}" for n in range(per_user)]
            for (user_id, n), at in pushed.items():
                final = [c.at for c in bot.api.calls if c.method in ("sendMessage", "editMessageText")
                         and int(c.params["chat_id"]) == user_id and c.params.get("text") == f"ok m{n}"]
                if final:
                    latencies.append(final[0] - at)
            calls = [c for c in bot.api.calls if c.method != "getUpdates"]
            quantiles = statistics.quantiles(latencies, n=100)
            print(f"{len(pushed)} messages from {users} users; answered {len(latencies)}; "
                  f"users with a missing, repeated or out-of-order answer: {wrong}")
            print(f"wall {total:.1f} s, {len(pushed) / total:.1f} messages/s, {len(calls) / total:.1f} Bot API calls/s")
            print(f"arrival → final text: p50 {quantiles[49] * 1000:.0f} ms, p99 {quantiles[98] * 1000:.0f} ms "
                  f"(includes the wait behind Telegram's ~30 calls/s)")
    finally:
        await redis.aclose()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--messages", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure(args.users, args.messages))


if __name__ == "__main__":
    main()
