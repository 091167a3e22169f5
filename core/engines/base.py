"""The seam between the dialog manager and a language model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from core.types import ChatMessage


class Engine(Protocol):
    name: str

    def warm_up(self) -> None:
        """Load the model now (blocking); call it off the event loop."""
        ...

    def stream(self, messages: Sequence[ChatMessage], *, max_new_tokens: int | None = None) -> AsyncIterator[str]:
        """Yield the reply in pieces as the model writes it. Raises EngineError subclasses."""
        ...


async def collect(engine: Engine, messages: Sequence[ChatMessage], **kwargs: int) -> str:
    """The whole reply as one string."""
    return "".join([piece async for piece in engine.stream(messages, **kwargs)])
