"""When a schedule next fires: the user's own local time, across DST, with days, quiet hours and a pause."""

from __future__ import annotations

from datetime import datetime, time
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.checkins.schedule import (
    CheckinSchedule,
    ScheduleError,
    Slot,
    next_fire,
    parse_days,
    parse_quiet_hours,
    parse_times,
    resolve_timezone,
)
from tests.core.checkins.conftest import at, local


def firings(schedule: CheckinSchedule, start: float, count: int, campaigns: list[Slot] | None = None) -> list[float]:
    out, after = [], start
    for _ in range(count):
        found = next_fire(schedule, after, campaigns or [])
        assert found is not None
        out.append(found.at)
        after = found.at
    return out


@pytest.mark.parametrize("start", ["2026-03-27 12:00", "2026-10-23 12:00"])  # spring forward, fall back
def test_london_nine_oclock_stays_nine_oclock_across_dst(start: str) -> None:
    schedule = CheckinSchedule(timezone="Europe/London", times=(time(9, 0),))
    got = firings(schedule, at("Europe/London", start), 5)
    assert [local("Europe/London", t)[-5:] for t in got] == ["09:00"] * 5
    gaps = {round((b - a) / 3600) for a, b in pairwise(got)}
    assert gaps == {23, 24} or gaps == {24, 25}  # the day of the change is an hour shorter or longer


def test_sao_paulo_and_kolkata_fire_at_their_own_local_times() -> None:
    start = at("UTC", "2026-06-01 00:00")
    sao = firings(CheckinSchedule(timezone="America/Sao_Paulo", times=(time(8, 30),)), start, 1)[0]
    kol = firings(CheckinSchedule(timezone="Asia/Kolkata", times=(time(8, 30),)), start, 1)[0]
    assert local("America/Sao_Paulo", sao) == "2026-06-01 08:30"
    assert local("UTC", sao) == "2026-06-01 11:30"  # UTC-3, no DST since 2019
    assert local("Asia/Kolkata", kol) == "2026-06-01 08:30"
    assert local("UTC", kol) == "2026-06-01 03:00"  # UTC+5:30


def test_a_time_in_the_spring_gap_fires_once_shifted_and_a_repeated_time_fires_once() -> None:
    gap = CheckinSchedule(timezone="Europe/London", times=(time(1, 30),))
    got = firings(gap, at("Europe/London", "2026-03-28 12:00"), 2)
    assert [local("Europe/London", t) for t in got] == ["2026-03-29 02:30", "2026-03-30 01:30"]
    fold = CheckinSchedule(timezone="Europe/London", times=(time(1, 30),))
    got = firings(fold, at("Europe/London", "2026-10-24 12:00"), 2)
    assert [local("Europe/London", t) for t in got] == ["2026-10-25 01:30", "2026-10-26 01:30"]
    assert got[1] - got[0] == 25 * 3600


def test_days_quiet_hours_and_pause() -> None:
    start = at("Europe/Berlin", "2026-06-01 00:00")  # a Monday
    weekdays = CheckinSchedule(timezone="Europe/Berlin", times=(time(7, 0), time(23, 0)), days=parse_days("mon,wed"),
                               quiet=parse_quiet_hours("22:00-07:00"))
    got = [local("Europe/Berlin", t) for t in firings(weekdays, start, 3)]
    assert got == ["2026-06-01 07:00", "2026-06-03 07:00", "2026-06-08 07:00"]  # 23:00 is inside quiet hours
    paused = weekdays.with_changes(paused_until=at("Europe/Berlin", "2026-06-05 12:00"))
    assert local("Europe/Berlin", firings(paused, start, 1)[0]) == "2026-06-08 07:00"
    silent = CheckinSchedule(timezone="UTC", times=(time(23, 0),), quiet=parse_quiet_hours("22:00-07:00"))
    assert next_fire(silent, start) is None


def test_a_campaign_joins_the_users_own_times_and_wins_a_tie() -> None:
    schedule = CheckinSchedule(timezone="America/New_York", times=(time(18, 0),))
    sunday = Slot(time(18, 0), frozenset({6}), "weekly")
    start = at("America/New_York", "2026-06-05 19:00")  # Friday evening
    fired = [next_fire(schedule, start, [sunday])]
    for _ in range(2):
        fired.append(next_fire(schedule, fired[-1].at, [sunday]))  # type: ignore[union-attr]
    assert [(local("America/New_York", f.at), f.campaign) for f in fired if f] == [
        ("2026-06-06 18:00", ""), ("2026-06-07 18:00", "weekly"), ("2026-06-08 18:00", "")]
    assert next_fire(schedule.with_changes(campaigns=False), at("America/New_York", "2026-06-07 12:00"),
                     [sunday]).campaign == ""  # type: ignore[union-attr]


def test_parsing_what_people_type() -> None:
    assert parse_times("9, 18:30 9.00") == (time(9, 0), time(18, 30))
    assert parse_days("weekdays") == frozenset(range(5))
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert str(parse_quiet_hours("22:00–07:00")) == "22:00-07:00"
    assert parse_quiet_hours("off") is None
    for bad in ("25:00", "noon-ish"):
        with pytest.raises(ScheduleError):
            parse_times(bad)
    with pytest.raises(ScheduleError):
        parse_days("someday")
    assert resolve_timezone("london") == "Europe/London"
    assert resolve_timezone("São Paulo") == "America/Sao_Paulo"
    assert resolve_timezone("new york") == "America/New_York"
    assert resolve_timezone("Delhi") == "Asia/Kolkata"
    assert resolve_timezone("Asia/Kolkata") == "Asia/Kolkata"
    assert resolve_timezone("Atlantis") is None
    assert resolve_timezone("../../etc/passwd") is None


ZONES = ["Europe/London", "America/Sao_Paulo", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe",
         "Pacific/Chatham", "America/St_Johns"]


@settings(max_examples=150, deadline=None)
@given(zone=st.sampled_from(ZONES), hour=st.integers(0, 23), minute=st.sampled_from([0, 15, 30, 45]),
       start=st.floats(1.7e9, 1.9e9), days=st.frozensets(st.integers(0, 6), min_size=1))
def test_every_firing_is_after_the_start_on_an_allowed_day_at_the_chosen_time(zone, hour, minute, start, days):
    schedule = CheckinSchedule(timezone=zone, times=(time(hour, minute),), days=days)
    found = next_fire(schedule, start)
    assert found is not None and found.at > start
    when = datetime.fromtimestamp(found.at, ZoneInfo(zone))
    assert when.weekday() in days
    # On the one day a year the time falls in a DST gap it is shifted forward by the gap; otherwise exact.
    assert (when.hour, when.minute) == (hour, minute) or 0 < (when.hour * 60 + when.minute) - (hour * 60 + minute) <= 60
    assert next_fire(schedule, found.at - 1).at == found.at  # type: ignore[union-attr]
