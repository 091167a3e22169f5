"""What admins configure, shared by every process: check-in templates (sent in rotation), campaigns (one wording
for everyone opted in, at a local time and weekdays), default schedules, and event counters (counts only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import time
from typing import Any

from core.checkins import keys
from core.checkins.schedule import EVERY_DAY, Slot, describe_days, parse_days, parse_time, parse_times
from core.checkins.texts import default_templates

MAX_TEMPLATE_CHARS = 500


@dataclass(frozen=True, slots=True)
class Campaign:
    campaign_id: str
    text: str
    at: time
    days: frozenset[int] = EVERY_DAY

    def slot(self) -> Slot:
        return Slot(self.at, self.days, self.campaign_id)

    def to_json(self) -> str:
        return json.dumps({"text": self.text, "at": f"{self.at:%H:%M}", "days": "".join(map(str, sorted(self.days)))},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, campaign_id: str, raw: str) -> Campaign:
        data = json.loads(raw)
        return cls(campaign_id, str(data["text"]), parse_time(data["at"]),
                   frozenset(int(c) for c in data.get("days", "0123456")))

    def describe(self) -> str:
        return f"{self.campaign_id}: {self.at:%H:%M} local, {describe_days(self.days)}: {self.text}"


class Catalog:
    """Templates, campaigns, defaults and counters in Redis (global keys; nothing about any one user)."""

    def __init__(self, client: Any) -> None:
        self._redis = client

    # ---- templates ----
    async def _seed(self) -> None:
        if await self._redis.set(keys.TEMPLATE_IDS, 0, nx=True):
            for text in default_templates():
                await self._add(text)

    async def _add(self, text: str) -> str:
        template_id = f"t{await self._redis.incr(keys.TEMPLATE_IDS)}"
        await self._redis.hset(keys.TEMPLATES, template_id, text)
        return template_id

    async def templates(self) -> list[tuple[str, str]]:
        await self._seed()
        raw: dict[str, str] = await self._redis.hgetall(keys.TEMPLATES)
        return sorted(raw.items(), key=lambda item: int(item[0][1:]))

    async def add_template(self, text: str) -> str:
        text = " ".join(text.split())
        if not text or len(text) > MAX_TEMPLATE_CHARS:
            raise ValueError(f"a template needs 1 to {MAX_TEMPLATE_CHARS} characters")
        await self._seed()
        return await self._add(text)

    async def remove_template(self, template_id: str) -> bool:
        await self._seed()
        return bool(await self._redis.hdel(keys.TEMPLATES, template_id))

    async def template_for(self, rotation: int) -> str:
        """The template at this point in a user's rotation (the YAML's first line if an admin removed them all)."""
        found = await self.templates()
        if not found:
            return default_templates()[0]
        return found[rotation % len(found)][1]

    # ---- campaigns ----
    async def campaigns(self) -> list[Campaign]:
        return self.parse_campaigns(await self._redis.hgetall(keys.CAMPAIGNS))

    @staticmethod
    def parse_campaigns(raw: dict[str, str]) -> list[Campaign]:
        return sorted((Campaign.from_json(cid, value) for cid, value in raw.items()), key=lambda c: c.campaign_id)

    async def campaign_slots(self) -> list[Slot]:
        return [c.slot() for c in await self.campaigns()]

    async def campaign_text(self, campaign_id: str) -> str | None:
        raw = await self._redis.hget(keys.CAMPAIGNS, campaign_id)
        return Campaign.from_json(campaign_id, raw).text if raw else None

    async def add_campaign(self, campaign_id: str, text: str, at: str, days: str = "every day") -> Campaign:
        campaign_id = campaign_id.strip().lower()
        if not campaign_id.replace("-", "").replace("_", "").isalnum() or len(campaign_id) > 32:
            raise ValueError("a campaign id is a short word like weekly-reflection")
        text = " ".join(text.split())
        if not text or len(text) > MAX_TEMPLATE_CHARS:
            raise ValueError(f"a campaign text needs 1 to {MAX_TEMPLATE_CHARS} characters")
        campaign = Campaign(campaign_id, text, parse_time(at), parse_days(days))
        await self._redis.hset(keys.CAMPAIGNS, campaign_id, campaign.to_json())
        return campaign

    async def remove_campaign(self, campaign_id: str) -> bool:
        return bool(await self._redis.hdel(keys.CAMPAIGNS, campaign_id.strip().lower()))

    # ---- defaults for a new opt-in ----
    async def defaults(self) -> tuple[tuple[time, ...], frozenset[int]]:
        return self.parse_defaults(await self._redis.hgetall(keys.DEFAULTS))

    @staticmethod
    def parse_defaults(raw: dict[str, str]) -> tuple[tuple[time, ...], frozenset[int]]:
        times = parse_times(raw.get("times") or "19:00")
        days = frozenset(int(c) for c in raw.get("days", "0123456")) or EVERY_DAY
        return times, days

    async def set_defaults(self, times: str, days: str = "every day") -> tuple[tuple[time, ...], frozenset[int]]:
        parsed_times, parsed_days = parse_times(times), parse_days(days)
        await self._redis.hset(keys.DEFAULTS, mapping={
            "times": ",".join(f"{t:%H:%M}" for t in parsed_times),
            "days": "".join(map(str, sorted(parsed_days)))})
        return parsed_times, parsed_days

    # ---- counters: how many, never who ----
    async def count(self, event: str, amount: int = 1) -> None:
        await self._redis.hincrby(keys.STATS, event, amount)

    async def stats(self) -> dict[str, int]:
        raw: dict[str, str] = await self._redis.hgetall(keys.STATS)
        counts = {name: int(value) for name, value in sorted(raw.items())}
        counts["opted_in_now"] = int(await self._redis.zcard(keys.DUE))
        return counts
