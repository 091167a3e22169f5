"""Lines only the Discord adapter says (button labels, the DM offer, command descriptions).

Everything Haven says as Haven (welcome, consent, help, privacy, crisis texts) comes from the core's data files.
These few are about Discord's own surface. The /forget, /export and check-in lines are worded exactly as the
Telegram adapter's (`bots/telegram/lines.yaml`) so both platforms say the same; they belong in
`core/data/texts.yaml` once the core's owner moves them there.
"""

from __future__ import annotations

from typing import Final

DISCORD_TEXTS: Final[dict[str, str]] = {
    "dm_offer": (
        "This channel is public, so others here can read what we write. If you'd rather talk privately, press "
        "the button and I'll send you a direct message. Anything you tell me there stays between us."
    ),
    "dm_offer_button": "Continue in DMs",
    "dm_opened": "I've sent you a direct message. Write to me there whenever you're ready.",
    "dm_closed": (
        "I couldn't send you a direct message: your privacy settings may block messages from apps in this "
        "server. You can also open a DM with me from my profile."
    ),
    "dm_hello": "Hi, it's Haven. This conversation is private. What's on your mind?",
    "forget_confirm": "Delete everything I have stored about you? This can't be undone.",
    "forget_confirm_button": "Yes, delete everything",
    "forget_cancel_button": "No, keep it",
    "forget_cancelled": "Okay, nothing was deleted.",
    "export_ready": "Here is everything I have stored about you.",
    "checkin_hint": "Empty to see them, or: on 09:00 weekdays London · pause 7 · resume · off",
    "mood_hint": "Empty for your chart, or a number 1-5, feeling words and a note: 2 tired - rough day",
    "checkins_admin_hint": "stats · templates [add <text> | remove <id>] · campaigns [add … | remove <id>]",
    "checkin_not_enabled": (
        "Check-ins and mood notes aren't switched on here yet. Until they are, you can simply tell me how "
        "you're feeling, any time."
    ),
    "country_hint": "Two-letter country code, for example GB, US, IE or CA",
}

COMMAND_DESCRIPTIONS: Final[dict[str, str]] = {
    "start": "Meet Haven and choose whether it may remember your conversation",
    "help": "What Haven can do",
    "resources": "Helplines for your country",
    "country": "Set your country, so Haven shows the right helplines",
    "checkin": "Scheduled check-ins",
    "mood": "Track your mood",
    "forget": "Delete everything Haven stores about you",
    "export": "Get a copy of everything Haven stores about you",
    "privacy": "What Haven keeps and for how long",
    "checkins_admin": "Admins only: check-in templates, campaigns and counts",
}


def discord_text(key: str) -> str:
    return DISCORD_TEXTS[key]
