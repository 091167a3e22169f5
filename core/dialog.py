"""The dialog manager: one message in, one reply out, the same for every platform.

For each message: take the user's turn (one user's messages are answered strictly in order; different users
run concurrently) → screen for crisis risk first, before anything that can fail → load the user's context →
build the prompt → stream the model's reply through the output guard → store the exchange, if the user agreed.

A crisis reply is fixed text from the safety layer. It never waits on the model, and it goes out even when
Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from core import metrics
from core.clock import Clock, SystemClock
from core.engines.base import Engine
from core.errors import EngineError, StoreError
from core.ordering import KeyedLocks
from core.prompts import build_messages, system_prompt
from core.ratelimit import Admission, UserRateLimiter
from core.safety import (
    CrisisAlert,
    RiskLevel,
    SafetyScreen,
    alert_crisis_sent,
    crisis_reply,
    guard_reply,
    known_countries,
    normalize_country,
    resources_line,
)
from core.store.base import ContextStore
from core.texts import text
from core.tools.suggest import exercise_buttons_for
from core.types import Button, IncomingMessage, Profile, Reply, ReplyKind, Turn, UserRef

if TYPE_CHECKING:
    from core.store.redis_store import AlongRead
    from core.tools import CopingTools

log = logging.getLogger(__name__)

# How long after a crisis reply the model's replies carry a resources line.
CRISIS_FOLLOW_UP_SECONDS = 24 * 3600
# How many of the user's earlier messages the safety screen sees (for escalation across turns).
SCREEN_RECENT_MESSAGES = 3
# Longest message passed to the model; the safety screen always reads the whole message.
MAX_MODEL_INPUT_CHARS = 4000
# Recent messages for the safety screen are kept in memory for this many users (never written without consent).
_REMEMBERED_USERS = 10_000
# A crisis reply waits at most this long on Redis (for the user's country; to note the crisis).
CRISIS_STORE_SECONDS = 0.5
# Streaming updates: hand the adapter the text so far at most this often (adapters rate-limit further).
_PARTIAL_EVERY_CHARS = 24

_SENTENCE_ENDINGS = ".!?…"

PartialSink = Callable[[str], Awaitable[None]]


def scrub_text(raw: str) -> str:
    """Text as it may arrive (a lone surrogate from a JSON escape, NULs) made safe to store and encode."""
    return raw.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "")


def whole_sentences(reply: str) -> str:
    """A reply cut off by the token limit ends mid-sentence; drop the unfinished tail when enough remains."""
    reply = reply.strip()
    if not reply or reply.rstrip(")\"'”’*_ ")[-1:] in tuple(_SENTENCE_ENDINGS):
        return reply
    cut = max(reply.rfind(mark) for mark in _SENTENCE_ENDINGS)
    return reply[: cut + 1] if cut >= len(reply) // 3 else reply


class CheckinHooks(Protocol):
    async def note_chat(self, user: UserRef) -> None: ...

    def note_chat_along(self, user: UserRef) -> AlongRead[None]:
        """`note_chat`, in the round trip of the message's context read; never raises."""
        ...

    async def forget_user(self, user: UserRef) -> int: ...


class ReplySink(Protocol):
    """Where an adapter wants the manager's output while a reply is being prepared."""

    async def send(self, reply: Reply) -> None:
        """A complete message that comes before the main reply (the first-contact welcome)."""
        ...

    async def partial(self, text_so_far: str) -> None:
        """The model's reply so far, for a message edited in place while it streams."""
        ...


@dataclass(frozen=True, slots=True)
class DialogLimits:
    reply_timeout_seconds: float = 120.0
    default_country: str | None = None
    # False: this instance keeps no conversations at all: nobody is asked for consent, no history is read or
    # written, and every user is treated as having said no to memory.
    remember_conversations: bool = True


