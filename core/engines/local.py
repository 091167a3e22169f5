"""A language model run in this process with transformers (optionally 4-bit, optionally with a LoRA adapter).

Generation runs on a worker thread, so the event loop keeps serving other users; pieces of text reach the
caller through a queue as they are decoded. One generation runs at a time on one model; a caller that stops
listening (a timeout, a cancelled task) stops the generation at the next token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from core.errors import EngineError, EngineUnavailable
from core.prompts import render_chat, stop_token_ids
from core.types import ChatMessage

log = logging.getLogger(__name__)

# Small models loop on themselves without a light repetition penalty; it is harmless for larger ones.
_REPETITION_PENALTY = 1.1


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
    ) -> None:
        self.model_ref = str(model)
        self.adapter = adapter
        self.load_in_4bit = load_in_4bit
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.name = f"transformers:{Path(self.model_ref).name}" + (f"+{Path(adapter).name}" if adapter else "")
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: list[int] = []
        self._load_lock = threading.Lock()
        self._generate_lock = asyncio.Lock()

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
        log.info("model loaded engine=%s device=%s", self.name, device)

    def render(self, messages: Sequence[ChatMessage]) -> str:
        return render_chat(self.tokenizer, messages)

    async def stream(self, messages: Sequence[ChatMessage], *, max_new_tokens: int | None = None
                     ) -> AsyncIterator[str]:
        await asyncio.to_thread(self.warm_up)
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        prompt = self.render(messages)
        inputs = self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self._model.device)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        failure: list[BaseException] = []

        class _StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        sampling = self.temperature > 0
        generate_kwargs: dict[str, Any] = {
            **inputs,
            "streamer": streamer,
            "max_new_tokens": max_new_tokens or self.max_new_tokens,
            "do_sample": sampling,
            "repetition_penalty": _REPETITION_PENALTY,
            "eos_token_id": self._stop_ids,
            "pad_token_id": self._tokenizer.pad_token_id,
            "stopping_criteria": StoppingCriteriaList([_StopWhenAsked()]),
        }
        if sampling:
            generate_kwargs |= {"temperature": self.temperature, "top_p": self.top_p}

        def generate() -> None:
            import torch

            try:
                if self.seed is not None:
                    torch.manual_seed(self.seed)
                with torch.inference_mode():
                    self._model.generate(**generate_kwargs)
            except BaseException as exc:  # handed to the caller below
                failure.append(exc)
                streamer.end()

        async with self._generate_lock:
            worker = threading.Thread(target=generate, name="haven-generate", daemon=True)
            worker.start()
            pieces = iter(streamer)
            try:
                while True:
                    piece = await asyncio.to_thread(next, pieces, None)
                    if piece is None:
                        break
                    if piece:
                        yield piece
            finally:
                stop.set()
                await asyncio.to_thread(worker.join)
        if failure:
            raise EngineError(f"generation failed: {type(failure[0]).__name__}") from failure[0]
