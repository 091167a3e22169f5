"""The transformers engine on a tiny Gemma-architecture model built in the test (real loading code, no
downloads): it loads from a folder, folds the system guidance into the first user turn, and streams."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engines.local import TransformersEngine
from core.errors import EngineUnavailable
from core.prompts import build_messages, render_chat, supports_system_role
from tests.core.engines.tiny_gemma import build_tiny_gemma


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"))


def test_gemma_template_gets_the_system_prompt_inside_the_first_user_turn(tiny_gemma: Path) -> None:
    engine = TransformersEngine(tiny_gemma, device="cpu")
    assert not supports_system_role(engine.tokenizer)
    messages = build_messages("you are haven", [], "i feel tired")
    prompt = render_chat(engine.tokenizer, messages)
    assert prompt == "<bos><start_of_turn>user\nyou are haven\n\ni feel tired<end_of_turn>\n<start_of_turn>model\n"
    assert "system" not in prompt


async def test_tiny_gemma_loads_through_the_engine_and_streams(tiny_gemma: Path) -> None:
    engine = TransformersEngine(tiny_gemma, device="cpu", max_new_tokens=8, temperature=0.0)
    pieces = [piece async for piece in engine.stream(build_messages("you are haven", [], "hello"))]
    assert pieces, "the model should produce some text"
    vocab = engine.tokenizer.get_vocab()
    assert vocab["<end_of_turn>"] in engine._stop_ids and vocab["<eos>"] in engine._stop_ids


async def test_stopping_early_ends_the_generation(tiny_gemma: Path) -> None:
    engine = TransformersEngine(tiny_gemma, device="cpu", max_new_tokens=200, temperature=0.0)
    stream = engine.stream(build_messages("you are haven", [], "hello"))
    await anext(stream)
    await stream.aclose()  # the worker thread must stop and release the model for the next caller
    again = [piece async for piece in engine.stream(build_messages("you are haven", [], "thanks"), max_new_tokens=3)]
    assert again


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="could not load model"):
        TransformersEngine(tmp_path / "nothing-here", device="cpu").warm_up()
