"""A language model run in this process with transformers (optionally 4-bit, optionally with a LoRA adapter),
answering several conversations at once.

One worker thread owns the model and runs a decode loop over a batch of conversations (continuous batching):
a request that arrives while a batch runs is prefilled on its own and joins the batch at the next step, left
padded to the batch's length. Each row stops on its own (an end-of-turn token, its own token limit, or its
caller no longer listening) and leaves the batch; each caller gets its own text through its own queue, so the
event loop keeps serving other users while the model works.

Joining mid-batch needs a key/value cache that can be padded and trimmed (the plain and sliding-window dynamic
caches that Llama-, SmolLM- and Gemma-2-style models use). With any other cache, new requests wait for the
running batch to finish and start the next one together.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import metrics
from core.errors import EngineError, EngineUnavailable
from core.prompts import render_chat, stop_token_ids
from core.types import ChatMessage

log = logging.getLogger(__name__)

# Small models loop on themselves without a light repetition penalty; it is harmless for larger ones.
_REPETITION_PENALTY = 1.1
# The worker thread ends after this long without work and starts again with the next request.
_IDLE_EXIT_SECONDS = 30.0
_END = object()


class TransformersEngine:
    def __init__(
        self,
        model: str | Path,
        *,
        adapter: Path | None = None,
        load_in_4bit: bool = False,
        device: str = "auto",
        max_new_tokens: int = 200,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
        max_batch_size: int = 8,
        batch_window_seconds: float = 0.0,
    ) -> None:
        self.model_ref = str(model)
        self.adapter = adapter
        self.load_in_4bit = load_in_4bit
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.max_batch_size = max(1, max_batch_size)
        # How long an idle engine waits after a first request for others to prefill with it. Later arrivals
        # join the running batch anyway, so this only trades a little first-token time for one shared prefill.
        self.batch_window_seconds = batch_window_seconds
        self.name = f"transformers:{Path(self.model_ref).name}" + (f"+{Path(adapter).name}" if adapter else "")
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: list[int] = []
        self._load_lock = threading.Lock()
        self._scheduler: _BatchScheduler | None = None

    @property
    def tokenizer(self) -> Any:
        self.warm_up()
        return self._tokenizer

    def warm_up(self) -> None:
        with self._load_lock:
            if self._model is None:
                self._load()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs: dict[str, Any] = {}
        if self.load_in_4bit:
            from transformers import BitsAndBytesConfig

            compute = torch.bfloat16 if device == "cuda" else torch.float32
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute)
            kwargs["device_map"] = {"": 0} if device == "cuda" else {"": "cpu"}
        else:
            kwargs["dtype"] = torch.bfloat16 if device == "cuda" else torch.float32
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_ref)
            model: Any = AutoModelForCausalLM.from_pretrained(self.model_ref, **kwargs)
            if not self.load_in_4bit:
                model = model.to(device)
            if self.adapter is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(self.adapter))
        except Exception as exc:  # OSError for a missing hub id offline, ValueError for a bad folder, ...
            raise EngineUnavailable(f"could not load model {self.model_ref}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer, self._model = tokenizer, model
        self._stop_ids = stop_token_ids(tokenizer)
        self._scheduler = _BatchScheduler(self)
        log.info("model loaded engine=%s device=%s max_batch_size=%d", self.name, device, self.max_batch_size)

    def render(self, messages: Sequence[ChatMessage]) -> str:
        return render_chat(self.tokenizer, messages)

    def batch_stats(self) -> dict[str, int]:
        """Counts since loading: batches started, requests that joined a running batch, the largest batch, and
        decode steps (each step produces one token for every row in the batch)."""
        return dict(self._scheduler.stats) if self._scheduler else {}

    async def stream(self, messages: Sequence[ChatMessage], *, max_new_tokens: int | None = None
                     ) -> AsyncIterator[str]:
        if self._scheduler is None:
            await asyncio.to_thread(self.warm_up)
        assert self._scheduler is not None
        prompt = self.render(messages)
        input_ids = self._tokenizer(prompt, add_special_tokens=False)["input_ids"]
        request = _Request(list(input_ids), max_new_tokens or self.max_new_tokens, asyncio.get_running_loop())
        self._scheduler.submit(request)
        try:
            while True:
                item = await request.pieces.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise EngineError(f"generation failed: {type(item).__name__}") from item
                yield item
        finally:
            request.cancelled = True  # the worker drops the row at its next step


@dataclass(eq=False)
class _Request:
    """One caller's generation: its prompt, its limit, and the queue its text goes to."""

    prompt_ids: list[int]
    max_new_tokens: int
    loop: asyncio.AbstractEventLoop
    pieces: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    tokens: list[int] = field(default_factory=list)
    emitted: str = ""

    def deliver(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.pieces.put_nowait, item)
        except RuntimeError:  # the caller's event loop is gone: nobody is listening any more
            self.cancelled = True


