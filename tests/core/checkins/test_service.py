"""The user's side, end to end through the scheduler and a delivery worker: quiet hours, pause, skip after a
recent chat, a user who blocked the bot, templates and campaigns, the rate limit, /forget and /export."""

from __future__ import annotations

from dataclasses import replace

from core.checkins import Catalog, CheckinService, keys
from core.checkins.texts import default_templates
from core.types import ReplyKind, Turn, UserRef
from tests.core.checkins.conftest import TEST_CONFIG, FakePlatform, at, local, make_scheduler, make_worker, run_clock

ANNA = UserRef("telegram", "111")
BEN = UserRef("telegram", "222")


async def run_days(service, redis_client, clock, platform, days: float, step: float = 900) -> None:
    await run_clock(clock, [make_scheduler(redis_client, clock, "a")],
                    [make_worker(redis_client, clock, platform, "w")], until=clock.now() + days * 86400, step=step)


def sent_local(platform: FakePlatform, zone: str) -> list[str]:
    return [local(zone, t) for _, t, _ in platform.sent]


async def test_opt_in_asks_for_a_zone_when_none_is_known_and_accepts_a_city(service):
    reply = await service.opt_in(ANNA, times="08:30")
    assert "Which city" in reply.text and any(b.action == "checkin:tz:Europe/London" for b in reply.buttons)
    assert (await service.status(ANNA)).schedule.timezone == "UTC"
    reply = await service.handle_action(ANNA, "checkin:tz:Asia/Kolkata")
    assert reply is not None and "Next check-in" in reply.text
    status = await service.status(ANNA)
    assert status.schedule.timezone == "Asia/Kolkata" and local("Asia/Kolkata", status.next_at)[-5:] == "08:30"
    unknown = await service.update(ANNA, timezone="Atlantis")
    assert "couldn't place" in unknown.text
    assert "didn't quite get" in (await service.update(ANNA, times="27:00")).text


async def test_opt_out_stops_check_ins_and_not_opted_in_users_are_offered_them(service, redis_client, clock, platform):
    await service.opt_in(ANNA, times="09:00", timezone="UTC")
    await service.opt_out(ANNA)
    assert await redis_client.zscore(keys.DUE, keys.member(ANNA)) is None
    await run_days(service, redis_client, clock, platform, 1)
    assert platform.sent == []
    offer = await service.describe(ANNA)
    assert offer.buttons[0].action == "checkin:on"
    assert (await service.opt_out(BEN)).kind is ReplyKind.NOTICE
    assert not await redis_client.exists(keys.schedule_key(BEN))  # opting out never creates data


async def test_quiet_hours_keep_a_time_silent_but_not_the_others(service, redis_client, clock, platform):
    await service.opt_in(ANNA, times="07:00,12:00,22:30", timezone="Europe/London", quiet_hours="22:00-07:30")
    await run_days(service, redis_client, clock, platform, 2)
    assert [t[-5:] for t in sent_local(platform, "Europe/London")] == ["12:00", "12:00"]
    assert "Quiet hours 22:00-07:30" in (await service.describe(ANNA)).text


async def test_pause_for_some_days_then_check_ins_resume_by_themselves(service, redis_client, clock, platform):
    await service.opt_in(ANNA, times="10:00", timezone="UTC")
    reply = await service.handle_action(ANNA, "checkin:pause:3")
    assert reply is not None and "Paused" in reply.text
    await run_days(service, redis_client, clock, platform, 5)
    assert sent_local(platform, "UTC") == ["2026-06-04 10:00", "2026-06-05 10:00"]
    await service.pause(ANNA, 30)
    await service.resume(ANNA)
    assert local("UTC", (await service.status(ANNA)).next_at) == "2026-06-06 10:00"


