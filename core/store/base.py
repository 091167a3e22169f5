"""The seam between the dialog manager and wherever context lives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from core.types import Profile, Turn, UserRef

if TYPE_CHECKING:
    from core.store.redis_store import AlongRead


class ContextStore(Protocol):
    async def load_history(self, user: UserRef, place: str | None = None) -> list[Turn]:
        """The user's remembered turns: the private conversation, or the one in a public `place`."""
        ...

    async def load_context(self, user: UserRef, place: str | None = None, *, with_history: bool = True,
                           along: Sequence[AlongRead[Any]] = ()) -> tuple[Profile, list[Turn]]:
        """`load_profile` and, with consent (and `with_history`), `load_history`, read together in one go, with
        other features' commands (`along`) in the same round trip; each of those is settled even if the read fails."""
        ...

    async def append_exchange(self, user: UserRef, user_turn: Turn, reply_turn: Turn, place: str | None = None
                              ) -> None:
        """Store one user message and its reply together, or neither."""
        ...

    async def load_profile(self, user: UserRef) -> Profile: ...

    async def update_profile(self, user: UserRef, **fields: Any) -> None: ...

    async def delete_history(self, user: UserRef) -> None:
        """Delete every conversation of the user, private and public, keeping the profile."""
        ...

    async def forget(self, user: UserRef) -> int:
        """Delete every key of this user; returns how many keys went."""
        ...

    async def export(self, user: UserRef) -> dict[str, Any]: ...

    async def ping(self) -> bool: ...
