"""A fresh machine talks to the bundled SmolLM2 with the adapter this project trained for it, unless the
settings name another model, another adapter, or turn the shipped adapter off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.engines import bundled
from core.engines.factory import build_engine
from core.settings import Settings


@pytest.fixture()
def converted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Skip the one-time GGUF conversion: the factory only needs the converted folder's path."""
    folder = tmp_path / "models" / bundled.BUNDLED_NAME
    monkeypatch.setattr(bundled, "bundled_model_dir", lambda data_dir: folder)
    return folder


def engine_for(tmp_path: Path, **values: Any) -> Any:
    return build_engine(Settings(data_dir=tmp_path, **values))  # type: ignore[call-arg]


def test_the_shipped_adapter_is_committed_and_servable() -> None:
    import json

    from training.export import check_servable

    folder = bundled.haven_adapter_dir()
    assert folder is not None, "training/adapters/haven-smollm2-135m is missing"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] and check_servable(config) == []
    assert (folder / "adapter_model.safetensors").stat().st_size > 1_000_000


def test_the_bundled_model_answers_with_the_haven_adapter_by_default(converted: Path, tmp_path: Path) -> None:
    engine = engine_for(tmp_path)
    assert engine.model_ref == str(converted)
    assert engine.adapter == bundled.HAVEN_ADAPTER_DIR


def test_the_shipped_adapter_can_be_turned_off(converted: Path, tmp_path: Path) -> None:
    assert engine_for(tmp_path, bundled_adapter=False).adapter is None


def test_an_adapter_setting_wins_over_the_shipped_one(converted: Path, tmp_path: Path) -> None:
    own = tmp_path / "own-adapter"
    own.mkdir()
    (own / "adapter_config.json").write_text("{}")
    assert engine_for(tmp_path, adapter=own).adapter == own


def test_another_model_gets_no_adapter_meant_for_smollm2(tmp_path: Path) -> None:
    folder = tmp_path / "gemma"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert engine_for(tmp_path, model=str(folder)).adapter is None