async def test_a_check_in_is_skipped_if_we_talked_in_the_last_few_hours(service, store, redis_client, clock,
                                                                        platform):
    await service.opt_in(ANNA, times="12:00", timezone="UTC", skip_if_chatted_hours=3)
    await service.opt_in(BEN, times="12:00", timezone="UTC", skip_if_chatted_hours=3)
    clock.t = at("UTC", "2026-06-01 10:00")
    await service.note_chat(ANNA)  # the hook the dialog manager calls
    now = clock.now()  # Ben consented to memory: the store's own last_seen counts too
    await store.append_exchange(BEN, Turn("user", "hi", now), Turn("assistant", "hello", now))
    await run_days(service, redis_client, clock, platform, 1.1)
    assert sent_local(platform, "UTC") == ["2026-06-02 12:00", "2026-06-02 12:00"]
    assert (await service.catalog.stats())["skipped_recent_chat"] == 2
    await service.note_chat(UserRef("telegram", "not-opted-in"))
    assert not await redis_client.exists(keys.schedule_key(UserRef("telegram", "not-opted-in")))


async def test_a_user_who_blocked_the_bot_is_switched_off_not_retried(service, redis_client, clock):
    platform = FakePlatform(clock, blocked=[ANNA])
    await service.opt_in(ANNA, times="09:00", timezone="UTC")
    await service.opt_in(BEN, times="09:00", timezone="UTC")
    await run_days(service, redis_client, clock, platform, 3)
    assert [u for u, _, _ in platform.sent] == [BEN] * 3
    assert not (await service.status(ANNA)).opted_in
    assert await redis_client.zscore(keys.DUE, keys.member(ANNA)) is None
    assert (await service.catalog.stats())["blocked_switched_off"] == 1


async def test_templates_rotate_and_a_campaign_goes_to_everyone_at_their_local_time(service, redis_client, clock,
                                                                                   platform):
    catalog = Catalog(redis_client)
    assert [text for _, text in await catalog.templates()] == default_templates()
    await service.opt_in(ANNA, times="18:00", timezone="Europe/London")
    await service.opt_in(BEN, times="18:00", timezone="America/Sao_Paulo", days="mon-fri")
    await catalog.add_campaign("weekly", "Sunday reflection: how was your week?", "18:00", "sun")
    from core.checkins.cli import reindex_all

    assert await reindex_all(redis_client, clock=clock) == 2
    await run_days(service, redis_client, clock, platform, 7)  # Mon 1 June .. Sun 7 June
    anna = [(local("Europe/London", t), text) for u, t, text in platform.sent if u == ANNA]
    ben = [(local("America/Sao_Paulo", t), text) for u, t, text in platform.sent if u == BEN]
    assert [text for _, text in anna[:6]] == (default_templates() * 2)[:6]  # rotation
    assert anna[6] == ("2026-06-07 18:00", "Sunday reflection: how was your week?")
    assert ben[-1] == ("2026-06-07 18:00", "Sunday reflection: how was your week?")  # not a weekday of his own
    assert len(anna) == 7 and len(ben) == 6


async def test_delivery_keeps_to_the_shared_rate_limit(service, redis_client, clock):
    """Two workers, one fake platform that answers 429 above 30/s overall or 1/s per chat: no 429s."""
    platform = FakePlatform(clock, limit_per_second=30, per_chat_interval=1.0)
    config = replace(TEST_CONFIG, rate_per_second=25, rate_burst=1, per_chat_interval_seconds=1.0)
    for i in range(200):
        await service.opt_in(UserRef("telegram", f"r{i}"), times="09:00", timezone="UTC")
    clock.t = at("UTC", "2026-06-01 09:00")
    await make_scheduler(redis_client, clock, "a", config).tick()
    workers = [make_worker(redis_client, clock, platform, name, config) for name in ("w1", "w2")]
    import asyncio

    await asyncio.gather(*(w.drain() for w in workers))
    assert len(platform.sent) == 200 and platform.too_many == 0
    times = [t for _, t, _ in platform.sent]
    span = max(times) - min(times)
    assert 200 / span <= 25.5 and 200 / span >= 20  # held at the configured rate (fake time)


async def test_a_retry_after_answer_is_waited_out_and_the_check_in_still_goes_once(service, redis_client, clock):
    class SlowDown(FakePlatform):
        calls = 0

        async def send_checkin(self, user, text, buttons):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 1:
                from core.checkins import DeliveryResult

                return DeliveryResult.retry_after(7)
            return await super().send_checkin(user, text, buttons)

    platform = SlowDown(clock)
    await service.opt_in(ANNA, times="09:00", timezone="UTC")
    clock.t = at("UTC", "2026-06-01 09:00")
    await make_scheduler(redis_client, clock, "a").tick()
    await make_worker(redis_client, clock, platform, "w").drain()
    assert len(platform.sent) == 1 and platform.sent[0][1] >= clock.now() - 1 and clock.now() >= at(
        "UTC", "2026-06-01 09:00") + 7


