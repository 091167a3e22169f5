"""Crisis alerts to the Telegram admins (HAVEN_CRISIS_ALERTS): the delivery task `run_telegram` starts next to
the check-in delivery. The text is the core's fixed alert (`core.safety.alerts`): no message text, no username.

An admin must have started a private chat with the bot once: Telegram lets a bot message only users who did.
"""

from __future__ import annotations

from telegram import Bot

from core.runtime import Runtime
from core.safety.alerts import RunningAlerts, admin_delivery, stop_alerts

__all__ = ["start_crisis_alerts", "stop_crisis_alerts"]


def start_crisis_alerts(runtime: Runtime, bot: Bot) -> RunningAlerts | None:
    """Start sending alerts to the Telegram admins; None when alerts are off or no Telegram admin is set."""

    async def send(admin_id: str, text: str) -> None:
        await bot.send_message(chat_id=int(admin_id), text=text)  # plain text: no parse mode to trip over

    delivery = admin_delivery(runtime.manager.crisis_alert, "telegram", runtime.settings.admins, send,
                              redis=runtime.redis)
    return delivery.start("telegram-crisis-alerts") if delivery is not None else None


async def stop_crisis_alerts(running: RunningAlerts | None) -> None:
    await stop_alerts(running)
