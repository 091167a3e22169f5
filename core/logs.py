"""Logging set-up. Log lines carry hashed user ids and event names, never message text, replies or tokens."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "INFO", *, stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that would otherwise log request URLs (which hold bot tokens) or payloads.
    for noisy in ("httpx", "httpcore", "telegram", "discord", "urllib3", "transformers", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
