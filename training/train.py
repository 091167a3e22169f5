"""`haven train --config training/configs/<name>.yaml`: LoRA / QLoRA fine-tuning with TRL's SFTTrainer.

main(cfg) reads top to bottom: seed → data (rendered by core.prompts, loss on assistant tokens only) → model
(QLoRA nf4 on CUDA; LoRA fp32/bf16 or nf4 on CPU) → trainer → train (resumable) → held-out loss → save the
adapter, the resolved config and the loss curves next to each other in the run folder.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

# The knobs DESIGN.md fixes for Haven's adapters; a config may override any of them, and the resolved values are
# saved with every run.
DEFAULTS: dict[str, Any] = {
    "run_name": "haven",
    "output_dir": "runs/haven",
    "seed": 42,
    "model": {"path": "bundled", "base_model_id": None, "quantization": "none", "dtype": "float32",
              "attn_implementation": "sdpa"},
    "data": {"dir": "training/prepared", "max_length": 1024, "max_train_examples": None,
             "max_validation_examples": None},
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
    "training": {"epochs": 1, "max_steps": -1, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
                 "learning_rate": 2.0e-4, "lr_scheduler": "constant_with_warmup", "warmup_ratio": 0.03,
                 "max_grad_norm": 0.3, "weight_decay": 0.0, "group_by_length": False, "optim": "auto",
                 "gradient_checkpointing": "auto",
                 "logging_steps": 5, "eval_steps": 25, "save_steps": 25, "save_total_limit": 2,
                 "max_train_minutes": None, "resume": "auto"},
}


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The YAML merged over DEFAULTS (one level of sections), then `overrides` (same shape)."""
    import yaml

    loaded = yaml.safe_load(Path(path).read_text()) or {}
    return merge_config(merge_config(DEFAULTS, loaded), overrides or {})


