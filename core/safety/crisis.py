"""The fixed crisis reply, the short resources line, the helpline directory, and the admin alert hook.

Everything here is reviewed data (`data/helplines.yaml`, `data/crisis_replies.yaml`) rendered without the model,
Redis or the network, so a person in crisis gets an answer even when the rest of Haven is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

import yaml

__all__ = [
    "CountryHelplines",
    "CrisisAlert",
    "crisis_reply",
    "helplines_for",
    "known_countries",
    "normalize_country",
    "resources_line",
]


@dataclass(frozen=True, slots=True)
class CountryHelplines:
    """The reviewed helplines for one country."""

    country: str
    emergency: str
    lines: tuple[str, ...]
    reviewed: str


class CrisisAlert(Protocol):
    """Told that a crisis reply was sent; off unless the lead wires one in. Never receives message text.

    `user_ref` is a hashed user reference (e.g. `UserRef.log_id`), `country` an ISO code or None.
    Implementations must not raise into the caller's path; `alert_crisis_sent` guards the call anyway.
    """

    def __call__(self, platform: str, user_ref: str, country: str | None) -> None: ...


def alert_crisis_sent(alert: CrisisAlert | None, platform: str, user_ref: str, country: str | None) -> bool:
    """Call `alert` if one is configured; a failing alert never blocks the crisis reply. True when delivered."""
    if alert is None:
        return False
    try:
        alert(platform, user_ref, normalize_country(country))
    except Exception:  # the alert is best effort: the person's reply matters more than the admin's ping
        import logging

        logging.getLogger(__name__).warning("crisis alert failed", exc_info=True)
        return False
    return True


def _read(name: str) -> dict[str, Any]:
    text = resources.files("core.safety").joinpath(f"data/{name}").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def _helpline_data() -> dict[str, Any]:
    return _read("helplines.yaml")


@cache
def _reply_data() -> dict[str, Any]:
    return _read("crisis_replies.yaml")


def normalize_country(country: str | None) -> str | None:
    """Turn what a user or platform gives ("uk", "United States", "de-DE" locale, "gb") into an ISO code."""
    if not country:
        return None
    value = country.strip()
    if not value:
        return None
    data = _helpline_data()
    alias = data.get("aliases", {}).get(value.casefold())
    if alias:
        return str(alias)
    # Locales like "en-GB", "pt_BR" carry the country after the separator.
    for sep in ("-", "_"):
        if sep in value:
            value = value.rsplit(sep, 1)[1]
    value = value.upper()
    if value == "UK":
        return "GB"
    return value if len(value) == 2 and value.isalpha() else None


def known_countries() -> list[str]:
    """ISO 3166 alpha-2 codes that have reviewed helplines in the data."""
    return sorted(_helpline_data()["countries"])


def helplines_for(country: str | None) -> CountryHelplines | None:
    """The reviewed helplines for `country`, or None when we have none (the caller then uses the directory)."""
    code = normalize_country(country)
    entry = _helpline_data()["countries"].get(code) if code else None
    if entry is None or code is None:
        return None
    return CountryHelplines(
        country=code,
        emergency=str(entry["emergency"]),
        lines=tuple(entry.get("lines") or ()),
        reviewed=str(entry["reviewed"]),
    )


def _language(language: str | None) -> str:
    data = _reply_data()
    if language:
        code = language.strip().replace("_", "-").split("-", 1)[0].casefold()
        if code in data["crisis"]:
            return code
    return str(data["default_language"])


def crisis_reply(country: str | None, language: str | None = None) -> str:
    """The fixed, reviewed crisis reply with the helplines for `country` (the international directory if unknown)."""
    data = _reply_data()
    lang = _language(language)
    found = helplines_for(country)
    emergency = found.emergency if found else data["emergency_fallback"][lang]
    lines: list[str] = list(found.lines) if found else []
    if found:
        lines.append(data["emergency_line"][lang].format(emergency=found.emergency))
    lines.append(data["directory_line"][lang])
    helplines = "\n".join(f"• {line}" for line in lines)
    return str(data["crisis"][lang]).format(helplines=helplines, emergency=emergency)


def resources_line(country: str | None, language: str | None = None) -> str:
    """One short line with the country's helpline(s), for replies at concern level and after a crisis."""
    data = _reply_data()
    lang = _language(language)
    found = helplines_for(country)
    if found and found.lines:
        parts = [found.lines[0], data["emergency_line"][lang].format(emergency=found.emergency)]
    elif found:
        parts = [data["emergency_line"][lang].format(emergency=found.emergency), "findahelpline.com"]
    else:
        parts = ["findahelpline.com"]
    return str(data["resources"][lang]).format(helplines="; ".join(parts))
