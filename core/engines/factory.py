"""Choose and build the engine the settings ask for.

    HAVEN_ENGINE=local     transformers in this process (the bundled model by default), batching concurrent chats
    HAVEN_ENGINE=openai    an OpenAI-compatible server: vLLM on a GPU, llama.cpp's llama-server on a CPU, Ollama
    HAVEN_ENGINE=llamacpp  llama-cpp-python in this process on a GGUF file (optional extra)

Engine settings are read with defaults, so this works with a Settings model that does not define them yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.engines.base import Engine
from core.errors import ConfigError
from core.settings import Settings


def _setting(settings: Settings, name: str, default: Any) -> Any:
    value = getattr(settings, name, None)
    return default if value is None else value


def build_engine(settings: Settings) -> Engine:
    kind = str(_setting(settings, "engine", "local")).lower()
    if kind == "openai":
        return _openai(settings)
    if kind == "llamacpp":
        return _llamacpp(settings)
    if kind != "local":
        raise ConfigError(f"HAVEN_ENGINE: {kind!r} is not one of local, openai, llamacpp")
    from core.engines.bundled import bundled_model_dir, haven_adapter_dir
    from core.engines.local import TransformersEngine

    model = settings.model or bundled_model_dir(settings.data_dir)
    adapter = settings.adapter
    if adapter is None and settings.model is None and _setting(settings, "bundled_adapter", True):
        adapter = haven_adapter_dir()  # the bundled model answers with the adapter Haven trained for it
    return TransformersEngine(
        model,
        adapter=adapter,
        load_in_4bit=settings.load_in_4bit,
        device=settings.device,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_batch_size=int(_setting(settings, "batch_size", 8)),
    )


def _openai(settings: Settings) -> Engine:
    from core.engines.openai_compat import OpenAICompatEngine

    base_url = _setting(settings, "openai_base_url", "")
    if not base_url:
        raise ConfigError("HAVEN_OPENAI_BASE_URL: required with HAVEN_ENGINE=openai "
                          "(e.g. http://vllm:8000/v1 or http://localhost:8080/v1)")
    if not str(base_url).startswith(("http://", "https://")):
        raise ConfigError("HAVEN_OPENAI_BASE_URL: must start with http:// or https://")
    return OpenAICompatEngine(
        str(base_url),
        str(_setting(settings, "openai_model", "haven")),
        api_key=_setting(settings, "openai_api_key", None),
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        connect_timeout_seconds=float(_setting(settings, "engine_connect_timeout_seconds", 5.0)),
        first_token_timeout_seconds=float(_setting(settings, "engine_first_token_timeout_seconds", 30.0)),
        total_timeout_seconds=float(settings.reply_timeout_seconds),
        max_retries=int(_setting(settings, "engine_max_retries", 2)),
        system_role=bool(_setting(settings, "openai_system_role", True)),
    )


def _llamacpp(settings: Settings) -> Engine:
    from core.engines.bundled import bundled_gguf_path
    from core.engines.llamacpp import LlamaCppEngine

    gguf = _setting(settings, "gguf_path", None) or bundled_gguf_path()
    return LlamaCppEngine(
        Path(gguf),
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        n_threads=_setting(settings, "llamacpp_threads", None),
        n_ctx=int(_setting(settings, "llamacpp_context_tokens", 4096)),
    )
