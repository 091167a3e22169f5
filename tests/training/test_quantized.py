"""The real 4-bit path: nf4 with double quantization through bitsandbytes (on CPU here; CUDA when present)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.test_pipeline import tiny_config
from training import train


@pytest.fixture
def prepared(prepared_run: tuple[object, Path]) -> Path:
    return prepared_run[1]


def test_nf4_lora_trains_on_cpu(prepared: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb

    cfg = tiny_config(tiny_model_dir, prepared, tmp_path / "run", max_steps=2)
    cfg["model"]["quantization"] = "nf4"
    model = train.load_base_model(cfg["model"], str(tiny_model_dir))
    linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4 and linear4[0].weight.quant_state.quant_type == "nf4"
    assert linear4[0].weight.quant_state.nested  # double quantization
    metrics = train.main(cfg)
    assert metrics["global_step"] == 2
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_qlora_on_cuda(prepared: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_model_dir, prepared, tmp_path / "run", max_steps=2)
    cfg["model"].update(quantization="nf4", dtype="bfloat16")
    args = train.build_sft_config(cfg, tmp_path / "run", has_eval=True)
    assert args.optim == "paged_adamw_8bit" and args.bf16 and args.gradient_checkpointing
    metrics = train.main(cfg)
    assert metrics["global_step"] == 2
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
