"""A language model behind an OpenAI-compatible HTTP server: vLLM, llama.cpp's `llama-server`, or Ollama.

Streams `/chat/completions` as server-sent events (`data: {json}` lines, `data: [DONE]` at the end; each chunk
carries `choices[0].delta.content`). Before the first piece of text, a refused connection, a 5xx, a 429 or a
stream that breaks is retried a bounded number of times with exponential backoff; once text has reached the
caller nothing is retried (the user would see the reply twice), and a broken stream is an EngineError.

Three clocks: connecting, the first piece of text, and the whole reply. Missing one raises EngineTimeout;
an unreachable or refusing server raises EngineUnavailable. Log lines name the engine, host and error kind,
never the messages, the reply or the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlparse

import httpx
from pydantic import SecretStr

from core import metrics
from core.errors import EngineError, EngineTimeout, EngineUnavailable
from core.prompts import fold_system_into_first_user
from core.types import ChatMessage

log = logging.getLogger(__name__)

# Statuses worth another try: the server is busy, starting, or behind a proxy that hiccuped.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MAX_BACKOFF_SECONDS = 8.0


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    """Built once per process: loading the CA bundle takes 0.4-0.8 s on a busy 2-core machine, and even an
    unverified context (never used on a plain http URL, but httpx builds one per client) takes 0.25 s."""
    if verify:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Retryable(Exception):
    """A failure before any text reached the caller; another attempt may succeed."""

    def __init__(self, kind: str, retry_after: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


class OpenAICompatEngine:
    """Streams replies from `{base_url}/chat/completions`. `model` is the served model or LoRA adapter name
    (vLLM: the name given in `--lora-modules haven=/adapters/haven`)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: SecretStr | str | None = None,
        max_new_tokens: int = 200,
        temperature: float = 0.7,
        top_p: float = 0.9,
        connect_timeout_seconds: float = 5.0,
        first_token_timeout_seconds: float = 30.0,
        total_timeout_seconds: float = 120.0,
        max_retries: int = 2,
        backoff_seconds: float = 0.5,
        system_role: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.connect_timeout_seconds = connect_timeout_seconds
        self.first_token_timeout_seconds = first_token_timeout_seconds
        self.total_timeout_seconds = total_timeout_seconds
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        # Gemma's chat template refuses a system message; vLLM answers 400. Fold it into the first user turn.
        self.system_role = system_role
        self._transport = transport
        parsed = urlparse(self.base_url)
        self.host = parsed.hostname or "?"  # for logs: never the userinfo part of a URL
        self.name = f"openai:{self.host}:{model}"
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def __repr__(self) -> str:
        return f"OpenAICompatEngine(host={self.host!r}, model={self.model!r})"

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self._api_key is not None and self._api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        return headers

    def _timeout(self) -> httpx.Timeout:
        # Reads are bounded by our own first-token and total clocks; httpx's read timeout is only a backstop.
        return httpx.Timeout(connect=self.connect_timeout_seconds, read=self.total_timeout_seconds,
                             write=self.connect_timeout_seconds, pool=self.connect_timeout_seconds)

    def _client(self) -> httpx.AsyncClient:
        """One pooled client per event loop (a connection belongs to the loop that opened it)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            for other in [known for known in self._clients if known.is_closed()]:
                del self._clients[other]
            client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), timeout=self._timeout(),
                                       transport=self._transport, verify=self._verify())
            self._clients[loop] = client
        return client

    def _verify(self) -> ssl.SSLContext:
        # Plain http (a model server on the same private network) never uses the context; https verifies.
        return _tls_context(self.base_url.startswith("https:"))

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def warm_up(self) -> None:
        """Check the server once. Never raises: a model server that is still starting is not a reason for the
        bots to refuse to start; replies fall back kindly until it answers."""
        self._verify()  # build the TLS context now, off the event loop
        try:
            response = httpx.get(f"{self.base_url}/models", headers=self._headers(),
                                 timeout=self.connect_timeout_seconds, verify=self._verify())
            log.info("engine reachable engine=openai host=%s status=%d", self.host, response.status_code)
        except httpx.HTTPError as exc:
            log.warning("engine not reachable yet engine=openai host=%s error=%s", self.host, type(exc).__name__)

    async def ping(self) -> bool:
        """Whether the server answers `/models` now (for a health check)."""
        try:
            response = await self._client().get("/models", timeout=self.connect_timeout_seconds)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # ---- streaming ----------------------------------------------------------------------------------------

    def _payload(self, messages: Sequence[ChatMessage], max_new_tokens: int | None) -> dict[str, Any]:
        chat = list(messages) if self.system_role else fold_system_into_first_user(messages)
        return {
            "model": self.model,
            "messages": chat,
            "stream": True,
            "max_tokens": max_new_tokens or self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }

    async def stream(self, messages: Sequence[ChatMessage], *, max_new_tokens: int | None = None
                     ) -> AsyncIterator[str]:
        started = time.monotonic()
        total_deadline = started + self.total_timeout_seconds
        first_deadline = started + min(self.first_token_timeout_seconds, self.total_timeout_seconds)
        payload = self._payload(messages, max_new_tokens)
        attempt = 0
        sent_text = False
        outcome = "error"
        try:
            while True:
                try:
                    async with contextlib.aclosing(self._attempt(payload, first_deadline, total_deadline)) as pieces:
                        async for piece in pieces:
                            if not sent_text:
                                sent_text = True
                                metrics.observe("haven_engine_first_token_seconds",
                                                "Time to the first piece of text.", time.monotonic() - started,
                                                engine="openai")
                            yield piece
                    outcome = "ok"
                    return
                except _Retryable as failure:
                    if sent_text:  # never start over once the user has seen text
                        log.warning("engine stream broke engine=openai host=%s error=%s", self.host, failure.kind)
                        raise EngineError(f"the model server's stream broke ({failure.kind})") from None
                    attempt += 1
                    if attempt > self.max_retries:
                        outcome = "unavailable"
                        log.warning("engine unavailable engine=openai host=%s attempts=%d error=%s",
                                    self.host, attempt, failure.kind)
                        raise EngineUnavailable(f"the model server did not answer ({failure.kind})") from None
                    delay = min(_MAX_BACKOFF_SECONDS, self.backoff_seconds * 2 ** (attempt - 1))
                    delay = max(delay, failure.retry_after or 0.0) * (0.8 + 0.4 * random.random())
                    if time.monotonic() + delay >= first_deadline:
                        outcome = "timeout"
                        log.warning("engine timeout engine=openai host=%s stage=first_token attempts=%d error=%s",
                                    self.host, attempt, failure.kind)
                        raise EngineTimeout("no answer from the model server in time") from None
                    log.info("engine retry engine=openai host=%s attempt=%d error=%s delay_ms=%d",
                             self.host, attempt, failure.kind, delay * 1000)
                    metrics.inc("haven_engine_retries_total", "Retries before the first token.", engine="openai")
                    await asyncio.sleep(delay)
        except EngineTimeout:
            outcome = "timeout"
            raise
        except GeneratorExit:  # the caller stopped listening (guard stop, timeout, cancelled task)
            outcome = "cancelled"
            raise
        finally:
            metrics.inc("haven_engine_requests_total", "Replies asked of the engine, by outcome.",
                        engine="openai", outcome=outcome)
            metrics.observe("haven_engine_reply_seconds", "Time for the whole reply.", time.monotonic() - started,
                            engine="openai")

    async def _attempt(self, payload: dict[str, Any], first_deadline: float, total_deadline: float
                       ) -> AsyncGenerator[str, None]:
        """One request; raises _Retryable for failures worth another attempt."""
        got_text = False

        def remaining() -> float:
            return (total_deadline if got_text else min(first_deadline, total_deadline)) - time.monotonic()

        def timed_out() -> EngineTimeout:
            stage = "total" if got_text else "first_token"
            log.warning("engine timeout engine=openai host=%s stage=%s", self.host, stage)
            return EngineTimeout(f"the model server was too slow ({stage.replace('_', ' ')})")

        client = self._client()
        request = client.build_request("POST", "/chat/completions", json=payload)
        try:
            async with asyncio.timeout(max(remaining(), 0.0)):
                response = await client.send(request, stream=True)
        except TimeoutError:
            raise timed_out() from None
        except httpx.TimeoutException as exc:  # connect/pool timeouts: the server may be restarting
            raise _Retryable(type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise _Retryable(type(exc).__name__) from None
        try:
            if response.status_code != 200:
                await response.aread()
                self._raise_for_status(response)
            lines = response.aiter_lines()
            while True:
                try:
                    async with asyncio.timeout(max(remaining(), 0.0)):
                        line = await anext(lines, None)
                except TimeoutError:
                    raise timed_out() from None
                except (httpx.TransportError, httpx.StreamError) as exc:
                    raise _Retryable(type(exc).__name__) from None
                if line is None:
                    raise _Retryable("stream ended before [DONE]")
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, "event:" lines
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                piece, finished = self._parse_chunk(data)
                if piece:
                    got_text = True
                    yield piece
                if finished:
                    return  # some servers close right after the finish_reason chunk; that is a whole reply
        finally:
            await response.aclose()

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in _RETRY_STATUSES:
            retry_after = response.headers.get("retry-after", "")
            raise _Retryable(f"http {status}", float(retry_after) if retry_after.isdigit() else None)
        if status in (401, 403):
            log.error("engine refused the API key engine=openai host=%s status=%d", self.host, status)
            raise EngineUnavailable(f"the model server refused the API key (HTTP {status})")
        if status == 404:
            log.error("engine has no such model engine=openai host=%s status=404", self.host)
            raise EngineUnavailable(f"the model server does not serve model {self.model!r} (HTTP 404)")
        log.error("engine rejected the request engine=openai host=%s status=%d", self.host, status)
        raise EngineError(f"the model server rejected the request (HTTP {status})")

    @staticmethod
    def _parse_chunk(data: str) -> tuple[str, bool]:
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise _Retryable("malformed event") from None
        if not isinstance(chunk, dict):
            raise _Retryable("malformed event")
        if "error" in chunk:  # vLLM reports a failure inside the stream this way
            raise EngineError("the model server reported an error mid-stream")
        choices = chunk.get("choices") or []
        if not choices:
            return "", False  # e.g. the usage chunk at the end
        choice = choices[0]
        delta = choice.get("delta") or {}
        piece = delta.get("content") or ""
        return str(piece), choice.get("finish_reason") is not None
