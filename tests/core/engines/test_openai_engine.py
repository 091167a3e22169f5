"""The OpenAI-compatible engine against a small server that speaks the same streaming protocol as vLLM and
llama-server (`data: {chunk}` lines, `data: [DONE]`), run by the test on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from core import metrics
from core.engines.openai_compat import OpenAICompatEngine
from core.errors import EngineError, EngineTimeout, EngineUnavailable
from core.prompts import build_messages

SECRET = "sk-test-do-not-log"
USER_TEXT = "my private worry about tomorrow"
MESSAGES = build_messages("you are haven", [], USER_TEXT)

Behaviour = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None) -> bytes:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "haven",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    return response


async def stream_words(request: web.Request, words: list[str], *, delay: float = 0.0) -> web.StreamResponse:
    response = await open_stream(request)
    await response.write(chunk("", role="assistant"))
    for word in words:
        if delay:
            await asyncio.sleep(delay)
        await response.write(chunk(word))
    await response.write(chunk(finish="stop"))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


class FakeServer:
    """Records each request body and headers; `behaviour(request, attempt)` answers the n-th request."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        return await self.behaviour(request, len(self.bodies))

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "haven", "object": "model"}]})


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Behaviour], Awaitable[tuple[FakeServer, str]]]]:
    runners: list[web.AppRunner] = []

    async def start(behaviour: Behaviour) -> tuple[FakeServer, str]:
        server = FakeServer(behaviour)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", server.chat)
        app.router.add_get("/v1/models", server.models)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return server, f"http://127.0.0.1:{port}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


def engine_for(base_url: str, **kwargs: Any) -> OpenAICompatEngine:
    options: dict[str, Any] = {"api_key": SECRET, "max_retries": 2, "backoff_seconds": 0.01,
                               "first_token_timeout_seconds": 5.0, "total_timeout_seconds": 10.0}
    return OpenAICompatEngine(base_url, "haven", **(options | kwargs))


