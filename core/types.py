"""The small frozen types that cross between the platform adapters and the core."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, TypedDict


class ChatMessage(TypedDict):
    """One message in the format chat templates take."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class UserRef:
    """Who a message is from: a platform and that platform's id for the user."""

    platform: str
    user_id: str

    @property
    def log_id(self) -> str:
        """A short stable hash for logs, so a log line never carries a platform id."""
        digest = hashlib.sha256(f"{self.platform}:{self.user_id}".encode()).hexdigest()
        return digest[:12]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A text message from a user, as every adapter hands it to the dialog manager."""

    user: UserRef
    text: str
    chat_id: str = ""
    locale: str | None = None
    # Said where others can read it (a group or server channel). Such a conversation gets its own history,
    # kept apart from the private one, so nothing said in private is ever drawn into a public reply.
    public: bool = False

    @property
    def place(self) -> str | None:
        """Which of the user's histories this message belongs to: None for the private conversation."""
        return (self.chat_id or "public") if self.public else None


class ReplyKind(StrEnum):
    WELCOME = "welcome"  # first contact: what Haven is, and the consent question
    CHAT = "chat"  # written by the language model (after the output guard)
    CRISIS = "crisis"  # fixed, reviewed crisis text with helplines; never written by the model
    FALLBACK = "fallback"  # the model failed or timed out; a kind line instead
    NOTICE = "notice"  # confirmations and short information from Haven itself


@dataclass(frozen=True, slots=True)
class Button:
    """A quick-reply choice; `action` comes back to the core through the adapter (e.g. "consent:yes")."""

    label: str
    action: str


@dataclass(frozen=True, slots=True)
class Reply:
    kind: ReplyKind
    text: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message of a conversation."""

    role: Literal["user", "assistant"]
    content: str
    at: float  # unix seconds
    kind: str = "chat"


@dataclass(frozen=True, slots=True)
class Profile:
    """What Haven keeps about a user besides the conversation itself."""

    consent: bool | None = None  # None: not asked yet or not answered
    country: str | None = None
    timezone: str | None = None
    locale: str | None = None
    last_crisis_at: float | None = None
    preferences: dict[str, Any] = field(default_factory=dict)
