"""`haven checkins …` against the real Redis: templates, campaigns, defaults and counts-only stats."""

from __future__ import annotations

import asyncio
import json

import pytest

from core.checkins import Catalog, keys
from core.checkins.cli import main
from core.types import UserRef


@pytest.fixture
def redis_url(redis_server: dict[str, str], redis_client) -> str:  # redis_client: a flushed database
    return redis_server.get("url") or f"unix://{redis_server['unix_socket_path']}"


def run(redis_url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--redis-url", redis_url, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


async def arun(redis_url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI runs its own event loop, so async tests call it from a thread."""
    return await asyncio.to_thread(run, redis_url, capsys, *args)


def test_templates_list_add_remove(redis_url, capsys):
    code, out, _ = run(redis_url, capsys, "templates", "list")
    assert code == 0 and out.count("\n") == 5 and out.startswith("t1\t")
    code, out, _ = run(redis_url, capsys, "templates", "add", "Evening check: how are you, really?")
    assert code == 0 and out.strip() == "added t6"
    assert run(redis_url, capsys, "templates", "remove", "t2")[0] == 0
    _, out, _ = run(redis_url, capsys, "templates", "list")
    assert "t6\tEvening check" in out and "t2\t" not in out
    code, _, err = run(redis_url, capsys, "templates", "remove", "t99")
    assert code == 1 and "no template t99" in err


async def test_campaigns_add_list_remove_and_defaults(redis_url, capsys, service, redis_client):
    await service.opt_in(UserRef("telegram", "1"), times="09:00", timezone="Europe/London")
    code, out, _ = await arun(redis_url, capsys, "campaigns", "add", "weekly-reflection", "How was your week?",
                              "--at", "18:00", "--days", "sun")
    assert code == 0 and "Sun" in out and "(1 schedules updated)" in out
    _, out, _ = await arun(redis_url, capsys, "campaigns", "list")
    assert out.strip() == "weekly-reflection: 18:00 local, Sun: How was your week?"
    assert [c.campaign_id for c in await Catalog(redis_client).campaigns()] == ["weekly-reflection"]
    assert (await arun(redis_url, capsys, "campaigns", "remove", "weekly-reflection"))[0] == 0
    assert (await arun(redis_url, capsys, "campaigns", "remove", "weekly-reflection"))[0] == 1
    code, _, err = await arun(redis_url, capsys, "campaigns", "add", "x", "text", "--at", "25:99")
    assert code == 2 and "not a time" in err
    code, out, _ = await arun(redis_url, capsys, "defaults", "--times", "08:30,20:00", "--days", "weekdays")
    assert code == 0 and out.strip() == "new check-ins start at 08:30, 20:00, weekdays"


async def test_stats_are_counts_only(redis_url, capsys, service, redis_client):
    anna = UserRef("telegram", "424242")
    await service.opt_in(anna, times="09:00", timezone="UTC")
    await service.record_mood(anna, 2, ["lonely"], "a private note")
    code, out, _ = await arun(redis_url, capsys, "stats")
    counts = json.loads(out)
    assert code == 0 and counts["opted_in"] == 1 and counts["opted_in_now"] == 1 and counts["moods_mood"] == 1
    assert all(isinstance(v, int) for v in counts.values())
    assert "424242" not in out and "lonely" not in out and "private" not in out
    assert await redis_client.zcard(keys.DUE) == 1
