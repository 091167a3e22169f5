"""Crisis alerts to the Discord admins (HAVEN_CRISIS_ALERTS), sent as DMs once the client is logged in. The text
is the core's fixed alert (`core.safety.alerts`): no message text, no username, no channel or server name.

An admin must accept DMs from the bot (share a server with it, DMs not closed); otherwise Discord answers 403,
which is logged by type and not retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bots.discord.render import send_text
from core.safety.alerts import RunningAlerts, admin_delivery, stop_alerts

if TYPE_CHECKING:
    from bots.discord.client import HavenDiscord

__all__ = ["start_crisis_alerts", "stop_crisis_alerts"]


def start_crisis_alerts(bot: HavenDiscord) -> RunningAlerts | None:
    """Start DMing alerts to the Discord admins; None when alerts are off or no Discord admin is set."""

    async def send(admin_id: str, text: str) -> None:
        admin = bot.get_user(int(admin_id)) or await bot.fetch_user(int(admin_id))
        await send_text(admin, text)  # pings nobody; retried only on transient failures, a bounded number of times

    delivery = admin_delivery(bot.manager.crisis_alert, "discord", bot.admins, send, redis=bot.redis)
    return delivery.start("discord-crisis-alerts", first=bot.wait_until_ready) if delivery is not None else None


async def stop_crisis_alerts(running: RunningAlerts | None) -> None:
    await stop_alerts(running)
