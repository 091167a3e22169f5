"""Batched generation in the transformers engine, on the tiny Gemma model: concurrent conversations decoded
together each get exactly the text they would get alone (greedy, compared with transformers' own one-at-a-time
`generate`), stop on their own, and a caller that stops listening leaves without disturbing the others."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.engines.local import TransformersEngine
from core.prompts import build_messages
from core.types import ChatMessage
from tests.core.engines.tiny_gemma import build_tiny_gemma

PROMPTS = ["i feel tired and sad today", "hello", "how to sleep", "i feel calm", "talk to someone",
           "what helps when it sounds hard and i listen slowly"]


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Gemma with its output layer untied from the embeddings: tied, a random model only echoes its
    last input token, and every conversation would get the same reply (which would prove nothing)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma-batching"))
    config = AutoConfig.from_pretrained(folder)
    config.tie_word_embeddings = False
    # Fast-turning rotary positions and sharp attention: a row given the wrong positions (left padding
    # mishandled) then writes different words.
    config.rope_parameters = {**(getattr(config, "rope_parameters", None) or {}), "rope_type": "default",
                              "rope_theta": 10.0}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.5)
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4.0)
            layer.self_attn.k_proj.weight.mul_(4.0)
    model.save_pretrained(folder)
    return folder


def conversation(text: str) -> list[ChatMessage]:
    return build_messages("you are haven", [], text)


def one_at_a_time(engine: TransformersEngine, messages: list[ChatMessage], max_new_tokens: int) -> str:
    """transformers' own greedy `generate`, one conversation alone: the reference the batch must reproduce."""
    import torch

    ids = engine.tokenizer(engine.render(messages), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = engine._model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.1,
                                     eos_token_id=engine._stop_ids, pad_token_id=engine.tokenizer.pad_token_id)
    return str(engine.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))


async def collect(engine: TransformersEngine, messages: list[ChatMessage], *, delay: float = 0.0,
                  max_new_tokens: int | None = None) -> str:
    await asyncio.sleep(delay)
    return "".join([piece async for piece in engine.stream(messages, max_new_tokens=max_new_tokens)])


async def test_conversations_prefilled_together_each_get_their_own_greedy_text(tiny_gemma: Path) -> None:
    # A batching window long enough that all four arrive first: one left-padded prefill for prompts of
    # different lengths, then one decode loop.
    engine = TransformersEngine(tiny_gemma, device="cpu", max_new_tokens=24, temperature=0.0, max_batch_size=4,
                                batch_window_seconds=1.0)
    expected = [one_at_a_time(engine, conversation(p), 24) for p in PROMPTS[:4]]
    assert len(set(expected)) >= 3, "the prompts should lead to different replies, or the test proves little"
    replies = await asyncio.gather(*[collect(engine, conversation(p)) for p in PROMPTS[:4]])
    assert replies == expected
    assert engine.batch_stats()["batches"] == 1 and engine.batch_stats()["peak_batch_size"] == 4


async def test_conversations_that_join_a_running_batch_each_get_their_own_greedy_text(tiny_gemma: Path) -> None:
    engine = TransformersEngine(tiny_gemma, device="cpu", max_new_tokens=24, temperature=0.0, max_batch_size=4)
    expected = [one_at_a_time(engine, conversation(p), 120 if i == 0 else 24) for i, p in enumerate(PROMPTS)]
    # The first runs long; the others arrive while it decodes and join it mid-way (the caches left padded to
    # one length); with six requests and room for four, the last ones wait for a free row.
    streams = [collect(engine, conversation(PROMPTS[0]), max_new_tokens=120)]
    streams += [collect(engine, conversation(p), delay=0.02 * i) for i, p in enumerate(PROMPTS[1:], start=1)]
    replies = await asyncio.gather(*streams)
    assert replies == expected
    stats = engine.batch_stats()
    assert stats["joined_mid_batch"] > 0 and stats["peak_batch_size"] > 1, stats


async def test_each_row_stops_on_its_own_limit(tiny_gemma: Path) -> None:
    engine = TransformersEngine(tiny_gemma, device="cpu", max_new_tokens=20, temperature=0.0)
    short, long = conversation(PROMPTS[0]), conversation(PROMPTS[1])
    replies = await asyncio.gather(collect(engine, short, max_new_tokens=3), collect(engine, long, max_new_tokens=20))
    assert replies == [one_at_a_time(engine, short, 3), one_at_a_time(engine, long, 20)]
    assert len(engine.tokenizer(replies[0])["input_ids"]) == 3


def with_stop_word(folder: Path, target: Path, word: str) -> Path:
    """The tiny model with `word` as its end-of-sequence token, so greedy decoding stops on it."""
    from transformers import AutoTokenizer

    shutil.copytree(folder, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    tokenizer.eos_token = word
    tokenizer.save_pretrained(target)
    return target


async def test_a_row_that_writes_a_stop_token_leaves_while_the_others_go_on(tiny_gemma: Path, tmp_path: Path) -> None:
    plain = TransformersEngine(tiny_gemma, device="cpu", temperature=0.0)
    alone = [plain.tokenizer(one_at_a_time(plain, conversation(p), 12))["input_ids"] for p in PROMPTS[:4]]
    # A word the first reply writes (not first) that some other reply never writes: the first row must stop
    # there, and that other row must go on to its limit.
    stop_id = next(t for t in alone[0][1:] if any(t not in other for other in alone[1:]))
    stop_at = alone[0].index(stop_id)
    stop_word = plain.tokenizer.convert_ids_to_tokens(stop_id)
    engine = TransformersEngine(with_stop_word(tiny_gemma, tmp_path / "stops", stop_word), device="cpu",
                                max_new_tokens=12, temperature=0.0)
    assert engine.tokenizer.convert_tokens_to_ids(stop_word) in engine._stop_ids
    expected = [one_at_a_time(engine, conversation(p), 12) for p in PROMPTS[:4]]
    replies = await asyncio.gather(*[collect(engine, conversation(p)) for p in PROMPTS[:4]])
    assert replies == expected
    lengths = [len(engine.tokenizer(r)["input_ids"]) for r in replies]
    assert lengths[0] == stop_at and max(lengths) > stop_at, lengths  # the first stopped early, another went on


async def test_a_caller_that_stops_listening_drops_out_and_the_others_finish(tiny_gemma: Path) -> None:
    engine = TransformersEngine(tiny_gemma, device="cpu", max_new_tokens=40, temperature=0.0)
    staying = conversation(PROMPTS[2])

    async def leave_early() -> None:
        stream: Any = engine.stream(conversation(PROMPTS[0]))
        await anext(stream)
        await stream.aclose()

    reply, _ = await asyncio.gather(collect(engine, staying), leave_early())
    assert reply == one_at_a_time(engine, staying, 40)


async def test_sampling_streams_within_the_limit(tiny_gemma: Path) -> None:
    engine = TransformersEngine(tiny_gemma, device="cpu", max_new_tokens=6, temperature=0.7, seed=1)
    replies = await asyncio.gather(*[collect(engine, conversation(p)) for p in PROMPTS[:3]])
    assert all(len(engine.tokenizer(r)["input_ids"]) <= 6 for r in replies)