class _BatchScheduler:
    """Owns the decode loop on one worker thread; requests reach it through a thread-safe queue."""

    def __init__(self, engine: TransformersEngine) -> None:
        import torch

        self.engine = engine
        self.model = engine._model
        self.tokenizer = engine._tokenizer
        self.stop_ids = frozenset(engine._stop_ids)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.device = next(self.model.parameters()).device
        self.generator = torch.Generator(device=self.device)
        if engine.seed is not None:
            self.generator.manual_seed(engine.seed)
        else:
            self.generator.seed()
        self.pending: queue.Queue[_Request] = queue.Queue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.stats = {"batches": 0, "joined_mid_batch": 0, "peak_batch_size": 0, "steps": 0}

    def submit(self, request: _Request) -> None:
        with self.lock:
            self.pending.put(request)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="haven-generate", daemon=True)
                self.thread.start()

    def _take(self, limit: int) -> list[_Request]:
        taken: list[_Request] = []
        while len(taken) < limit:
            try:
                request = self.pending.get_nowait()
            except queue.Empty:
                break
            if not request.cancelled:
                taken.append(request)
        return taken

    def _wait_for_more(self, limit: int) -> list[_Request]:
        import time

        taken: list[_Request] = []
        deadline = time.monotonic() + self.engine.batch_window_seconds
        while len(taken) < limit and (left := deadline - time.monotonic()) > 0:
            try:
                request = self.pending.get(timeout=left)
            except queue.Empty:
                break
            if not request.cancelled:
                taken.append(request)
        return taken

    def _run(self) -> None:
        import torch

        batch: _Batch | None = None
        waiting: list[_Batch] = []  # prefilled, but their cache could not be merged into the running batch
        with torch.inference_mode():
            while True:
                arrivals: list[_Request] = []
                if batch is None and waiting:
                    batch = waiting.pop(0)
                elif batch is None:
                    try:
                        first = self.pending.get(timeout=_IDLE_EXIT_SECONDS)
                    except queue.Empty:
                        with self.lock:
                            if self.pending.empty():
                                self.thread = None
                                return
                        continue
                    arrivals = ([] if first.cancelled else [first]) + self._take(self.engine.max_batch_size - 1)
                    arrivals += self._wait_for_more(self.engine.max_batch_size - len(arrivals))
                elif batch.resizable():
                    arrivals = self._take(self.engine.max_batch_size - batch.size)
                try:
                    if arrivals:
                        fresh = self._prefill(arrivals)
                        if batch is None:
                            batch = fresh
                            self.stats["batches"] += 1
                        elif fresh.resizable():
                            batch = batch.merge(fresh)
                            self.stats["joined_mid_batch"] += fresh.size
                        else:
                            waiting.append(fresh)
                        self.stats["peak_batch_size"] = max(self.stats["peak_batch_size"], batch.size)
                        metrics.observe("haven_engine_batch_size", "Conversations decoded together.",
                                        float(batch.size), buckets=(1, 2, 4, 8, 16, 32, 64), engine="local")
                    if batch is not None:
                        batch = self._step(batch)
                except BaseException as exc:  # handed to every caller in the batch; the loop goes on
                    log.error("generation failed engine=%s error=%s", self.engine.name, type(exc).__name__)
                    for request in (batch.requests if batch else []) + arrivals:
                        request.deliver(exc)
                    for request in [r for parked in waiting for r in parked.requests]:
                        request.deliver(exc)
                    batch, waiting = None, []

    # ---- the model ----------------------------------------------------------------------------------------

    def _prefill(self, requests: list[_Request]) -> _Batch:
        import torch

        length = max(len(r.prompt_ids) for r in requests)
        ids = torch.full((len(requests), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(requests), length), dtype=torch.long)
        for row, request in enumerate(requests):
            ids[row, length - len(request.prompt_ids):] = torch.tensor(request.prompt_ids)
            mask[row, length - len(request.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1)
        logits = out.logits[:, -1, :].float()
        seen = torch.zeros((len(requests), logits.shape[-1]), dtype=torch.bool, device=self.device)
        for row, request in enumerate(requests):
            seen[row, torch.tensor(request.prompt_ids, device=self.device)] = True
        return _Batch(list(requests), out.past_key_values, mask, mask.sum(-1), logits, seen)

    def _choose(self, batch: _Batch) -> Any:
        import torch

        scores = batch.logits
        # Repetition penalty over each row's own prompt and reply (never over another row's or padding).
        penalized = torch.where(scores < 0, scores * _REPETITION_PENALTY, scores / _REPETITION_PENALTY)
        scores = torch.where(batch.seen, penalized, scores)
        if self.engine.temperature <= 0:
            return scores.argmax(-1)
        scores = scores / self.engine.temperature
        if self.engine.top_p < 1.0:
            ordered, order = scores.sort(-1, descending=True)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative - ordered.softmax(-1) > self.engine.top_p  # keep the token that crosses top_p
            ordered = ordered.masked_fill(drop, float("-inf"))
            scores = torch.full_like(scores, float("-inf")).scatter(-1, order, ordered)
        return torch.multinomial(scores.softmax(-1), 1, generator=self.generator).squeeze(-1)

    def _step(self, batch: _Batch) -> _Batch | None:
        """Choose each row's next token, hand out the text, drop finished rows, run the model one step."""
        import torch

        chosen = self._choose(batch)
        self.stats["steps"] += 1
        batch.seen[torch.arange(batch.size, device=self.device), chosen] = True
        keep: list[int] = []
        for row, (request, token) in enumerate(zip(batch.requests, chosen.tolist(), strict=True)):
            if request.cancelled:
                continue
            if token in self.stop_ids:
                self._finish(request)
                continue
            request.tokens.append(token)
            self._emit(request)
            if len(request.tokens) >= request.max_new_tokens:
                self._finish(request)
                continue
            keep.append(row)
        if not keep:
            return None
        if len(keep) < batch.size:
            batch.select(keep)
            chosen = chosen[keep]
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.size, 1))], dim=-1)
        out = self.model(input_ids=chosen[:, None], attention_mask=batch.mask, position_ids=batch.positions[:, None],
                         past_key_values=batch.cache, use_cache=True)
        batch.cache = out.past_key_values
        batch.logits = out.logits[:, -1, :].float()
        batch.positions = batch.positions + 1
        return batch

    def _emit(self, request: _Request) -> None:
        text = self.tokenizer.decode(request.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return  # half of a multi-byte character: wait for the rest
        if text.startswith(request.emitted) and len(text) > len(request.emitted):
            request.deliver(text[len(request.emitted):])
            request.emitted = text

    def _finish(self, request: _Request) -> None:
        text = self.tokenizer.decode(request.tokens, skip_special_tokens=True)
        if text.startswith(request.emitted) and len(text) > len(request.emitted):
            request.deliver(text[len(request.emitted):])
        request.deliver(_END)


@dataclass(eq=False)
class _Batch:
    """The rows being decoded together: left-padded attention mask, the shared key/value cache, each row's next
    position and next-token scores, and which tokens each row has seen (for the repetition penalty)."""

    requests: list[_Request]
    cache: Any
    mask: Any
    positions: Any
    logits: Any
    seen: Any

    @property
    def size(self) -> int:
        return len(self.requests)

    def resizable(self) -> bool:
        """Whether rows can join: every cache layer is a plain or a not-yet-full sliding-window dynamic layer."""
        from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

        layers = getattr(self.cache, "layers", None)
        if not layers:
            return False
        for layer in layers:
            if type(layer) is DynamicSlidingWindowLayer:
                keys = getattr(layer, "keys", None)
                if keys is None or layer.cumulative_length != keys.shape[-2]:
                    return False  # the window has started to slide: columns no longer line up with the mask
            elif type(layer) is not DynamicLayer:
                return False
        return True

    def select(self, rows: list[int]) -> None:
        import torch

        index = torch.tensor(rows, device=self.mask.device)
        self.requests = [self.requests[i] for i in rows]
        self.cache.batch_select_indices(index)
        self.mask, self.positions = self.mask[index], self.positions[index]
        self.logits, self.seen = self.logits[index], self.seen[index]
        self._trim()

    def _trim(self) -> None:
        """Drop leading columns that are padding in every row (left behind by rows that finished)."""
        if not self.resizable():
            return
        used = self.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        if start == 0:
            return
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[..., start:, :], layer.values[..., start:, :]
            if hasattr(layer, "cumulative_length"):
                layer.cumulative_length = layer.keys.shape[-2]

    def merge(self, other: _Batch) -> _Batch:
        """Stack `other`'s rows under these, left-padding the shorter side's cache and mask."""
        import torch
        import torch.nn.functional as F

        length = max(self.mask.shape[1], other.mask.shape[1])

        def pad_left(tensor: Any, dim_from_end: int) -> Any:
            missing = length - tensor.shape[-dim_from_end]
            if missing == 0:
                return tensor
            padding = [0, 0] * (dim_from_end - 1) + [missing, 0]
            return F.pad(tensor, padding)

        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([pad_left(mine.keys, 2), pad_left(theirs.keys, 2)], dim=0)
            mine.values = torch.cat([pad_left(mine.values, 2), pad_left(theirs.values, 2)], dim=0)
            if hasattr(mine, "cumulative_length"):
                mine.cumulative_length = mine.keys.shape[-2]
        self.mask = torch.cat([pad_left(self.mask, 1), pad_left(other.mask, 1)], dim=0)
        self.requests = self.requests + other.requests
        self.positions = torch.cat([self.positions, other.positions])
        self.logits = torch.cat([self.logits, other.logits])
        self.seen = torch.cat([self.seen, other.seen])
        return self
