"""`haven export`: a trained run's adapter as a self-contained folder, plus a model card with the eval figures.

The folder holds `adapter_config.json` + `adapter_model.safetensors`: the core loads it with
`TransformersEngine(base, adapter=folder)`, and vLLM serves it with `--enable-lora --lora-modules haven=folder`
(LoRA on linear layers only, rank ≤ 16, no extra trained modules, which is what vLLM's LoRA loader accepts).
Optionally, the adapter is merged into a full copy of the base weights for engines without LoRA support, and/or
into one GGUF file (`--gguf q8_0|q4_k_m|f16|f32`) that llama.cpp serves on a CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def check_servable(adapter_config: dict[str, Any]) -> list[str]:
    """Reasons vLLM's LoRA loader would refuse this adapter (empty when it is fine)."""
    problems = []
    if adapter_config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {adapter_config.get('peft_type')}, not LORA")
    if adapter_config.get("modules_to_save"):
        problems.append(f"modules_to_save is set ({adapter_config['modules_to_save']})")
    if adapter_config.get("use_dora"):
        problems.append("DoRA adapters are not served by vLLM")
    if int(adapter_config.get("r", 0)) > 64:
        problems.append("rank above 64 needs --max-lora-rank")
    return problems


def model_card(cfg: dict[str, Any], adapter_config: dict[str, Any], run_dir: Path) -> str:
    train = _read_json(run_dir / "train_metrics.json")
    evaluation = _read_json(run_dir / "eval" / "eval.json")
    base_id = cfg["model"].get("base_model_id") or cfg["model"]["path"]
    lines = [
        "---", "library_name: peft", f"base_model: {base_id}", "license: apache-2.0", "---", "",
        f"# {cfg['run_name']}: Haven's LoRA adapter for {base_id}", "",
        "Haven is a mental-health support companion, not a therapist or an emergency service. This adapter tunes "
        "the base model's replies on Haven's own hand-written dataset (training/DATA_CARD.md): warm, brief, "
        "non-diagnostic, no dosing, no promises. Crisis messages never reach the model: Haven's safety screen "
        "answers them with fixed, reviewed replies, and every model draft passes the output guard.", "",
        "## Use", "",
        "```python",
        "from core.engines.local import TransformersEngine",
        "engine = TransformersEngine(base_model_dir, adapter=Path('<this folder>'))",
        "```", "",
        "vLLM: `vllm serve <base> --enable-lora --lora-modules haven=<this folder>` (the base in bf16). "
        "Prompts must be rendered with `core.prompts.render_chat`, as in training (system guidance first; folded "
        "into the first user turn for templates without a system role).", "",
        "## Training", "",
        f"- LoRA r={adapter_config.get('r')}, alpha={adapter_config.get('lora_alpha')}, "
        f"dropout={adapter_config.get('lora_dropout')}, "
        f"modules: {', '.join(sorted(adapter_config.get('target_modules') or []))}",
        f"- quantization of the frozen base while training: {cfg['model']['quantization']}; seed {cfg['seed']}",
        f"- lr {cfg['training']['learning_rate']}, {cfg['training']['lr_scheduler']}, warmup "
        f"{cfg['training']['warmup_ratio']}, max grad norm {cfg['training']['max_grad_norm']}; loss on assistant "
        "tokens only",
    ]
    if train:
        per_step = cfg["training"]["per_device_batch_size"] * cfg["training"]["gradient_accumulation_steps"]
        seen = min(train["global_step"] * per_step, train["train_stats"]["examples"])
        lines += [f"- {train['global_step']} optimizer steps, {train['train_seconds'] / 60:.1f} min, about "
                  f"{train['train_tokens_per_second']:.0f} tokens/s: {seen} of the "
                  f"{train['train_stats']['examples']} training examples seen"]
        if "validation_loss" in train:
            lines += [f"- final validation loss {train['validation_loss']:.4f}"]
    lines += ["", "## Evaluation (held-out test split, base vs tuned)", ""]
    if evaluation:
        s, b, t = evaluation["summary"], evaluation["base"], evaluation["tuned"]

        def guard(g: dict[str, Any]) -> str:
            return f"{g['violations']}/{g['checked']}" if g.get("available") else "n/a"

        lines += [
            "| metric | base | tuned |", "|---|---|---|",
            f"| held-out loss | {b['loss']:.4f} | {t['loss']:.4f} |",
            f"| perplexity | {b['perplexity']:.2f} | {t['perplexity']:.2f} |",
            f"| similarity to reference | {b['similarity_mean']:.3f} | {t['similarity_mean']:.3f} |",
            f"| mean reply length (words) | {b['length_words_mean']:.0f} | {t['length_words_mean']:.0f} |",
            f"| guard violations (test answers) | {guard(b['guard_test'])} | {guard(t['guard_test'])} |",
            f"| guard violations (adversarial) | {guard(b['guard_adversarial'])} | {guard(t['guard_adversarial'])} |",
            "", f"Tuned/base loss ratio {s['loss_ratio']:.3f} on {s['examples']} held-out examples (the project's "
            f"target is ≤ 0.8: {'met' if s['loss_ratio'] <= 0.8 else 'not met'}).",
        ]
    else:
        lines += ["Not evaluated yet: run `haven eval --config <config>` before exporting."]
    lines += ["", "## Limits", "",
              "A small model tuned on about a thousand examples: it can still be wrong, vague or repetitive. It is "
              "one layer among several (safety screen, output guard, fixed crisis replies), never the judge of risk."]
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def main(cfg: dict[str, Any], dest: str | Path, *, merged_dir: str | Path | None = None,
         gguf: str | None = None, adapter: str | Path | None = None) -> Path:
    """Export the run's adapter, or `adapter` (an exported folder such as the shipped
    training/adapters/haven-smollm2-135m, so a GGUF can be made without training again)."""
    run_dir = Path(cfg["output_dir"])
    source = Path(adapter) if adapter else run_dir / "adapter"
    dest = Path(dest)
    missing = [name for name in ADAPTER_FILES if not (source / name).exists()]
    if missing:
        raise SystemExit(f"{source} lacks {', '.join(missing)}: train first (haven train --config ...)")
    if dest.resolve() == source.resolve():
        raise SystemExit(f"--dest is the adapter folder itself ({dest}): choose another folder")

    # the adapter: copied, with the base named portably (a hub id, not this machine's cache path)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copy2(source / name, partial / name)
    adapter_config = json.loads((partial / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = cfg["model"].get("base_model_id") or cfg["model"]["path"]
    (partial / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True))
    for problem in check_servable(adapter_config):
        print(f"warning: vLLM may refuse this adapter: {problem}")
    if adapter and (source / "README.md").exists():
        # an exported folder already carries its model card and figures: keep them as they are
        for extra in source.iterdir():
            if extra.is_file() and extra.name not in ADAPTER_FILES:
                shutil.copy2(extra, partial / extra.name)
    else:
        (partial / "README.md").write_text(model_card(cfg, adapter_config, run_dir))
        for name in ("loss_curve.png", "eval/loss.png", "eval/answers.png", "eval/report.md"):
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, partial / Path(name).name.replace("report.md", "eval_report.md"))
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    size_kib = sum(p.stat().st_size for p in dest.iterdir()) / 1024
    print(f"adapter -> {dest} ({size_kib:.0f} KiB)")

    # optional: merged full weights (fp32 base + adapter folded in), for engines without LoRA support
    if merged_dir:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from training.prepare import resolve_model

        base_path = resolve_model(cfg["model"]["path"])
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
        merged = PeftModel.from_pretrained(model, str(dest)).merge_and_unload()
        merged.save_pretrained(merged_dir)
        AutoTokenizer.from_pretrained(base_path).save_pretrained(merged_dir)
        print(f"merged weights -> {merged_dir}")

    # optional: the merged model as one GGUF file in the same folder, for llama.cpp on a CPU (training/gguf.py)
    if gguf:
        from training.gguf import export_gguf

        export_gguf(cfg, dest, dest, gguf)
    return dest