async def test_forget_removes_every_checkin_and_mood_key_and_the_index_member(service, store, redis_client, clock,
                                                                              platform):
    await service.opt_in(ANNA, times="09:00", timezone="UTC")
    await service.opt_in(BEN, times="09:00", timezone="UTC")
    await run_days(service, redis_client, clock, platform, 1)
    await service.record_mood(ANNA, 4, ["calm"], "a good walk")
    await service.note_chat(ANNA)
    exported = await store.export(ANNA)
    assert set(exported["data"]) >= {"checkins", "moods", f"checkin:sent:{int(at('UTC', '2026-06-01 09:00'))}"}
    assert exported["data"]["moods"][0]["member"]["note"] == "a good walk"
    assert exported["data"]["checkins"]["tz"] == "UTC"

    await store.forget(ANNA)  # the dialog manager's /forget …
    await service.forget_user(ANNA)  # … and the hook it calls for what lives outside the user's prefix
    assert [k async for k in redis_client.scan_iter(match="*111*")] == []
    assert await redis_client.zscore(keys.DUE, keys.member(ANNA)) is None
    assert await redis_client.zscore(keys.DUE, keys.member(BEN)) is not None
    for value in (await redis_client.hgetall(keys.STATS)).values():
        assert value.isdigit()  # counters only


async def test_a_forgotten_user_left_in_the_index_is_cleaned_up_and_never_messaged(service, store, redis_client,
                                                                                   clock, platform):
    await service.opt_in(ANNA, times="09:00", timezone="UTC")
    await store.forget(ANNA)  # without the hook wired
    await run_days(service, redis_client, clock, platform, 1)
    assert platform.sent == []
    assert await redis_client.zscore(keys.DUE, keys.member(ANNA)) is None


async def test_memory_per_opted_in_user_is_small(service, redis_client):
    await service.opt_in(ANNA, times="08:00,13:00,19:30", timezone="America/Sao_Paulo", days="weekdays",
                         quiet_hours="22:00-07:00")
    await service.note_chat(ANNA)
    used = await redis_client.memory_usage(keys.schedule_key(ANNA))
    assert used is not None and used < 700


def test_service_constructs_without_a_store(redis_client, screen, clock):
    assert CheckinService(redis_client, None, screen, clock=clock).store is None


async def test_a_user_can_leave_campaigns_and_keep_their_own_check_ins(service, redis_client, clock, platform):
    await Catalog(redis_client).add_campaign("weekly", "Sunday reflection", "18:00", "sun")
    await service.opt_in(ANNA, times="09:00", timezone="UTC")
    await service.update(ANNA, campaigns=False)
    assert (await service.status(ANNA)).schedule.campaigns is False
    await service.update(ANNA, times="10:00")  # other changes keep the choice
    assert (await service.status(ANNA)).schedule.campaigns is False
    await run_days(service, redis_client, clock, platform, 7)
    assert {text for _, _, text in platform.sent}.isdisjoint({"Sunday reflection"}) and len(platform.sent) == 7


async def test_dst_end_to_end_nine_oclock_london_both_sides_and_other_zones(service, redis_client, clock, platform):
    sao, kol = UserRef("telegram", "333"), UserRef("telegram", "444")
    for start in ("2026-03-27 12:00", "2026-10-23 12:00"):  # spring forward on the 29th, fall back on the 25th
        platform.sent.clear()
        clock.t = at("Europe/London", start)
        await service.opt_in(ANNA, times="09:00", timezone="Europe/London")
        await service.opt_in(sao, times="09:00", timezone="America/Sao_Paulo")
        await service.opt_in(kol, times="09:00", timezone="Asia/Kolkata")
        await run_days(service, redis_client, clock, platform, 4)
        for user, zone in ((ANNA, "Europe/London"), (sao, "America/Sao_Paulo"), (kol, "Asia/Kolkata")):
            fired = [local(zone, t) for u, t, _ in platform.sent if u == user]
            assert len(fired) == 4 and {f[-5:] for f in fired} == {"09:00"}, (zone, fired)
