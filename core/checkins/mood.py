"""Mood entries (1–5, feeling words, an optional note), the 30-day chart and its two-line summary.

The chart is drawn for a phone screen: large type, one colour-blind-safe hue (Okabe–Ito blue) for the line and
a second (Okabe–Ito orange) for the 7-day average, points that carry their value in shape as well as position,
and fixed axes so that no entries, one entry or one repeated value still draw a calm, readable picture.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import mean
from zoneinfo import ZoneInfo

from core.checkins.texts import line

MOOD_MIN, MOOD_MAX = 1, 5
CHART_DAYS = 30
MAX_NOTE_CHARS = 1000
MAX_FEELINGS = 5
# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
_BLUE, _ORANGE, _GREY = "#0072B2", "#E69F00", "#6E6E6E"
_MARKERS = {1: "v", 2: "v", 3: "o", 4: "^", 5: "^"}


@dataclass(frozen=True, slots=True)
class MoodEntry:
    at: float  # unix seconds
    score: int
    feelings: tuple[str, ...] = ()
    note: str = ""
    source: str = "mood"  # "mood" (asked for) or "checkin" (answered a check-in)
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        data: dict[str, object] = {"at": round(self.at, 3), "score": self.score, "source": self.source}
        if self.feelings:
            data["feelings"] = list(self.feelings)
        if self.note:
            data["note"] = self.note
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> MoodEntry:
        data = json.loads(raw)
        return cls(at=float(data["at"]), score=int(data["score"]), feelings=tuple(data.get("feelings", ())),
                   note=str(data.get("note", "")), source=str(data.get("source", "mood")))


def clean_feelings(words: Sequence[str]) -> tuple[str, ...]:
    cleaned = []
    for word in words:
        w = " ".join(str(word).split()).lower()[:24]
        if w and w not in cleaned:
            cleaned.append(w)
    return tuple(cleaned[:MAX_FEELINGS])


def mood_summary_lines(entries: Sequence[MoodEntry], now: float) -> tuple[str, str]:
    """Two short lines: how many, the average and range; then this week against last week and common words."""
    recent = [e for e in entries if now - e.at <= CHART_DAYS * 86400]
    if not recent:
        return line("summary_empty_1"), line("summary_empty_2")
    scores = [e.score for e in recent]
    first = line("summary_1", count=len(recent), entries="entry" if len(recent) == 1 else "entries",
                 average=f"{mean(scores):.1f}", low=min(scores), high=max(scores))
    words = Counter(w for e in recent for w in e.feelings).most_common(2)
    week = [e.score for e in recent if now - e.at <= 7 * 86400]
    before = [e.score for e in recent if 7 * 86400 < now - e.at <= 14 * 86400]
    common = line("common", words=", ".join(w for w, _ in words)) if words else ""
    if week and before:
        diff = mean(week) - mean(before)
        trend = line("trend_up" if diff >= 0.5 else "trend_down" if diff <= -0.5 else "trend_same")
        return first, line("summary_2_trend", trend=trend, common=common)
    if words:
        return first, line("common_only", words=", ".join(w for w, _ in words))
    return first, line("no_words")


def render_mood_chart(entries: Sequence[MoodEntry], now: float, timezone: str = "UTC") -> bytes:
    """A PNG of the last 30 days (960×640 px), drawn in the user's own time zone."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import dates as mdates
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a server

    zone = ZoneInfo(timezone)
    end = datetime.fromtimestamp(now, zone)
    start = end - timedelta(days=CHART_DAYS)
    recent = sorted((e for e in entries if start.timestamp() <= e.at <= now), key=lambda e: e.at)

    fig = Figure(figsize=(6, 4), dpi=160)
    ax = fig.add_subplot()
    ax.set_xlim(mdates.date2num(start), mdates.date2num(end + timedelta(hours=12)))
    ax.set_ylim(MOOD_MIN - 0.5, MOOD_MAX + 0.5)
    ax.set_yticks(range(MOOD_MIN, MOOD_MAX + 1))
    ax.set_yticklabels(["1 very low", "2 low", "3 okay", "4 good", "5 very good"], fontsize=13)
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=7, tz=zone))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b", tz=zone))
    ax.tick_params(axis="x", labelsize=13)
    ax.grid(axis="y", color="#DDDDDD", linewidth=0.8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title("Your mood, last 30 days", fontsize=17, loc="left")

    if not recent:
        ax.text(0.5, 0.5, "No moods noted yet", transform=ax.transAxes, ha="center", va="center",
                fontsize=16, color=_GREY)
    else:
        times = [datetime.fromtimestamp(e.at, zone) for e in recent]
        scores = [e.score for e in recent]
        if len(recent) > 1:
            ax.plot(mdates.date2num(times), scores, color=_BLUE, linewidth=1.2, alpha=0.35, zorder=2)
        for marker in set(_MARKERS.values()):
            picked = [(t, s) for t, s in zip(times, scores, strict=True) if _MARKERS[s] == marker]
            if picked:
                ax.scatter(mdates.date2num([t for t, _ in picked]), [s for _, s in picked], marker=marker, s=90,
                           color=_BLUE, edgecolors="white", linewidths=1.0, zorder=3)
        days = sorted({t.date() for t in times})
        if len(days) >= 3:  # a trend line once there is something to smooth
            averages = [mean(s for t, s in zip(times, scores, strict=True) if 0 <= (d - t.date()).days < 7)
                        for d in days]
            noons = [datetime.combine(d, datetime.min.time(), zone) + timedelta(hours=12) for d in days]
            ax.plot(mdates.date2num(noons), averages, color=_ORANGE, linewidth=3, label="7-day average", zorder=1)
            ax.legend(loc="lower left", fontsize=12, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def parse_mood_command(text: str) -> tuple[int, tuple[str, ...], str] | None:
    """What follows /mood: "3", "2 tired, anxious", "4 calm - a good walk" → (score, feelings, note); None if
    there is no score (the adapter then shows the 1–5 buttons)."""
    words = text.strip()
    if not words or not words[0].isdigit():
        return None
    score = int(words[0])
    rest = words[1:].strip()
    feelings_part, _, note = rest.partition(" - ")
    if not _ and ":" in rest:
        feelings_part, _, note = rest.partition(":")
    feelings = clean_feelings([w for w in feelings_part.replace(",", " ").split() if w.isalpha()])
    return score, feelings, note.strip()
