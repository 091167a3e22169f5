"""Process-wide counters and histograms in Prometheus' text format, without a dependency.

Labels carry only fixed, low-cardinality names (engine kind, outcome): never a user id, message text or a
model's output. `render()` is what a `/metrics` endpoint returns.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

_Piece = TypeVar("_Piece")

# Seconds: covers a fast local first token (tens of ms) to a slow remote full reply (minutes).
LATENCY_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_lock = threading.Lock()
_counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_histograms: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}  # bucket counts, then sum, count
_help: dict[str, tuple[str, str]] = {}
_buckets: dict[str, tuple[float, ...]] = {}


def _key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def inc(name: str, help_text: str, amount: float = 1.0, **labels: str) -> None:
    with _lock:
        _help.setdefault(name, ("counter", help_text))
        key = _key(name, labels)
        _counters[key] = _counters.get(key, 0.0) + amount


def set_gauge(name: str, help_text: str, value: float, **labels: str) -> None:
    """A value that goes up and down (updates in flight, users waiting), as last seen by this process."""
    with _lock:
        _help.setdefault(name, ("gauge", help_text))
        _gauges[_key(name, labels)] = value


def add_to_gauge(name: str, help_text: str, amount: float, **labels: str) -> None:
    with _lock:
        _help.setdefault(name, ("gauge", help_text))
        key = _key(name, labels)
        _gauges[key] = _gauges.get(key, 0.0) + amount


def observe(name: str, help_text: str, value: float, buckets: Sequence[float] = LATENCY_BUCKETS_SECONDS,
            **labels: str) -> None:
    with _lock:
        _help.setdefault(name, ("histogram", help_text))
        buckets = _buckets.setdefault(name, tuple(buckets))  # a histogram keeps the buckets it was born with
        key = _key(name, labels)
        row = _histograms.setdefault(key, [0.0] * (len(buckets) + 2))
        slot = bisect.bisect_left(buckets, value)  # the first bucket whose bound is >= value
        if slot < len(buckets):
            row[slot] += 1
        row[-2] += value
        row[-1] += 1


async def timed_stream(pieces: AsyncIterator[_Piece]) -> AsyncIterator[_Piece]:
    """Pass a model's reply through unchanged, timing its first piece and the whole of it, whatever the engine."""
    started, first = time.monotonic(), True
    async with contextlib.aclosing(pieces):  # type: ignore[type-var]  # a caller that stops early stops the engine
        async for piece in pieces:
            if first:
                observe("haven_reply_first_piece_seconds", "Time from asking the engine to its first piece of reply.",
                        time.monotonic() - started)
                first = False
            yield piece
    observe("haven_reply_engine_seconds", "Time the engine took for a whole reply (any engine).",
            time.monotonic() - started)


def value(name: str, **labels: str) -> float:
    """A counter's (or gauge's) current value (0 when never set); for tests and health pages."""
    with _lock:
        key = _key(name, labels)
        return _counters.get(key, _gauges.get(key, 0.0))


def _labels(pairs: tuple[tuple[str, str], ...], extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = pairs + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in items) + "}"


def render() -> str:
    """All metrics in Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []
    with _lock:
        for name, (kind, help_text) in sorted(_help.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            if kind in ("counter", "gauge"):
                for (metric, pairs), total in sorted((_counters if kind == "counter" else _gauges).items()):
                    if metric == name:
                        lines.append(f"{name}{_labels(pairs)} {total:g}")
                continue
            for (metric, pairs), row in sorted(_histograms.items()):
                if metric != name:
                    continue
                cumulative = 0.0
                for bound, count in zip(_buckets[name], row, strict=False):
                    cumulative += count
                    lines.append(f"{name}_bucket{_labels(pairs, (('le', f'{bound:g}'),))} {cumulative:g}")
                lines.append(f"{name}_bucket{_labels(pairs, (('le', '+Inf'),))} {row[-1]:g}")
                lines.append(f"{name}_sum{_labels(pairs)} {row[-2]:g}")
                lines.append(f"{name}_count{_labels(pairs)} {row[-1]:g}")
    return "\n".join(lines) + "\n"
