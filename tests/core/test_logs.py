"""Logs never carry what users wrote, even when code logs an exception or a library dumps a payload."""

from __future__ import annotations

import io
import logging

from core.logs import configure_logging, redacted_traceback

SECRET = "my private words"


def _raise_with_text() -> None:
    try:
        raise ValueError(f"could not parse {SECRET}")
    except ValueError as exc:
        raise RuntimeError("wrapper") from exc


def test_exceptions_are_logged_with_frames_and_types_only() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", stream=out)
    try:
        _raise_with_text()
    except RuntimeError:
        logging.getLogger("core.test").exception("reply failed user=abc")
    logged = out.getvalue()
    assert "reply failed user=abc" in logged
    assert "builtins.ValueError" in logged and "builtins.RuntimeError" in logged and "_raise_with_text" in logged
    assert SECRET not in logged


def test_library_records_lose_their_arguments() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", stream=out)
    logging.getLogger("telegram.ext.webhook").critical("could not process update %s", {"text": SECRET})
    logging.getLogger("haven.own").warning("counted %d", 3)
    logged = out.getvalue()
    assert SECRET not in logged
    assert "could not process update %s [details withheld]" in logged and "counted 3" in logged


def test_redacted_traceback_names_the_root_cause_first() -> None:
    try:
        _raise_with_text()
    except RuntimeError as exc:
        text = redacted_traceback(exc)
    assert text.index("ValueError") < text.index("RuntimeError")
    assert SECRET not in text
