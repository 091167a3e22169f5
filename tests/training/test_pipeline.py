"""The whole pipeline on a tiny model built in the test: prepare → train a few steps (and resume) → eval →
export → the core's TransformersEngine loads the exported adapter and answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from training import evaluate, export, prepare, train


def tiny_config(tiny_model_dir: Path, prepared: Path, run_dir: Path, **training: Any) -> dict[str, Any]:
    return train.merge_config(train.DEFAULTS, {
        "run_name": "tiny", "output_dir": str(run_dir),
        "model": {"path": str(tiny_model_dir), "base_model_id": "tiny-llama", "dtype": "float32"},
        "data": {"dir": str(prepared), "max_length": 512},
        "training": {"max_steps": 4, "per_device_batch_size": 4, "learning_rate": 3e-3, "logging_steps": 1,
                     "eval_steps": 2, "save_steps": 2, **training},
    })


async def collect(stream: Any) -> str:
    return "".join([piece async for piece in stream])


def test_prepare_train_eval_export_serve(dataset_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    prepared, run_dir = tmp_path / "prepared", tmp_path / "run"
    prepare.main({"data_dir": str(dataset_dir), "out_dir": str(prepared), "model": str(tiny_model_dir),
                  "validation_fraction": 0.2, "test_fraction": 0.2})

    cfg = tiny_config(tiny_model_dir, prepared, run_dir)
    metrics = train.main(cfg)
    assert metrics["global_step"] == 4
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert (run_dir / "checkpoints" / "checkpoint-4").is_dir()
    assert (run_dir / "loss_curve.png").stat().st_size > 0
    curves = json.loads((run_dir / "loss_curve.json").read_text())
    assert len(curves["train_loss"]) >= 4 and curves["eval_loss"]
    assert train.load_config(run_dir / "config.resolved.yaml") == cfg

    # resume: a longer run continues from checkpoint-4 instead of starting over
    cfg = tiny_config(tiny_model_dir, prepared, run_dir, max_steps=6)
    assert train.main(cfg)["global_step"] == 6

    result = evaluate.main(cfg, {"sample_size": 3, "max_new_tokens": 8, "batch_size": 4})
    base, tuned = result["base"], result["tuned"]
    assert tuned["loss"] < base["loss"]  # six steps at a high rate move a random model's loss
    assert result["summary"]["loss_ratio"] == pytest.approx(tuned["loss"] / base["loss"])
    assert base["guard_adversarial"]["available"] and base["guard_adversarial"]["checked"] == 12
    report = (run_dir / "eval" / "report.md").read_text()
    assert "held-out loss" in report and (run_dir / "eval" / "loss.png").exists()

    dest = export.main(cfg, tmp_path / "export")
    adapter_config = json.loads((dest / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "tiny-llama"
    assert export.check_servable(adapter_config) == []
    assert f"{tuned['loss']:.4f}" in (dest / "README.md").read_text()

    from core.engines.local import TransformersEngine

    # the engine raises EngineUnavailable if peft cannot apply the adapter to the base
    engine = TransformersEngine(tiny_model_dir, adapter=dest, max_new_tokens=6, temperature=0)
    answer = asyncio.run(collect(engine.stream([{"role": "user", "content": "i cant sleep"}])))
    assert isinstance(answer, str)


def test_loss_is_on_assistant_tokens_only(prepared_run: tuple[Any, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    """What SFTTrainer actually trains on: labels are -100 everywhere except the assistant's replies."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    prepared = prepared_run[1]
    cfg = tiny_config(tiny_model_dir, prepared, tmp_path / "run")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = prepare.read_split(prepared / "train.jsonl")
    dataset, _ = train.tokenize_split(tokenizer, rows, 512)
    trainer = SFTTrainer(model=train.load_base_model(cfg["model"], str(tiny_model_dir)),
                         args=train.build_sft_config(cfg, tmp_path / "run", has_eval=False),
                         train_dataset=dataset, processing_class=tokenizer,
                         peft_config=train.build_peft_config(cfg["lora"]))
    example = trainer.train_dataset[0]
    learned = tokenizer.decode([t for t in example["labels"] if t != -100])
    replies = [m["content"] + "<|im_end|>" for m in rows[0]["messages"] if m["role"] == "assistant"]
    assert learned == "".join(replies)
    assert rows[0]["messages"][0]["content"][:40] not in learned
