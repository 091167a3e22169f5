"""Moods: recorded from a button or /mood, crisis language in a note meets the crisis reply, a low answer gets a
gentle follow-up, and the 30-day chart and summary work for none, one, thirty and a single repeated value."""

from __future__ import annotations

import struct

import pytest

from core.checkins import MoodEntry, mood_summary_lines, render_mood_chart
from core.types import ReplyKind, UserRef

ANNA = UserRef("telegram", "111")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_a_mood_from_a_button_asks_for_a_feeling_word_and_keeps_it(service):
    reply = await service.handle_action(ANNA, "mood:4")
    assert reply is not None and reply.kind is ReplyKind.NOTICE and "good" in reply.text
    assert any(b.action == "feel:calm" for b in reply.buttons)
    await service.handle_action(ANNA, "feel:calm")
    await service.add_to_latest(ANNA, feelings=["Tired  "], note="long day at work")
    [entry] = await service.mood_entries(ANNA)
    assert (entry.score, entry.feelings, entry.note, entry.source) == (4, ("calm", "tired"), "long day at work",
                                                                        "checkin")


async def test_a_low_answer_gets_a_gentle_follow_up_with_a_way_to_talk_and_helplines(service):
    reply = await service.record_mood(ANNA, 1)
    assert reply.kind is ReplyKind.NOTICE and "hard time" in reply.text
    assert [b.action for b in reply.buttons] == ["checkin:talk", "checkin:resources", "checkin:skip"]
    resources = await service.handle_action(ANNA, "checkin:resources")
    assert resources is not None and "116 123" in resources.text  # Samaritans, the default country GB


async def test_crisis_language_in_a_note_gets_the_fixed_crisis_reply(service, clock):
    alerts = []
    service.crisis_alert = lambda platform, ref, country: alerts.append((platform, ref, country))
    reply = await service.record_mood(ANNA, 2, ["sad"], "I want to kill myself tonight")
    assert reply.kind is ReplyKind.CRISIS and "116 123" in reply.text
    assert alerts == [("telegram", ANNA.log_id, "GB")]
    later = await service.add_to_latest(ANNA, note="I am going to end my life")
    assert later.kind is ReplyKind.CRISIS
    assert len(await service.mood_entries(ANNA)) == 1  # the entry is kept, it is theirs


async def test_out_of_range_scores_and_stale_additions_are_refused_kindly(service, clock):
    assert "1 to 5" in (await service.record_mood(ANNA, 9)).text
    assert (await service.add_to_latest(ANNA, feelings=["calm"])).buttons[0].action == "mood:1"
    await service.record_mood(ANNA, 3)
    clock.advance(7 * 3600)
    assert "recent mood" in (await service.add_to_latest(ANNA, feelings=["calm"])).text
    assert await service.handle_action(ANNA, "consent:yes") is None  # not ours


@pytest.mark.parametrize("scores", [[], [3], [4] * 30, [((i * 7) % 5) + 1 for i in range(30)]],
                         ids=["none", "one", "thirty-same", "thirty"])
async def test_the_chart_is_a_phone_sized_png_for_any_number_of_entries(service, clock, scores):
    for score in scores:
        await service.record_mood(ANNA, score, ["calm"] if score > 2 else ["tired"])
        clock.advance(86400 - 3600)
    png = await service.mood_chart(ANNA)
    assert png_size(png) == (960, 640) and len(png) > 5000
    summary = (await service.mood_summary(ANNA)).split("\n")
    assert len(summary) == 2
    if not scores:
        assert summary[0] == "No moods noted in the last 30 days."
    else:
        assert f"{len([s for s in scores])} entr" in summary[0]


def test_summary_compares_this_week_with_the_last_and_names_common_words() -> None:
    now = 2_000_000_000.0
    entries = [MoodEntry(now - d * 86400, 2, ("tired",)) for d in range(8, 14)]
    entries += [MoodEntry(now - d * 86400, 4, ("calm", "hopeful")) for d in range(0, 6)]
    first, second = mood_summary_lines(entries, now)
    assert first == "Last 30 days: 12 entries, average 3.0 (lowest 2, highest 4)."
    assert second.startswith("This week you're a little higher than the week before.")
    assert "tired" in second
    one = mood_summary_lines([MoodEntry(now - 60, 5)], now)
    assert one[0] == "Last 30 days: 1 entry, average 5.0 (lowest 5, highest 5)."


def test_the_chart_draws_in_the_users_time_zone() -> None:
    now = 2_000_000_000.0
    png = render_mood_chart([MoodEntry(now - 3600, 1), MoodEntry(now - 7200, 1)], now, "Pacific/Chatham")
    assert png_size(png) == (960, 640)


def test_what_follows_slash_mood_is_understood() -> None:
    from core.checkins.mood import parse_mood_command

    assert parse_mood_command("") is None and parse_mood_command("tired") is None
    assert parse_mood_command("3") == (3, (), "")
    assert parse_mood_command("2 tired, anxious") == (2, ("tired", "anxious"), "")
    assert parse_mood_command("4 calm - a good walk, finally") == (4, ("calm",), "a good walk, finally")


async def test_admin_chat_commands_are_for_admins_and_show_counts_only(service, redis_client) -> None:
    from core.checkins.admin import admin_command

    admin, other = UserRef("telegram", "1"), UserRef("telegram", "2")
    admins = {("telegram", "1")}
    assert "only Haven's admins" in (await admin_command(redis_client, other, admins, "stats")).text
    await service.record_mood(other, 3, ["calm"], "secret words")
    stats = await admin_command(redis_client, admin, admins, "stats")
    assert "moods_mood: 1" in stats.text and "secret" not in stats.text and "calm" not in stats.text
    added = await admin_command(redis_client, admin, admins, "campaigns add weekly 18:00 sun How was your week?")
    assert added.text.startswith("Added weekly: 18:00 local, Sun")
    assert "How was your week?" in (await admin_command(redis_client, admin, admins, "campaigns")).text
    assert "Added template t6" in (await admin_command(redis_client, admin, admins, "templates add Hello there")).text
    assert "Not done" in (await admin_command(redis_client, admin, admins, "campaigns add x 99:00 sun Hi")).text