def merge_config(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def on_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def load_base_model(model_cfg: dict[str, Any], model_path: str) -> Any:
    """The frozen base: 4-bit nf4 (double quantization, bf16 compute on CUDA) or a plain fp32/bf16 model."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    cuda = on_cuda()
    kwargs: dict[str, Any] = {"attn_implementation": model_cfg["attn_implementation"]}
    if model_cfg["quantization"] == "nf4":
        compute = torch.bfloat16 if cuda else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute, bnb_4bit_quant_storage=compute)
        kwargs["device_map"] = {"": 0} if cuda else {"": "cpu"}
        kwargs["dtype"] = compute
    elif model_cfg["quantization"] == "none":
        kwargs["dtype"] = getattr(torch, model_cfg["dtype"])
    else:
        raise ValueError(f"model.quantization must be none or nf4, not {model_cfg['quantization']!r}")
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    model.config.use_cache = False  # the KV cache only costs memory while training
    return model


def build_peft_config(lora_cfg: dict[str, Any]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=lora_cfg["r"], lora_alpha=lora_cfg["alpha"], lora_dropout=lora_cfg["dropout"],
                      target_modules=lora_cfg["target_modules"], bias="none", task_type="CAUSAL_LM")


def build_sft_config(cfg: dict[str, Any], output_dir: Path, *, has_eval: bool) -> Any:
    from trl import SFTConfig

    t, cuda = cfg["training"], on_cuda()
    quantized = cfg["model"]["quantization"] == "nf4"
    optim = t["optim"] if t["optim"] != "auto" else ("paged_adamw_8bit" if cuda else "adamw_torch")
    checkpointing = t["gradient_checkpointing"] if t["gradient_checkpointing"] != "auto" else cuda
    return SFTConfig(
        output_dir=str(output_dir / "checkpoints"),
        run_name=cfg["run_name"],
        seed=cfg["seed"],
        data_seed=cfg["seed"],
        num_train_epochs=t["epochs"],
        max_steps=t["max_steps"],
        per_device_train_batch_size=t["per_device_batch_size"],
        per_device_eval_batch_size=t["per_device_batch_size"],
        gradient_accumulation_steps=t["gradient_accumulation_steps"],
        learning_rate=t["learning_rate"],
        lr_scheduler_type=t["lr_scheduler"],
        warmup_steps=t["warmup_ratio"],  # transformers 5: a float below 1 is a fraction of the total steps
        max_grad_norm=t["max_grad_norm"],
        weight_decay=t["weight_decay"],
        optim=optim,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        # CUDA: bf16 compute (QLoRA's recipe). CPU: bf16 autocast only when the config asks for it.
        bf16=cuda or (cfg["model"]["dtype"] == "bfloat16" and not quantized),
        fp16=False,
        use_cpu=not cuda,
        max_length=cfg["data"]["max_length"],
        packing=False,
        # Batches of similar length waste less compute on padding (transformers' LengthGroupedSampler: random
        # mega-batches, sorted by length inside).
        train_sampling_strategy="group_by_length" if t["group_by_length"] else "random",
        assistant_only_loss=False,  # the dataset carries its own assistant masks, see tokenize_split
        logging_steps=t["logging_steps"],
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t["eval_steps"],
        save_strategy="steps",
        save_steps=t["save_steps"],
        save_total_limit=t["save_total_limit"],
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def tokenize_split(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> tuple[Any, dict[str, int]]:
    """A pre-tokenized `datasets.Dataset` (input_ids + assistant_masks): SFTTrainer turns the masks into labels
    (-100 off the assistant's replies). Rendering here, not TRL's chat-template path, keeps the exact text the
    engines serve (core.prompts, system folded for Gemma)."""
    from datasets import Dataset

    from training.prepare import tokenize_with_assistant_mask

    columns: dict[str, list[Any]] = {"input_ids": [], "assistant_masks": []}
    stats = {"examples": 0, "tokens": 0, "assistant_tokens": 0, "truncated": 0}
    for row in rows:
        encoded = tokenize_with_assistant_mask(tokenizer, row["messages"])
        if len(encoded["input_ids"]) > max_length:
            stats["truncated"] += 1
        ids, mask = encoded["input_ids"][:max_length], encoded["assistant_masks"][:max_length]
        columns["input_ids"].append(ids)
        columns["assistant_masks"].append(mask)
        stats["examples"] += 1
        stats["tokens"] += len(ids)
        stats["assistant_tokens"] += sum(mask)
    return Dataset.from_dict(columns), stats


def spread_subset(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """A fixed subset of `n` rows that spans the topics: every k-th row in stratum order."""
    ordered = sorted(rows, key=lambda r: (r["stratum"], r["kind"], r["id"]))
    step = len(ordered) / n
    return [ordered[int(i * step)] for i in range(n)]


def last_checkpoint(checkpoints: Path) -> str | None:
    found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(found[-1]) if found else None


def save_loss_curves(log_history: list[dict[str, Any]], output_dir: Path) -> dict[str, list[list[float]]]:
    curves = {
        "train_loss": [[e["step"], e["loss"]] for e in log_history if "loss" in e and "step" in e],
        "eval_loss": [[e["step"], e["eval_loss"]] for e in log_history if "eval_loss" in e],
    }
    (output_dir / "loss_curve.json").write_text(json.dumps(curves, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if name == "eval_loss" else None,
                    label=name.replace("_", " "))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss on assistant tokens")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output_dir / "loss_curve.png", dpi=120)
    plt.close(fig)
    return curves


def main(cfg: dict[str, Any]) -> dict[str, Any]:
    import yaml
    from transformers import AutoTokenizer, TrainerCallback, set_seed
    from trl import SFTTrainer

    from training.prepare import read_split, resolve_model

    output_dir = Path(cfg["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.resolved.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    # seed
    set_seed(cfg["seed"])

    # data
    model_path = resolve_model(cfg["model"]["path"])
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data_dir = Path(cfg["data"]["dir"])
    train_rows = read_split(data_dir / "train.jsonl")
    if cfg["data"]["max_train_examples"]:
        train_rows = train_rows[: cfg["data"]["max_train_examples"]]
    valid_path = data_dir / "validation.jsonl"
    valid_rows = read_split(valid_path) if valid_path.exists() else []
    if cfg["data"]["max_validation_examples"] and cfg["data"]["max_validation_examples"] < len(valid_rows):
        valid_rows = spread_subset(valid_rows, cfg["data"]["max_validation_examples"])
    train_set, train_stats = tokenize_split(tokenizer, train_rows, cfg["data"]["max_length"])
    valid_set, valid_stats = tokenize_split(tokenizer, valid_rows, cfg["data"]["max_length"]) if valid_rows else (
        None, {})
    print(f"train: {train_stats}")
    print(f"validation: {valid_stats or 'none'}")

    # model
    model = load_base_model(cfg["model"], model_path)
    peft_config = build_peft_config(cfg["lora"])
    args = build_sft_config(cfg, output_dir, has_eval=valid_set is not None)

    class StopAfterMinutes(TrainerCallback):
        """Ends training (with a checkpoint) once the wall-time budget is spent; the constant schedule makes a
        stopped run a valid one."""

        def __init__(self, minutes: float | None) -> None:
            self.deadline = time.monotonic() + minutes * 60 if minutes else math.inf

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.monotonic() > self.deadline:
                print(f"time budget spent at step {state.global_step}: stopping")
                control.should_training_stop = True
                control.should_save = True  # the held-out loss is measured once, after train() returns
            return control

    # trainer
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=valid_set,
                         processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[StopAfterMinutes(cfg["training"]["max_train_minutes"])])
    peft_model: Any = trainer.model  # a PeftModel: SFTTrainer wraps the model when given peft_config
    trainable, total = peft_model.get_nb_trainable_parameters()
    print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%), "
          f"device {'cuda' if on_cuda() else 'cpu'}, optimizer {args.optim}")

    # train (resume from the newest checkpoint when asked)
    resume = cfg["training"]["resume"]
    checkpoint = last_checkpoint(Path(args.output_dir)) if resume in ("auto", True) else (resume or None)
    if checkpoint:
        print(f"resuming from {checkpoint}")
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.monotonic() - started
    steps_run = trainer.state.global_step - (int(Path(checkpoint).name.split("-")[-1]) if checkpoint else 0)
    tokens_per_step = train_stats["tokens"] / max(1, math.ceil(
        len(train_set) / (args.per_device_train_batch_size * args.gradient_accumulation_steps)))

    # held-out loss and save
    metrics: dict[str, Any] = {"train_loss": result.training_loss, "global_step": trainer.state.global_step,
                               "train_seconds": round(seconds, 1),
                               "train_tokens_per_second": round(steps_run * tokens_per_step / max(seconds, 1e-9), 1),
                               "train_stats": train_stats, "validation_stats": valid_stats}
    if valid_set is not None:
        eval_metrics = trainer.evaluate()
        metrics["validation_loss"] = eval_metrics["eval_loss"]
        metrics["validation_perplexity"] = math.exp(eval_metrics["eval_loss"])
    adapter_dir = output_dir / "adapter"
    peft_model = trainer.model
    peft_model.save_pretrained(adapter_dir)
    metrics["adapter_dir"] = str(adapter_dir)
    metrics["loss_curves"] = save_loss_curves(trainer.state.log_history, output_dir)
    (output_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2))
    summary = {k: v for k, v in metrics.items() if k != "loss_curves"}
    print(json.dumps(summary, indent=2))
    print(f"adapter -> {adapter_dir}; loss curves -> {output_dir / 'loss_curve.png'}")
    return metrics
