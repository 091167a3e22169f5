"""Haven's Telegram bot as a process of its own, so a test can SIGKILL it mid-reply and start another.

    python -m tests.reliability.bot_process <bot-api-base-url> <redis-url-or-socket> <lease-seconds>

The model is scripted and slow (a word every 0.2 s), so a kill lands while the reply is streaming.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from bots.telegram import run_telegram
from bots.telegram.handlers import TelegramHandlers
from core.logs import configure_logging
from core.store import connect_redis
from tests.bots.telegram.harness import FAST_OPTIONS, make_runtime
from tests.fakes import ScriptedEngine

REPLY = ("That sounds exhausting, and it makes sense that you feel worn down. "
         "Would it help to talk through what kept you awake, one small piece at a time?")


async def main(base_url: str, redis_address: str, lease_seconds: float) -> None:
    TelegramHandlers.pending_lease_seconds = lease_seconds
    client = (connect_redis(redis_address) if "://" in redis_address
              else connect_redis(unix_socket_path=redis_address))
    engine = ScriptedEngine(lambda messages: REPLY, delay_seconds=0.2)
    runtime = make_runtime(client, engine, base_url)
    ready = asyncio.Event()
    task = asyncio.create_task(run_telegram(runtime, options=FAST_OPTIONS, ready=ready))
    await ready.wait()
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    configure_logging("INFO")
    logging.getLogger("bots").setLevel(logging.INFO)
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
