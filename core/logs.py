"""Logging set-up. Log lines carry hashed user ids and event names, never message text, replies or tokens.

Two guards make that hold for code that does not think about it: tracebacks are written with frames and
exception types only (an exception's message, or a quoted source line, can carry a user's text), and records
from third-party libraries lose their arguments (a library may dump a whole update or a request URL with the
bot token in it as an argument).
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

# Libraries whose records are kept but stripped of their arguments.
_LIBRARIES = ("telegram", "discord", "httpx", "httpcore", "aiohttp", "urllib3", "apscheduler", "transformers",
              "sentence_transformers", "filelock", "asyncio")


def redacted_traceback(error: BaseException) -> str:
    """Where an error happened, without what it said: the frames and exception types of `error` and its
    causes, root cause first."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
                         for frame in traceback.extract_tb(current.__traceback__))
        parts.append(f"{frames}{type(current).__module__}.{type(current).__qualname__}")
        current = current.__cause__ or current.__context__
    return "\n-- which led to --\n".join(reversed(parts))


class PrivateFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return redacted_traceback(ei[1]) if ei and ei[1] is not None else ""

    def format(self, record: logging.LogRecord) -> str:
        if record.name.split(".", 1)[0] in _LIBRARIES and record.args:
            record = logging.makeLogRecord({**record.__dict__, "args": (), "msg": f"{record.msg} [details withheld]"})
        return super().format(record)


def configure_logging(level: str = "INFO", *, stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(PrivateFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that would otherwise log request URLs (which hold bot tokens) or payloads at INFO/DEBUG.
    for noisy in ("httpx", "httpcore", "telegram", "discord", "urllib3", "transformers", "filelock", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
