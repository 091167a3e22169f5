"""Fakes for the edges only: a scripted language model and a clock that tests move by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from core.errors import EngineError
from core.types import ChatMessage, Reply


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class ScriptedEngine:
    """Answers with `reply(messages)`, word by word; can be told to fail or to hang."""

    name = "scripted"

    def __init__(self, reply: Callable[[Sequence[ChatMessage]], str] | None = None, *,
                 delay_seconds: float = 0.0, fail: bool = False, hang: bool = False) -> None:
        self.reply = reply or (lambda messages: f"I hear you about: {messages[-1]['content']}")
        self.delay_seconds = delay_seconds
        self.fail = fail
        self.hang = hang
        self.prompts: list[list[ChatMessage]] = []

    def warm_up(self) -> None:
        return None

    async def stream(self, messages: Sequence[ChatMessage], *, max_new_tokens: int | None = None
                     ) -> AsyncIterator[str]:
        self.prompts.append(list(messages))
        if self.fail:
            raise EngineError("scripted failure")
        if self.hang:
            await asyncio.Event().wait()
        for word in self.reply(messages).split(" "):
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            yield word + " "


class RecordingSink:
    """What an adapter would have shown: complete messages and the streamed partial texts."""

    def __init__(self) -> None:
        self.sent: list[Reply] = []
        self.partials: list[str] = []

    async def send(self, reply: Reply) -> None:
        self.sent.append(reply)

    async def partial(self, text_so_far: str) -> None:
        self.partials.append(text_so_far)