class DialogManager:
    def __init__(
        self,
        store: ContextStore,
        engine: Engine,
        screen: SafetyScreen,
        *,
        limits: DialogLimits | None = None,
        clock: Clock | None = None,
        crisis_alert: CrisisAlert | None = None,
        tools: CopingTools | None = None,
        checkins: CheckinHooks | None = None,
        rate_limiter: UserRateLimiter | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.screen = screen
        self.limits = limits or DialogLimits()
        self.clock = clock or SystemClock()
        self.crisis_alert = crisis_alert
        # Coping tools (core/tools): flows answered after the safety screen, the person's own safety plan under
        # a crisis reply, and an exercise button on a reply when their words fit one.
        self.tools = tools
        # Check-ins (core/checkins) skip a check-in when the person talked recently, and drop a forgotten user
        # from their global due index.
        self.checkins = checkins
        self.rate_limiter = rate_limiter
        if tools is not None:
            tools.bind_chat(self.handle, default_country=self.limits.default_country)
        self._turn_locks = KeyedLocks()
        self._welcomed: set[UserRef] = set()
        self._recent: OrderedDict[UserRef, deque[str]] = OrderedDict()
        self._ephemeral_crisis_at: OrderedDict[UserRef, float] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()

    # ---- the conversation -------------------------------------------------------------------------------

    async def handle(self, message: IncomingMessage, sink: ReplySink | None = None) -> Reply:
        """Answer one message. Never raises for store or engine trouble: the user always hears back."""
        async with self._user_turn(message.user):
            reply = await self._answer(message, sink)
        metrics.inc("haven_messages_total", "Messages answered, by reply kind.", kind=str(reply.kind))
        return reply

    def _note_chat_in_background(self, user: UserRef) -> None:
        """Tell check-ins that the user talked just now, without waiting for it (a crisis reply never does). A
        reference is kept until it is done, so it is never dropped. Other messages send the note in their
        context read's round trip."""
        if self.checkins is None:
            return
        task = asyncio.create_task(self._note_chat(self.checkins, user))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _note_chat(checkins: CheckinHooks, user: UserRef) -> None:
        try:
            await checkins.note_chat(user)
        except Exception:  # a check-in hint must never cost the user their reply
            log.warning("check-in chat note failed user=%s", user.log_id, exc_info=True)

    async def _answer(self, message: IncomingMessage, sink: ReplySink | None) -> Reply:
        user, words = message.user, scrub_text(message.text).strip()
        if not words:
            if self.checkins is not None:
                await self._note_chat(self.checkins, user)
            return Reply(ReplyKind.NOTICE, text("empty_message"))
        message = replace(message, text=words)

        # Screen first, with the recent messages this process holds, before anything that can wait on Redis.
        remembered = list(self._recent.get(user, ()))
        assessment = self.screen.assess(words, remembered)
        if assessment.level == RiskLevel.CRISIS:
            self._note_chat_in_background(user)
            self._remember_recent(user, words)
            profile, store_ok = await self._profile_quickly(user)
            return await self._crisis(message, profile, profile.country or self.limits.default_country, store_ok)

        # With earlier messages in memory the stored turns are not screened again below: the verdict is final.
        (profile, history, store_ok), admission, waiting_flow = await self._read_together(
            message, verdict_final=bool(remembered))
        if not remembered and history:  # after a restart, escalation across turns draws on the stored turns
            assessment = self.screen.assess(words, [t.content for t in history if t.role == "user"]
                                            [-SCREEN_RECENT_MESSAGES:])
        self._remember_recent(user, words)
        country = profile.country or self.limits.default_country
        log.info("message user=%s risk=%s reasons=%d", user.log_id, assessment.level, len(assessment.reasons))

        if assessment.level == RiskLevel.CRISIS:
            return await self._crisis(message, profile, country, store_ok)

        if self.rate_limiter is not None:  # after the crisis checks: a crisis is never rate-limited
            if admission is None:
                admission = await self.rate_limiter.admit(user)
            if not admission.allowed:
                notify = admission is Admission.LIMITED_NOTIFY
                return Reply(ReplyKind.NOTICE, text("rate_limited") if notify else "")

        if self.tools is not None and not message.public:  # a tool's form waiting for this message
            concern = assessment.level == RiskLevel.CONCERN
            flow_reply = await self.tools.answer_flow(message, waiting_flow, concern=concern)
            if flow_reply is not None:
                return flow_reply

        first_contact = profile.consent is None or not self.limits.remember_conversations
        if store_ok and first_contact and user not in self._welcomed and sink is not None:
            self._welcomed.add(user)
            await sink.send(self.welcome())

        concern = assessment.level == RiskLevel.CONCERN
        messages = build_messages(system_prompt(concern=concern), history, words[:MAX_MODEL_INPUT_CHARS])
        try:
            async with asyncio.timeout(self.limits.reply_timeout_seconds):
                draft, blocked = await self._stream_guarded(messages, sink.partial if sink else None)
        except (EngineError, TimeoutError) as exc:
            log.warning("reply failed user=%s error=%s", user.log_id, type(exc).__name__)
            return Reply(ReplyKind.FALLBACK, text("fallback") + "\n\n" + resources_line(country, message.locale))
        except Exception:  # an engine bug must not cost the user an answer
            log.exception("reply failed unexpectedly user=%s", user.log_id)
            return Reply(ReplyKind.FALLBACK, text("fallback") + "\n\n" + resources_line(country, message.locale))

        if blocked:
            log.info("output guard replaced a draft user=%s", user.log_id)
            metrics.inc("haven_guard_blocks_total", "Model drafts the output guard replaced.")
        reply_text = draft
        last_crisis_at = profile.last_crisis_at or self._ephemeral_crisis_at.get(user)
        recently_in_crisis = (last_crisis_at is not None
                              and self.clock.now() - last_crisis_at < CRISIS_FOLLOW_UP_SECONDS)
        if concern or recently_in_crisis:
            reply_text += "\n\n" + resources_line(country, message.locale)
        if profile.consent and store_ok:
            store_ok = await self._store_exchange(user, message.place, words[:MAX_MODEL_INPUT_CHARS], draft, "chat")
        if not store_ok:
            reply_text += "\n\n" + text("store_trouble")
        suggested = exercise_buttons_for(words) if self.tools is not None and not message.public else ()
        return Reply(ReplyKind.CHAT, reply_text, suggested)

    async def _stream_guarded(self, messages: list[Any], partial: PartialSink | None) -> tuple[str, bool]:
        """The model's reply, shown as it grows only while the output guard passes it."""
        so_far, last_sent = "", 0
        async with aclosing(metrics.timed_stream(self.engine.stream(messages))) as pieces:  # type: ignore[type-var]
            async for piece in pieces:
                so_far += piece
                # The guard reads the whole draft, so updates are spaced in proportion to its length: the
                # total guard work stays near-linear in the reply's length, however it arrives.
                if partial is not None and len(so_far) - last_sent >= max(_PARTIAL_EVERY_CHARS, last_sent // 4):
                    if not guard_reply(so_far).allowed:
                        break  # stop generating; the full check below replaces the draft
                    last_sent = len(so_far)
                    await partial(so_far.strip())
        verdict = guard_reply(whole_sentences(so_far) or text("fallback"))
        return verdict.text.strip(), not verdict.allowed

    async def _crisis(self, message: IncomingMessage, profile: Profile, country: str | None, store_ok: bool) -> Reply:
        user, words = message.user, message.text.strip()
        fixed = crisis_reply(country, message.locale)
        # The person's own plan, when Redis just answered (on_crisis never raises and waits at most 1 s).
        own_plan = await self.tools.on_crisis(user) if self.tools is not None and store_ok else None
        reply = Reply(ReplyKind.CRISIS, fixed + "\n\n" + own_plan if own_plan else fixed)
        log.warning("crisis reply sent user=%s", user.log_id)
        metrics.inc("haven_crisis_replies_total", "Crisis replies sent (fixed text with helplines).")
        now = self.clock.now()
        if profile.consent and store_ok:
            # Bounded: a slow Redis must not hold back the reply. The fixed text only is stored: the person's
            # plan stays out of the history the model reads.
            with contextlib.suppress(StoreError, TimeoutError):
                async with asyncio.timeout(CRISIS_STORE_SECONDS):
                    await self.store.update_profile(user, last_crisis_at=now)
                    await self._store_exchange(user, message.place, words[:MAX_MODEL_INPUT_CHARS], fixed, "crisis")
        else:  # without consent (or without Redis) the follow-up window lives in this process only
            self._ephemeral_crisis_at[user] = now
            while len(self._ephemeral_crisis_at) > _REMEMBERED_USERS:
                self._ephemeral_crisis_at.popitem(last=False)
        alert_crisis_sent(self.crisis_alert, user.platform, user.log_id, country)
        return reply

    # ---- context ------------------------------------------------------------------------------------------

    async def _read_together(self, message: IncomingMessage, *, verdict_final: bool
                             ) -> tuple[tuple[Profile, list[Turn], bool], Admission | None, dict[str, Any] | None]:
        """The user's context, and what else this message needs from Redis, in the same round trip: the check-in
        note that the user talked just now, the coping-tool flow it may answer (a message also ends a breathing
        run), and its rate-limit count, but only when the screen's verdict is already final (the message is known
        not to be a crisis, and a crisis is never counted)."""
        user = message.user
        admit = self.rate_limiter.admit_along(user) if self.rate_limiter is not None and verdict_final else None
        flow = self.tools.flow_along(user) if self.tools is not None and not message.public else None
        note = self.checkins.note_chat_along(user) if self.checkins is not None else None
        along = [read for read in (admit, flow, note) if read is not None]
        if self.tools is not None and flow is not None and self.tools.pacing(user) is not None:
            context, _ = await asyncio.gather(self._load_context(user, message.place, along),
                                              self.tools.end_breathing(user))
        else:
            context = await self._load_context(user, message.place, along)
        return context, admit.result if admit is not None else None, flow.result if flow is not None else None

    async def _load_context(self, user: UserRef, place: str | None, along: Sequence[AlongRead[Any]]
                            ) -> tuple[Profile, list[Turn], bool]:
        try:
            profile, history = await self.store.load_context(
                user, place, with_history=self.limits.remember_conversations, along=along)
            profile = self._as_configured(profile)
        except StoreError as exc:
            log.warning("context unavailable user=%s error=%s", user.log_id, type(exc).__name__)
            return Profile(), [], False
        return profile, history, True

    async def _store_exchange(self, user: UserRef, place: str | None, words: str, reply: str, kind: str) -> bool:
        now = self.clock.now()
        try:
            await self.store.append_exchange(user, Turn("user", words, now, kind), Turn("assistant", reply, now, kind),
                                             place)
        except StoreError as exc:
            log.warning("turn not stored user=%s error=%s", user.log_id, type(exc).__name__)
            return False
        return True

    async def _profile_quickly(self, user: UserRef) -> tuple[Profile, bool]:
        """The profile for a crisis reply (country, consent), or none at all if Redis doesn't answer at once."""
        try:
            async with asyncio.timeout(CRISIS_STORE_SECONDS):
                return self._as_configured(await self.store.load_profile(user)), True
        except (StoreError, TimeoutError):
            return Profile(), False

    def _as_configured(self, profile: Profile) -> Profile:
        """With conversations switched off for the instance, everyone counts as having said no to memory."""
        return profile if self.limits.remember_conversations else replace(profile, consent=False)

    def _remember_recent(self, user: UserRef, words: str) -> None:
        """The user's last few messages, in this process's memory only, for escalation across turns."""
        recent = self._recent.setdefault(user, deque(maxlen=SCREEN_RECENT_MESSAGES))
        recent.append(words)
        self._recent.move_to_end(user)
        while len(self._recent) > _REMEMBERED_USERS:
            self._recent.popitem(last=False)

    @asynccontextmanager
    async def _user_turn(self, user: UserRef) -> AsyncIterator[None]:
        """One user's messages run one at a time, in arrival order."""
        async with self._turn_locks.hold(user):
            yield

    # ---- commands every adapter offers --------------------------------------------------------------------

    def welcome(self) -> Reply:
        if not self.limits.remember_conversations:
            return Reply(ReplyKind.WELCOME, text("welcome_no_memory"))
        return Reply(ReplyKind.WELCOME, text("welcome"), (
            Button(text("consent_yes_button"), "consent:yes"),
            Button(text("consent_no_button"), "consent:no"),
        ))

    async def set_consent(self, user: UserRef, allow: bool) -> Reply:
        if not self.limits.remember_conversations:
            return Reply(ReplyKind.NOTICE, text("memory_off"))
        async with self._user_turn(user):
            self._welcomed.add(user)
            try:
                await self.store.update_profile(user, consent=allow)
                if not allow:
                    await self.store.delete_history(user)
            except StoreError:
                return Reply(ReplyKind.NOTICE, text("store_trouble"))
            if allow:
                self._recent.pop(user, None)
            return Reply(ReplyKind.NOTICE, text("consent_given" if allow else "consent_declined"))

    async def set_country(self, user: UserRef, code: str) -> Reply:
        normalized = normalize_country(code)
        if normalized is None or normalized not in known_countries():
            return Reply(ReplyKind.NOTICE, text("country_unknown", code=code.strip()[:8]))
        code = normalized
        try:
            await self.store.update_profile(user, country=code)
        except StoreError:
            return Reply(ReplyKind.NOTICE, text("store_trouble"))
        return Reply(ReplyKind.NOTICE, text("country_set", country=code))

    async def resources(self, user: UserRef) -> Reply:
        country = self.limits.default_country
        with contextlib.suppress(StoreError):
            country = (await self.store.load_profile(user)).country or country
        return Reply(ReplyKind.NOTICE, crisis_reply(country))

    async def forget(self, user: UserRef) -> Reply:
        async with self._user_turn(user):
            self._welcomed.discard(user)
            self._recent.pop(user, None)
            self._ephemeral_crisis_at.pop(user, None)
            try:
                deleted = await self.store.forget(user)
                if self.checkins is not None:
                    deleted += await self.checkins.forget_user(user)
            except StoreError:
                return Reply(ReplyKind.NOTICE, text("store_trouble"))
            log.info("user forgotten user=%s keys=%d", user.log_id, deleted)
            return Reply(ReplyKind.NOTICE, text("forgotten" if deleted else "nothing_to_forget"))

    async def export(self, user: UserRef) -> dict[str, Any]:
        """Everything stored about the user, as JSON-ready data. Raises StoreError if Redis is down."""
        async with self._user_turn(user):
            data = await self.store.export(user)
            data["exported_at"] = self.clock.now()
            return data