async def test_streams_the_reply_piece_by_piece(serve: Any) -> None:
    server, url = await serve(lambda request, n: stream_words(request, ["I hear", " you.", " Tell me more."]))
    engine = engine_for(url, max_new_tokens=64, system_role=False)
    pieces = [piece async for piece in engine.stream(MESSAGES)]
    assert pieces == ["I hear", " you.", " Tell me more."]
    body = server.bodies[0]
    assert body["model"] == "haven" and body["stream"] is True and body["max_tokens"] == 64
    # system_role=False (Gemma): the guidance travels inside the first user turn
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"].startswith("you are haven")
    assert server.headers[0]["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(engine)


async def test_a_server_that_closes_after_the_finish_chunk_without_done_is_a_whole_reply(serve: Any) -> None:
    async def no_done(request: web.Request, n: int) -> web.StreamResponse:
        response = await open_stream(request)
        await response.write(chunk("Okay."))
        await response.write(chunk(finish="stop"))
        await response.write_eof()
        return response

    _, url = await serve(no_done)
    assert [p async for p in engine_for(url).stream(MESSAGES)] == ["Okay."]


async def test_a_stream_cut_mid_reply_is_an_error_and_is_not_retried(serve: Any) -> None:
    async def cut(request: web.Request, n: int) -> web.StreamResponse:
        response = await open_stream(request)
        await response.write(chunk("It sounds"))
        await response.write(chunk(" hard"))
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()  # no terminating chunk, no [DONE]
        return response

    server, url = await serve(cut)
    received: list[str] = []
    with pytest.raises(EngineError) as caught:
        async for piece in engine_for(url).stream(MESSAGES):
            received.append(piece)
    assert not isinstance(caught.value, EngineTimeout | EngineUnavailable)
    assert received == ["It sounds", " hard"]
    assert len(server.bodies) == 1, "text already reached the user: starting over would repeat it"


async def test_server_errors_before_any_text_are_retried_then_succeed(serve: Any, caplog: Any) -> None:
    async def flaky(request: web.Request, n: int) -> web.StreamResponse:
        if n <= 2:
            return web.Response(status=503 if n == 1 else 500, text="busy")
        return await stream_words(request, ["Still here."])

    server, url = await serve(flaky)
    with caplog.at_level(logging.DEBUG):
        reply = "".join([p async for p in engine_for(url).stream(MESSAGES)])
    assert reply == "Still here."
    assert len(server.bodies) == 3
    assert USER_TEXT not in caplog.text and SECRET not in caplog.text and "Still here" not in caplog.text


async def test_retries_are_bounded_and_end_unavailable_with_a_log_line(serve: Any, caplog: Any) -> None:
    server, url = await serve(lambda request, n: asyncio.sleep(0, web.Response(status=500)))
    before = metrics.value("haven_engine_requests_total", engine="openai", outcome="unavailable")
    with caplog.at_level(logging.WARNING), pytest.raises(EngineUnavailable):
        _ = [p async for p in engine_for(url, max_retries=2).stream(MESSAGES)]
    assert len(server.bodies) == 3  # the first try and two retries
    assert metrics.value("haven_engine_requests_total", engine="openai", outcome="unavailable") == before + 1
    assert 'outcome="unavailable"' in metrics.render() and USER_TEXT not in metrics.render()
    assert "engine unavailable" in caplog.text and USER_TEXT not in caplog.text and SECRET not in caplog.text


async def test_a_slow_first_token_is_a_timeout(serve: Any, caplog: Any) -> None:
    async def slow(request: web.Request, n: int) -> web.StreamResponse:
        response = await open_stream(request)
        await response.write(chunk("", role="assistant"))  # the role arrives at once; the text does not
        await asyncio.sleep(1.5)
        await response.write(chunk("late"))
        return response

    server, url = await serve(slow)
    engine = engine_for(url, first_token_timeout_seconds=0.3)
    assert await engine.ping()  # pay the one-off client start-up before the clock runs
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(EngineTimeout):
        _ = [p async for p in engine.stream(MESSAGES)]
    assert time.monotonic() - started < 2.0
    assert "stage=first_token" in caplog.text
    assert len(server.bodies) == 1, "a server that is merely slow is not asked again"


async def test_a_reply_that_runs_past_the_total_time_is_a_timeout(serve: Any) -> None:
    _, url = await serve(lambda request, n: stream_words(request, ["a", "b", "c", "d", "e"], delay=0.2))
    received: list[str] = []
    engine = engine_for(url, total_timeout_seconds=0.5)
    assert await engine.ping()
    with pytest.raises(EngineTimeout):
        async for piece in engine.stream(MESSAGES):
            received.append(piece)
    assert 1 <= len(received) < 5


async def test_a_refused_key_is_not_retried_and_not_shown(serve: Any) -> None:
    server, url = await serve(lambda request, n: asyncio.sleep(0, web.Response(status=401)))
    with pytest.raises(EngineUnavailable) as caught:
        _ = [p async for p in engine_for(url).stream(MESSAGES)]
    assert "API key" in str(caught.value) and SECRET not in str(caught.value)
    assert len(server.bodies) == 1


async def test_nobody_listening_is_unavailable() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = engine_for(f"http://127.0.0.1:{port}/v1", max_retries=1)
    with pytest.raises(EngineUnavailable):
        _ = [p async for p in engine.stream(MESSAGES)]
    assert not await engine.ping()


async def test_a_caller_that_stops_listening_closes_the_request(serve: Any) -> None:
    closed = asyncio.Event()

    async def endless(request: web.Request, n: int) -> web.StreamResponse:
        response = await open_stream(request)
        try:
            for _ in range(200):
                await response.write(chunk("word "))
                await asyncio.sleep(0.02)
        except (ConnectionResetError, asyncio.CancelledError):
            closed.set()
            raise
        return response

    _, url = await serve(endless)
    engine = engine_for(url)
    stream = engine.stream(MESSAGES)
    assert await anext(stream) == "word "
    await stream.aclose()
    await asyncio.wait_for(closed.wait(), 2.0)
    assert await engine.ping()
