"""A GGUF model run in this process by llama.cpp (the optional `llama-cpp-python` package): the fast CPU path.

The model's own chat template (stored in the GGUF) formats the conversation; templates without a system role
(Gemma's) get the guidance folded into the first user turn, as `core.prompts` does for training. One
generation runs at a time on a worker thread (a llama.cpp context is not thread-safe); for several users at
once on a CPU, run `llama-server --parallel N` and use the OpenAI-compatible engine instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from core.errors import EngineError, EngineUnavailable
from core.prompts import fold_system_into_first_user
from core.types import ChatMessage

log = logging.getLogger(__name__)

_REPETITION_PENALTY = 1.1  # the same light penalty as the transformers engine
_END = object()


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity in a container or under taskset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LlamaCppEngine:
    def __init__(self, gguf: Path, *, max_new_tokens: int = 200, temperature: float = 0.7, top_p: float = 0.9,
                 n_threads: int | None = None, n_ctx: int = 4096, seed: int | None = None) -> None:
        self.gguf = Path(gguf)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.seed = seed
        self.name = f"llamacpp:{self.gguf.name}"
        self._llama: Any = None
        self._system_role = True
        self._load_lock = threading.Lock()
        self._generate_lock = asyncio.Lock()

    def warm_up(self) -> None:
        with self._load_lock:
            if self._llama is not None:
                return
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise EngineUnavailable("HAVEN_ENGINE=llamacpp needs llama-cpp-python: pip install "
                                        "'haven[llamacpp]' (or run llama-server and use HAVEN_ENGINE=openai)") from exc
            if not self.gguf.exists():
                raise EngineUnavailable(f"no GGUF model at {self.gguf}")
            # llama-cpp-python decodes on half the cores unless told: one thread on a 2-core box, about half
            # the speed. Unset means every core this process may run on (HAVEN_LLAMACPP_THREADS).
            threads = int(self.n_threads or _usable_cores())
            kwargs: dict[str, Any] = {"model_path": str(self.gguf), "n_ctx": self.n_ctx, "verbose": False,
                                      "n_threads": threads, "n_threads_batch": threads}
            if self.seed is not None:
                kwargs["seed"] = self.seed
            try:
                self._llama = Llama(**kwargs)
            except Exception as exc:  # ValueError for a file llama.cpp cannot read
                raise EngineUnavailable(f"could not load {self.gguf.name}: {type(exc).__name__}") from exc
            log.info("model loaded engine=%s", self.name)

    def _completion(self, messages: list[ChatMessage], max_new_tokens: int) -> Any:
        chat = messages if self._system_role else fold_system_into_first_user(messages)
        try:
            return self._llama.create_chat_completion(
                messages=chat, stream=True, max_tokens=max_new_tokens, temperature=self.temperature,
                top_p=self.top_p, repeat_penalty=_REPETITION_PENALTY)
        except Exception as exc:  # jinja's TemplateError: "System role not supported" (Gemma)
            if self._system_role and "system" in str(exc).lower():
                self._system_role = False
                return self._completion(messages, max_new_tokens)
            raise

    async def stream(self, messages: Sequence[ChatMessage], *, max_new_tokens: int | None = None
                     ) -> AsyncIterator[str]:
        await asyncio.to_thread(self.warm_up)
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        limit = max_new_tokens or self.max_new_tokens

        def generate() -> None:
            try:
                chunks = self._completion(list(messages), limit)
                for chunk in chunks:
                    if stop.is_set():
                        break
                    piece = (chunk["choices"][0].get("delta") or {}).get("content") or ""
                    if piece:
                        loop.call_soon_threadsafe(pieces.put_nowait, piece)
                if hasattr(chunks, "close"):
                    chunks.close()
                loop.call_soon_threadsafe(pieces.put_nowait, _END)
            except BaseException as exc:  # handed to the caller below
                with contextlib.suppress(RuntimeError):  # the caller's loop may be gone
                    loop.call_soon_threadsafe(pieces.put_nowait, exc)

        async with self._generate_lock:
            worker = threading.Thread(target=generate, name="haven-llamacpp", daemon=True)
            worker.start()
            try:
                while True:
                    item = await pieces.get()
                    if item is _END:
                        break
                    if isinstance(item, BaseException):
                        raise EngineError(f"generation failed: {type(item).__name__}") from item
                    yield item
            finally:
                stop.set()
                await asyncio.to_thread(worker.join)
