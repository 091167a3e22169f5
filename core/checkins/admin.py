"""Admin-only chat commands for check-ins, the same operations as `haven checkins …`. Counts only: no view here
ever shows who said what.

    /checkins_admin stats
    /checkins_admin templates            | templates add <text> | templates remove <id>
    /checkins_admin campaigns            | campaigns add <id> <HH:MM> <days> <text> | campaigns remove <id>
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.checkins.catalog import Catalog
from core.checkins.schedule import ScheduleError, describe_days
from core.checkins.texts import line
from core.clock import Clock
from core.types import Reply, ReplyKind, UserRef

USAGE = ("stats · templates [add <text> | remove <id>] · "
         "campaigns [add <id> <HH:MM> <days> <text> | remove <id>]")


def is_admin(user: UserRef, admins: Iterable[tuple[str, str]]) -> bool:
    return (user.platform, user.user_id) in set(admins)


async def admin_command(client: Any, user: UserRef, admins: Iterable[tuple[str, str]], text: str, *,
                        clock: Clock | None = None) -> Reply:
    """Run one admin command typed in chat (the words after the command name). Non-admins get a kind no."""
    if not is_admin(user, admins):
        return Reply(ReplyKind.NOTICE, line("admin_only"))
    catalog = Catalog(client)
    words = text.split()
    topic, action = [*words, "", ""][:2]
    try:
        if topic == "stats":
            counts = await catalog.stats()
            return Reply(ReplyKind.NOTICE, "\n".join(f"{name}: {value}" for name, value in counts.items())
                         or "No counts yet.")
        if topic == "templates":
            if action == "add":
                template_id = await catalog.add_template(text.split(None, 2)[2] if len(words) > 2 else "")
                return Reply(ReplyKind.NOTICE, f"Added template {template_id}.")
            if action == "remove" and len(words) > 2:
                removed = await catalog.remove_template(words[2])
                return Reply(ReplyKind.NOTICE, f"Removed {words[2]}." if removed else f"No template {words[2]}.")
            return Reply(ReplyKind.NOTICE, "\n".join(f"{tid}: {t}" for tid, t in await catalog.templates()))
        if topic == "campaigns":
            from core.checkins.cli import reindex_all

            if action == "add" and len(words) > 5:
                _, _, campaign_id, at, days, rest = text.split(None, 5)
                campaign = await catalog.add_campaign(campaign_id, rest, at, days)
                updated = await reindex_all(client, clock=clock)
                return Reply(ReplyKind.NOTICE, f"Added {campaign.campaign_id}: {campaign.at:%H:%M} local, "
                                               f"{describe_days(campaign.days)} ({updated} schedules updated).")
            if action == "remove" and len(words) > 2:
                removed = await catalog.remove_campaign(words[2])
                if removed:
                    await reindex_all(client, clock=clock)
                return Reply(ReplyKind.NOTICE, f"Removed {words[2]}." if removed else f"No campaign {words[2]}.")
            found = await catalog.campaigns()
            return Reply(ReplyKind.NOTICE, "\n".join(c.describe() for c in found) or "No campaigns.")
    except (ScheduleError, ValueError) as exc:
        return Reply(ReplyKind.NOTICE, f"Not done: {exc}.")
    return Reply(ReplyKind.NOTICE, USAGE)
