"""Choose and build the engine the settings ask for."""

from __future__ import annotations

from core.engines.base import Engine
from core.settings import Settings


def build_engine(settings: Settings) -> Engine:
    from core.engines.bundled import bundled_model_dir
    from core.engines.local import TransformersEngine

    model = settings.model or bundled_model_dir(settings.data_dir)
    return TransformersEngine(
        model,
        adapter=settings.adapter,
        load_in_4bit=settings.load_in_4bit,
        device=settings.device,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
    )
