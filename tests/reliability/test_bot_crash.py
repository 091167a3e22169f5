"""The Telegram bot process is SIGKILLed while a reply streams, then started again (a real second process
against the fake Bot API and the real Redis). The user's message is answered or the user is told it was lost;
never silently dropped, never answered twice.

Polling confirms an update with the next getUpdates, which python-telegram-bot sends while the handler is
still running, so after a crash Telegram usually does NOT redeliver: the "pending message" record and the
sweep are what tell the user. When Telegram does redeliver (the crash came before the confirmation), the new
process answers the message itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.telegram.pending import LOST_MESSAGE_LINE
from tests.bots.telegram.harness import FakeBotApi, message_update
from tests.reliability.bot_process import REPLY

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 1.5
USER = 6101


@contextlib.asynccontextmanager
async def bot_process(api: FakeBotApi, redis_server: dict[str, str], log_path: Path
                      ) -> AsyncIterator[asyncio.subprocess.Process]:
    address = redis_server.get("url") or redis_server["unix_socket_path"]
    with log_path.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.reliability.bot_process", api.base_url, address, str(LEASE_SECONDS),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log_file, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line.strip() == b"ready", f"the bot did not start; see {log_path}"
            yield process
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def wait_for(predicate, limit_seconds: float, what: str):
    deadline = time.monotonic() + limit_seconds
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


def streaming_started(api: FakeBotApi) -> bool:
    """The placeholder is out and has been edited at least once: the model is mid-reply."""
    return any(m.edits >= 1 for m in api.bot_messages(USER))


@pytest.mark.parametrize("redelivered", [False, True], ids=["not-redelivered", "redelivered"])
async def test_sigkill_while_streaming_then_restart_loses_no_message(redis_client, redis_server, tmp_path,
                                                                     redelivered):
    api = FakeBotApi()
    await api.start()
    try:
        update = message_update(USER, text="I can't sleep again, my head won't stop")
        async with bot_process(api, redis_server, tmp_path / "bot1.log") as first:
            api.push_update(update)
            await wait_for(lambda: streaming_started(api), 30, "the reply to start streaming")
            first.send_signal(signal.SIGKILL)
            await first.wait()
        partial_before = api.shown(USER)
        assert partial_before and REPLY not in partial_before, "killed mid-reply"
        assert await redis_client.keys("haven:{telegram:6101}:pending:*"), "the unanswered message is on record"

        if redelivered:
            # The fake server hands queued updates to whichever long poll is open; let the dead process's
            # last poll time out first, as Telegram would not count an update sent down a dead connection.
            await asyncio.sleep(0.6)
            api.push_update(dict(update))  # same update_id: Telegram sending it again after the restart
        async with bot_process(api, redis_server, tmp_path / "bot2.log"):
            expected = REPLY if redelivered else LOST_MESSAGE_LINE
            await wait_for(lambda: any(expected in shown for shown in api.shown(USER)),
                           LEASE_SECONDS * 4 + 10, "the user to be answered or told")
            await asyncio.sleep(LEASE_SECONDS * 2.5)  # long enough for a duplicate to show, were there one
            shown = api.shown(USER)
            assert not await redis_client.keys("haven:{telegram:6101}:pending:*"), "the record is cleared"
    finally:
        await api.stop()

    full_replies = [s for s in shown if REPLY in s]
    apologies = [s for s in shown if LOST_MESSAGE_LINE in s]
    if redelivered:
        assert len(full_replies) == 1 and apologies == [], shown
    else:
        assert apologies == [LOST_MESSAGE_LINE] and full_replies == [], shown
