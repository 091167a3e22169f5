"""`haven export` from an already exported adapter folder (no training run needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_export_takes_an_exported_adapter_folder_and_keeps_its_card(tmp_path: Path) -> None:
    """`haven export --adapter <folder>` (the shipped adapter) needs no training run: the folder's own model card and
    figures travel with it, and exporting onto the folder itself is refused rather than deleting it."""
    from training import export

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (shipped / "adapter_model.safetensors").write_bytes(b"weights")
    (shipped / "README.md").write_text("# the shipped card\n")
    (shipped / "loss_curve.png").write_bytes(b"png")
    cfg = {"run_name": "r", "output_dir": str(tmp_path / "no-run"), "model": {"path": "bundled",
                                                                            "base_model_id": "org/base"}}
    dest = export.main(cfg, tmp_path / "out", adapter=shipped)
    assert (dest / "README.md").read_text() == "# the shipped card\n"
    assert (dest / "loss_curve.png").exists() and (dest / "adapter_model.safetensors").read_bytes() == b"weights"
    assert json.loads((dest / "adapter_config.json").read_text())["base_model_name_or_path"] == "org/base"
    with pytest.raises(SystemExit, match="adapter folder itself"):
        export.main(cfg, shipped, adapter=shipped)
    assert (shipped / "adapter_model.safetensors").exists()
