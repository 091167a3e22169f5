"""`haven checkins …`: admin configuration of check-ins, counts, and the scheduler process.

    haven checkins templates list|add TEXT|remove ID
    haven checkins campaigns list|add ID --at 18:00 --days sun TEXT|remove ID
    haven checkins defaults [--times 09:00,19:00 --days weekdays]
    haven checkins stats                   counts only; who said what is never shown
    haven checkins scheduler               run the scheduler (leader election: start two, one stands by)

Redis is REDIS_URL (or --redis-url); without either, Haven's embedded Redis under the data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from core.checkins.catalog import Catalog
from core.checkins.config import CheckinConfig
from core.checkins.schedule import ScheduleError, describe_days


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="haven checkins", description="Configure and run Haven's check-ins.")
    parser.add_argument("--redis-url", help="redis://, rediss:// or unix:// (default: REDIS_URL or embedded)")
    commands = parser.add_subparsers(dest="command", required=True)

    templates = commands.add_parser("templates", help="check-in wordings, sent in rotation")
    t_actions = templates.add_subparsers(dest="action", required=True)
    t_actions.add_parser("list")
    t_add = t_actions.add_parser("add")
    t_add.add_argument("text")
    t_remove = t_actions.add_parser("remove")
    t_remove.add_argument("template_id")

    campaigns = commands.add_parser("campaigns", help="one wording for everyone opted in, at a local time")
    c_actions = campaigns.add_subparsers(dest="action", required=True)
    c_actions.add_parser("list")
    c_add = c_actions.add_parser("add")
    c_add.add_argument("campaign_id", help="a short word, e.g. weekly-reflection")
    c_add.add_argument("text")
    c_add.add_argument("--at", required=True, help="local time, e.g. 18:00")
    c_add.add_argument("--days", default="every day", help="e.g. sun, weekdays, mon-fri")
    c_remove = c_actions.add_parser("remove")
    c_remove.add_argument("campaign_id")

    defaults = commands.add_parser("defaults", help="times and days a new opt-in starts with")
    defaults.add_argument("--times")
    defaults.add_argument("--days", default="every day")

    commands.add_parser("stats", help="counts only")
    scheduler = commands.add_parser("scheduler", help="run the check-in scheduler (one leader, others stand by)")
    scheduler.add_argument("--tick-seconds", type=float, default=None)
    return parser


async def run_command(args: argparse.Namespace, client: Any, config: CheckinConfig | None = None) -> int:
    """Run one parsed command against `client`; prints results; returns the exit status."""
    catalog = Catalog(client)
    try:
        if args.command == "templates":
            if args.action == "list":
                for template_id, text in await catalog.templates():
                    print(f"{template_id}\t{text}")
            elif args.action == "add":
                print(f"added {await catalog.add_template(args.text)}")
            elif not await catalog.remove_template(args.template_id):
                print(f"no template {args.template_id}", file=sys.stderr)
                return 1
            else:
                print(f"removed {args.template_id}")
        elif args.command == "campaigns":
            if args.action == "list":
                for campaign in await catalog.campaigns():
                    print(campaign.describe())
            elif args.action == "add":
                campaign = await catalog.add_campaign(args.campaign_id, args.text, args.at, args.days)
                reindexed = await reindex_all(client, config)
                print(f"added {campaign.campaign_id}: {campaign.at:%H:%M} local, {describe_days(campaign.days)} "
                      f"({reindexed} schedules updated)")
            elif not await catalog.remove_campaign(args.campaign_id):
                print(f"no campaign {args.campaign_id}", file=sys.stderr)
                return 1
            else:
                reindexed = await reindex_all(client, config)
                print(f"removed {args.campaign_id} ({reindexed} schedules updated)")
        elif args.command == "defaults":
            if args.times:
                await catalog.set_defaults(args.times, args.days)
            times, days = await catalog.defaults()
            print(f"new check-ins start at {', '.join(f'{t:%H:%M}' for t in times)}, {describe_days(days)}")
        elif args.command == "stats":
            print(json.dumps(await catalog.stats(), indent=2))
    except (ScheduleError, ValueError) as exc:
        print(f"haven checkins: {exc}", file=sys.stderr)
        return 2
    return 0


async def reindex_all(client: Any, config: CheckinConfig | None = None, clock: Any = None) -> int:
    """Recompute every opted-in user's next firing (after campaigns change). O(users), run only by an admin."""
    from core.checkins import keys
    from core.checkins.schedule import CheckinSchedule, next_fire
    from core.clock import SystemClock

    now = (clock or SystemClock()).now()
    slots = await Catalog(client).campaign_slots()
    changed = 0
    batch: list[str] = []

    async def flush() -> int:
        async with client.pipeline(transaction=False) as pipe:
            for name in batch:
                pipe.hgetall(keys.schedule_key(keys.user_of(name)))
            raws = await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            for name, raw in zip(batch, raws, strict=True):
                if raw and raw.get("on") == "1":
                    firing = next_fire(CheckinSchedule.from_fields(raw), now, slots)
                    if firing is not None:
                        pipe.zadd(keys.DUE, {name: int(firing.at)}, xx=True)
            await pipe.execute()
        return len(batch)

    async for name, _score in client.zscan_iter(keys.DUE, count=1000):
        batch.append(name)
        if len(batch) >= 1000:
            changed += await flush()
            batch.clear()
    if batch:
        changed += await flush()
    return changed


@contextlib.asynccontextmanager
async def _connect(redis_url: str | None, *, log: bool = False) -> AsyncIterator[tuple[Any, CheckinConfig]]:
    from core.settings import load_settings
    from core.store import EmbeddedRedis, connect_redis

    settings = load_settings()
    if log:
        from core.logs import configure_logging

        configure_logging(settings.log_level)
    config = CheckinConfig.from_settings(settings)
    url = redis_url or settings.redis_url
    embedded = None
    if url:
        client = connect_redis(url)
    else:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        client = connect_redis(unix_socket_path=await asyncio.to_thread(embedded.start))
    try:
        yield client, config
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _main(args: argparse.Namespace) -> int:
    async with _connect(args.redis_url, log=args.command == "scheduler") as (client, config):
        if args.command != "scheduler":
            return await run_command(args, client, config)
        from core.checkins.scheduler import CheckinScheduler

        if args.tick_seconds:
            config = CheckinConfig(**{**{f: getattr(config, f) for f in config.__dataclass_fields__},
                                      "tick_seconds": args.tick_seconds})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await CheckinScheduler(client, config=config).run(stop)
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the command line's edge: one line, no traceback
        from core.errors import HavenError

        if isinstance(exc, HavenError):
            print(f"haven checkins: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
