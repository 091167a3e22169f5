"""The private journal: a short prompt, an entry kept with its date, a list the person can read and delete.

Entries live under the user's prefix (`journal`, `journal:seq`), so /export includes them and /forget deletes
them. They never reach the language model, except one entry the person explicitly asks to talk about.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.tools.flow import Flows, guarded, journal_key, journal_seq_key
from core.tools.form import ToolContext
from core.tools.texts import fill, label, line, tool_data
from core.types import Button, Reply, ReplyKind, UserRef

log = logging.getLogger(__name__)

MAX_ENTRY_CHARS = 4000
MAX_ENTRIES = 1000
LIST_SHOWN = 10
LIST_BUTTONS = 5
_PREVIEW_CHARS = 60


def _texts() -> dict[str, Any]:
    return tool_data("journal")


def _button(key: str, **values: object) -> str:
    return fill(_texts()["buttons"][key], **values)


def entry_date(at: float, timezone: str | None) -> str:
    """The entry's day in the person's own time zone (UTC when they haven't set one), e.g. "3 March 2026"."""
    zone: Any = UTC
    if timezone:
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = UTC
    day = datetime.fromtimestamp(at, zone)
    return f"{day.day} {day:%B %Y}"


class Journal:
    tool = "journal"

    def __init__(self, client: Any, flows: Flows) -> None:
        self.redis = client
        self.flows = flows

    # ---- storage ---------------------------------------------------------------------------------------------

    async def add(self, ctx: ToolContext, words: str, prompt: str, now: float) -> dict[str, Any] | None:
        """Keep one entry; None when the journal is full."""
        key = journal_key(ctx.user)
        if int(await guarded(lambda: self.redis.hlen(key))) >= MAX_ENTRIES:
            return None
        entry_id = int(await guarded(lambda: self.redis.incr(journal_seq_key(ctx.user))))
        entry = {"id": entry_id, "at": now, "date": entry_date(now, ctx.timezone), "prompt": prompt,
                 "text": words.strip()}
        await guarded(lambda: self.redis.hset(key, str(entry_id), json.dumps(entry, ensure_ascii=False)))
        log.info("journal entry saved user=%s", ctx.user.log_id)
        return entry

    async def entries(self, user: UserRef) -> list[dict[str, Any]]:
        """Newest first."""
        raw: dict[str, str] = await guarded(lambda: self.redis.hgetall(journal_key(user)))
        found = []
        for value in raw.values():
            try:
                found.append(json.loads(value))
            except ValueError:
                continue
        return sorted(found, key=lambda entry: (entry.get("at", 0), entry.get("id", 0)), reverse=True)

    async def entry(self, user: UserRef, entry_id: str) -> dict[str, Any] | None:
        if not entry_id.isdigit():
            return None
        raw = await guarded(lambda: self.redis.hget(journal_key(user), entry_id))
        return json.loads(raw) if raw else None

    async def delete(self, user: UserRef, entry_id: str) -> bool:
        return bool(await guarded(lambda: self.redis.hdel(journal_key(user), entry_id)))

    # ---- what the person sees --------------------------------------------------------------------------------

    def full_text(self) -> str:
        return fill(_texts()["full"], limit=MAX_ENTRIES)

    def _invite(self, index: int) -> Reply:
        prompts = _texts()["prompts"]
        prompt = str(prompts[index % len(prompts)])
        return Reply(ReplyKind.NOTICE, fill(_texts()["invite"], prompt=prompt), (
            Button(_button("another"), "tool:journal:another"), Button(_button("list"), "tool:journal:list"),
            Button(label("stop"), "tool:journal:stop")))

    async def begin(self, ctx: ToolContext, now: float) -> Reply:
        index = int(now // 86400) % len(_texts()["prompts"])  # a different prompt each day
        await self.flows.set(ctx.user, tool=self.tool, prompt=index)
        return self._invite(index)

    async def answer(self, ctx: ToolContext, state: dict[str, Any], words: str, now: float) -> Reply:
        if len(words) > MAX_ENTRY_CHARS:
            return Reply(ReplyKind.NOTICE, line("too_long", limit=MAX_ENTRY_CHARS))
        prompts = _texts()["prompts"]
        prompt = str(prompts[int(state.get("prompt", 0)) % len(prompts)])
        entry = await self.add(ctx, words, prompt, now)
        await self.flows.clear(ctx.user)
        if entry is None:
            return Reply(ReplyKind.NOTICE, self.full_text())
        return Reply(ReplyKind.NOTICE, fill(_texts()["saved"], date=entry["date"]), (
            Button(_button("write"), "tool:journal:write"), Button(_button("list"), "tool:journal:list")))

    async def listing(self, user: UserRef) -> Reply:
        entries = await self.entries(user)
        if not entries:
            return Reply(ReplyKind.NOTICE, str(_texts()["empty"]))
        count = len(entries)
        parts = [fill(_texts()["list_heading"], count=count, entries="entry" if count == 1 else "entries")]
        for entry in entries[:LIST_SHOWN]:
            preview = " ".join(str(entry.get("text", "")).split())
            if len(preview) > _PREVIEW_CHARS:
                preview = preview[:_PREVIEW_CHARS].rstrip() + "…"
            parts.append(fill(_texts()["entry_heading"], id=entry["id"], date=entry["date"]) + "  " + preview)
        if count > LIST_SHOWN:
            parts.append(fill(_texts()["list_more"], more=count - LIST_SHOWN))
        buttons = tuple(Button(_button("open", id=e["id"], date=e["date"]), f"tool:journal:open:{e['id']}")
                        for e in entries[:LIST_BUTTONS])
        return Reply(ReplyKind.NOTICE, "\n".join(parts), buttons)

    async def show(self, user: UserRef, entry_id: str) -> Reply:
        entry = await self.entry(user, entry_id)
        if entry is None:
            return Reply(ReplyKind.NOTICE, str(_texts()["not_found"]), (Button(_button("list"), "tool:journal:list"),))
        parts = [fill(_texts()["entry_heading"], id=entry["id"], date=entry["date"])]
        if entry.get("prompt"):
            parts.append(fill(_texts()["prompt_line"], prompt=entry["prompt"]))
        parts.append(str(entry.get("text", "")))
        return Reply(ReplyKind.NOTICE, "\n\n".join(parts), (
            Button(_button("talk"), f"tool:journal:talk:{entry['id']}"),
            Button(_button("delete"), f"tool:journal:del:{entry['id']}"),
            Button(_button("back"), "tool:journal:list")))

    async def talk_text(self, user: UserRef, entry_id: str) -> str | None:
        """The message that brings one entry into the conversation, at the person's own request."""
        entry = await self.entry(user, entry_id)
        if entry is None:
            return None
        return fill(_texts()["talk_intro"], date=entry["date"], text=entry.get("text", ""))

    async def act(self, ctx: ToolContext, verb: str, arg: str, now: float) -> Reply | None:
        user = ctx.user
        if verb == "another":
            state = await self.flows.get(user)
            index = int(state.get("prompt", 0)) + 1 if state and state.get("tool") == self.tool else 0
            await self.flows.set(user, tool=self.tool, prompt=index)
            return self._invite(index)
        if verb == "write":
            return await self.begin(ctx, now)
        if verb == "stop":
            await self.flows.clear(user)
            return Reply(ReplyKind.NOTICE, line("cancelled"))
        if verb == "list":
            return await self.listing(user)
        if verb in {"open", "read"}:
            return await self.show(user, arg)
        if verb == "del":
            entry = await self.entry(user, arg)
            if entry is None:
                return Reply(ReplyKind.NOTICE, str(_texts()["not_found"]))
            return Reply(ReplyKind.NOTICE, fill(_texts()["delete_confirm"], date=entry["date"]), (
                Button(label("delete_yes"), f"tool:journal:del!:{arg}"),
                Button(label("delete_no"), f"tool:journal:open:{arg}")))
        if verb == "del!":
            deleted = await self.delete(user, arg)
            if deleted:
                log.info("journal entry deleted user=%s", user.log_id)
            return Reply(ReplyKind.NOTICE, str(_texts()["deleted" if deleted else "not_found"]),
                         (Button(_button("list"), "tool:journal:list"),))
        return None
