"""The in-process llama.cpp engine on the bundled GGUF (skipped where llama-cpp-python is not installed), and
the factory's choice of engine from the settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.engines.factory import build_engine
from core.engines.openai_compat import OpenAICompatEngine
from core.errors import ConfigError
from core.prompts import build_messages


def settings(**values: Any) -> Any:
    base = {"model": None, "adapter": None, "load_in_4bit": False, "device": "cpu", "max_new_tokens": 32,
            "temperature": 0.0, "top_p": 0.9, "reply_timeout_seconds": 60.0, "data_dir": Path("/nonexistent")}
    return SimpleNamespace(**(base | values))


def test_the_factory_builds_the_openai_engine_from_settings() -> None:
    engine = build_engine(settings(engine="openai", openai_base_url="http://vllm:8000/v1", openai_model="haven",
                                   openai_api_key="sk-x", openai_system_role=False, engine_max_retries=1))
    assert isinstance(engine, OpenAICompatEngine)
    assert engine.model == "haven" and engine.max_retries == 1 and not engine.system_role
    assert engine.total_timeout_seconds == 60.0 and "sk-x" not in repr(engine)


def test_the_factory_names_a_missing_or_wrong_setting() -> None:
    with pytest.raises(ConfigError, match="HAVEN_OPENAI_BASE_URL"):
        build_engine(settings(engine="openai"))
    with pytest.raises(ConfigError, match="HAVEN_ENGINE"):
        build_engine(settings(engine="tgi"))


async def test_llamacpp_streams_the_bundled_gguf() -> None:
    pytest.importorskip("llama_cpp")
    from core.engines.bundled import bundled_gguf_path
    from core.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(bundled_gguf_path(), max_new_tokens=12, temperature=0.0, n_threads=2, n_ctx=1024)
    pieces = [p async for p in engine.stream(build_messages("You are a kind listener.", [], "I feel tired."))]
    assert pieces and "".join(pieces).strip()
    stream = engine.stream(build_messages("You are a kind listener.", [], "Hello"))
    await anext(stream)
    await stream.aclose()  # the worker stops and the next caller gets the model
    assert [p async for p in engine.stream(build_messages("s", [], "Thanks"), max_new_tokens=3)]


def test_llamacpp_uses_every_usable_core_unless_told() -> None:
    """llama-cpp-python's own default is half the cores: one thread on a 2-core machine, about half the speed."""
    pytest.importorskip("llama_cpp")
    import os

    from core.engines.bundled import bundled_gguf_path
    from core.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(bundled_gguf_path(), n_ctx=256)
    engine.warm_up()
    assert engine._llama.n_threads == engine._llama.n_threads_batch == len(os.sched_getaffinity(0))
    pinned = LlamaCppEngine(bundled_gguf_path(), n_threads=1, n_ctx=256)
    pinned.warm_up()
    assert pinned._llama.n_threads == 1
