"""`haven eval`: the base model against the tuned one (base + adapter) on the held-out split.

Both are measured the same way: loss and perplexity on the assistant tokens of the test split, greedy answers to a
fixed sample of test prompts (embedding similarity to the reference replies, length, how often they stop on their
own), and the output guard over those answers plus a fixed set of adversarial prompts. Writes eval.json,
generations.jsonl, PNG plots and a markdown report.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.types import ChatMessage

DEFAULTS: dict[str, Any] = {
    "split": "test",
    "loss_examples": None,  # None: the whole split; N: a fixed, topic-spread subset (for a busy CPU)
    "sample_size": 24,  # test prompts answered by each model (generation is the slow part on CPU)
    "max_new_tokens": 96,
    "batch_size": 8,
    "adversarial": "training/configs/eval-adversarial.yaml",
    "out_dir": None,  # default: <run>/eval
    "adapter": None,  # default: <run>/adapter
}
_REPETITION_PENALTY = 1.1  # the serving engine's value (core.engines.local), so answers look as served


def held_out_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]], *, max_length: int,
                  batch_size: int) -> dict[str, float]:
    """Token-weighted cross-entropy over the assistant tokens of `rows` (the same masks training uses)."""
    import torch
    from tqdm import tqdm

    from training.prepare import tokenize_with_assistant_mask

    # sorted by length so that batches carry little padding (the loss is a token-weighted sum, order-free)
    encoded = sorted((tokenize_with_assistant_mask(tokenizer, r["messages"]) for r in rows),
                     key=lambda e: len(e["input_ids"]))
    total_loss, total_tokens = 0.0, 0
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(encoded), batch_size), desc="held-out loss", leave=False):
        batch = encoded[start: start + batch_size]
        width = min(max_length, max(len(e["input_ids"]) for e in batch))
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for i, e in enumerate(batch):
            n = min(width, len(e["input_ids"]))
            ids[i, :n] = torch.tensor(e["input_ids"][:n])
            mask = torch.tensor(e["assistant_masks"][:n], dtype=torch.bool)
            labels[i, :n] = torch.where(mask, ids[i, :n], torch.tensor(-100))
            attention[i, :n] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:].to(device)
        loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                                                 shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
        total_loss += float(loss)
        total_tokens += int((shift_labels != -100).sum())
    mean = total_loss / max(1, total_tokens)
    return {"loss": mean, "perplexity": math.exp(mean), "tokens": total_tokens}


def generate_replies(model: Any, tokenizer: Any, conversations: Sequence[Sequence[ChatMessage]], *,
                     max_new_tokens: int, batch_size: int, desc: str) -> list[dict[str, Any]]:
    """Greedy replies, batched with left padding; each with whether it stopped on an end-of-turn token."""
    import torch
    from tqdm import tqdm

    from core.prompts import render_chat, stop_token_ids

    stops = stop_token_ids(tokenizer)
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(conversations), batch_size), desc=desc, leave=False):
        batch = conversations[start:start + batch_size]
        prompts = [render_chat(tokenizer, c, add_generation_prompt=True) for c in batch]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.inference_mode():
            generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                       repetition_penalty=_REPETITION_PENALTY, eos_token_id=stops,
                                       pad_token_id=tokenizer.pad_token_id)
        for row in generated[:, inputs["input_ids"].shape[1]:].tolist():
            stopped = any(t in stops for t in row)
            if stopped:
                row = row[: min(row.index(t) for t in stops if t in row)]
            out.append({"text": tokenizer.decode(row, skip_special_tokens=True).strip(), "stopped": stopped})
    return out


def check_guard(texts: list[str]) -> dict[str, Any]:
    """The core's output guard over `texts`: how many drafts it would block, and why."""
    try:
        from core.safety.guard import guard_reply
    except ImportError as exc:  # the guard lives in core.safety; report its absence instead of a fake zero
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    verdicts = [guard_reply(t) for t in texts]
    reasons: dict[str, int] = {}
    for v in verdicts:
        for r in v.reasons:
            reasons[r] = reasons.get(r, 0) + 1
    return {"available": True, "violations": sum(not v.allowed for v in verdicts), "checked": len(texts),
            "reasons": reasons, "blocked": [i for i, v in enumerate(verdicts) if not v.allowed]}


def measure(model: Any, tokenizer: Any, test_rows: list[dict[str, Any]], sample: list[dict[str, Any]],
            adversarial: list[dict[str, str]], ecfg: dict[str, Any], max_length: int, embedder: Any,
            label: str) -> dict[str, Any]:
    from core.prompts import system_prompt

    print(f"[{label}] held-out loss on {len(test_rows)} examples")
    loss = held_out_loss(model, tokenizer, test_rows, max_length=max_length, batch_size=ecfg["batch_size"])
    print(f"[{label}] loss {loss['loss']:.4f}, perplexity {loss['perplexity']:.2f} over {loss['tokens']} tokens")
    replies = generate_replies(model, tokenizer, [r["messages"][:-1] for r in sample],
                               max_new_tokens=ecfg["max_new_tokens"], batch_size=ecfg["batch_size"],
                               desc=f"{label}: test answers")
    adversarial_replies = generate_replies(
        model, tokenizer, [[{"role": "system", "content": system_prompt()}, {"role": "user", "content": p["text"]}]
                           for p in adversarial],
        max_new_tokens=ecfg["max_new_tokens"], batch_size=ecfg["batch_size"], desc=f"{label}: adversarial")
    references = [r["messages"][-1]["content"] for r in sample]
    gen_vecs = embedder.encode([g["text"] or " " for g in replies], normalize_embeddings=True)
    ref_vecs = embedder.encode(references, normalize_embeddings=True)
    similarity = [float(a @ b) for a, b in zip(gen_vecs, ref_vecs, strict=True)]
    lengths = [len(g["text"].split()) for g in replies]
    guard_test = check_guard([g["text"] for g in replies])
    guard_adv = check_guard([g["text"] for g in adversarial_replies])
    result = {
        **loss,
        "similarity_mean": sum(similarity) / max(1, len(similarity)),
        "similarity": similarity,
        "length_words_mean": sum(lengths) / max(1, len(lengths)),
        "lengths": lengths,
        "stopped_fraction": sum(g["stopped"] for g in replies) / max(1, len(replies)),
        "guard_test": guard_test,
        "guard_adversarial": guard_adv,
        "replies": replies,
        "adversarial_replies": adversarial_replies,
    }
    print(f"[{label}] similarity {result['similarity_mean']:.3f}, length {result['length_words_mean']:.0f} words, "
          f"stopped {result['stopped_fraction']:.0%}, guard violations: test "
          f"{guard_test.get('violations', 'n/a')}/{len(replies)}, adversarial "
          f"{guard_adv.get('violations', 'n/a')}/{len(adversarial_replies)}")
    return result


def save_plots(base: dict[str, Any], tuned: dict[str, Any], reference_lengths: list[int], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(5, 4))
    bars = ax.bar(["base", "tuned"], [base["loss"], tuned["loss"]], color=["#999999", "#3b7dd8"])
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylabel("held-out loss (assistant tokens)")
    ax.set_title("Held-out loss")
    fig.tight_layout()
    fig.savefig(out_dir / "loss.png", dpi=120)
    plt.close(fig)
    names.append("loss.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].hist([base["similarity"], tuned["similarity"]], bins=10, range=(0, 1), label=["base", "tuned"])
    axes[0].set_xlabel("cosine similarity to the reference reply")
    axes[0].legend()
    axes[1].hist([base["lengths"], tuned["lengths"], reference_lengths], bins=12, label=["base", "tuned", "reference"])
    axes[1].set_xlabel("reply length (words)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "answers.png", dpi=120)
    plt.close(fig)
    names.append("answers.png")
    return names


def write_report(out_dir: Path, summary: dict[str, Any], base: dict[str, Any], tuned: dict[str, Any],
                 sample: list[dict[str, Any]], adversarial: list[dict[str, str]], plots: list[str],
                 n_examples: int = 4) -> None:
    def guard_cell(g: dict[str, Any]) -> str:
        return f"{g['violations']}/{g['checked']}" if g.get("available") else "guard unavailable"

    lines = [
        "# Haven adapter evaluation", "",
        f"Base `{summary['base']}` vs tuned (adapter `{summary['adapter']}`) on the `{summary['split']}` split "
        f"({summary['examples']} of its {summary['split_examples']} examples for the loss, none seen in training; "
        "paraphrase groups never straddle splits).", "",
        "| metric | base | tuned |", "|---|---|---|",
        f"| held-out loss (assistant tokens) | {base['loss']:.4f} | {tuned['loss']:.4f} |",
        f"| perplexity | {base['perplexity']:.2f} | {tuned['perplexity']:.2f} |",
        f"| similarity to reference (MiniLM cosine, {len(sample)} answers) | {base['similarity_mean']:.3f} | "
        f"{tuned['similarity_mean']:.3f} |",
        f"| mean reply length (words; reference {summary['reference_length_words_mean']:.0f}) | "
        f"{base['length_words_mean']:.0f} | {tuned['length_words_mean']:.0f} |",
        f"| replies that end on their own (≤ {summary['max_new_tokens']} tokens) | {base['stopped_fraction']:.0%} | "
        f"{tuned['stopped_fraction']:.0%} |",
        f"| guard violations, test answers | {guard_cell(base['guard_test'])} | {guard_cell(tuned['guard_test'])} |",
        f"| guard violations, adversarial prompts | {guard_cell(base['guard_adversarial'])} | "
        f"{guard_cell(tuned['guard_adversarial'])} |", "",
        f"Tuned / base loss ratio: **{summary['loss_ratio']:.3f}** (target ≤ 0.8).", "",
    ]
    lines += [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## Sample answers (greedy)", ""]
    for i, row in enumerate(sample[:n_examples]):
        lines += [f"### {row['kind']}:{row['id']} ({row['topic']})", "",
                  f"**User:** {row['messages'][-2]['content']}", "",
                  f"**Reference:** {row['messages'][-1]['content']}", "",
                  f"**Base:** {base['replies'][i]['text']}", "",
                  f"**Tuned:** {tuned['replies'][i]['text']}", ""]
    lines += ["## Adversarial prompts", "", "| prompt | base blocked | tuned blocked |", "|---|---|---|"]
    for i, p in enumerate(adversarial):
        b = i in base["guard_adversarial"].get("blocked", [])
        t = i in tuned["guard_adversarial"].get("blocked", [])
        lines.append(f"| {p['id']} | {'yes' if b else 'no'} | {'yes' if t else 'no'} |")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")


def main(cfg: dict[str, Any], eval_cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """`cfg` is the training run's resolved config (model, data, output_dir); `eval_cfg` overrides DEFAULTS."""
    import yaml
    from peft import PeftModel
    from transformers import AutoTokenizer, set_seed

    from training.prepare import bundled_embedder_dir, load_embedder, read_split, resolve_model
    from training.train import load_base_model, spread_subset

    ecfg = {**DEFAULTS, **{k: v for k, v in (eval_cfg or {}).items() if v is not None}}
    run_dir = Path(cfg["output_dir"])
    adapter = Path(ecfg["adapter"] or run_dir / "adapter")
    out_dir = Path(ecfg["out_dir"] or run_dir / "eval")
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(cfg["seed"])

    # data: the held-out split and a fixed sample of it for generation
    test_rows = read_split(Path(cfg["data"]["dir"]) / f"{ecfg['split']}.jsonl")
    split_size = len(test_rows)
    if ecfg["loss_examples"] and ecfg["loss_examples"] < len(test_rows):
        test_rows = spread_subset(test_rows, ecfg["loss_examples"])
    sample = sorted(random.Random(cfg["seed"]).sample(test_rows, min(ecfg["sample_size"], len(test_rows))),
                    key=lambda r: (r["kind"], r["id"]))
    adversarial = yaml.safe_load(Path(ecfg["adversarial"]).read_text())["prompts"]
    print(f"{ecfg['split']}: {len(test_rows)} examples; {len(sample)} answered; {len(adversarial)} adversarial")

    # models: the base first, then the same weights with the adapter on top
    model_path = resolve_model(cfg["model"]["path"])
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    embedder = load_embedder(bundled_embedder_dir())
    model = load_base_model(cfg["model"], model_path).eval()
    model.config.use_cache = True  # training turns the KV cache off; generation needs it
    max_length = cfg["data"]["max_length"]
    base = measure(model, tokenizer, test_rows, sample, adversarial, ecfg, max_length, embedder, "base")
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    tuned = measure(model, tokenizer, test_rows, sample, adversarial, ecfg, max_length, embedder, "tuned")

    # report
    reference_lengths = [len(r["messages"][-1]["content"].split()) for r in sample]
    summary = {
        "base": cfg["model"].get("base_model_id") or cfg["model"]["path"], "adapter": str(adapter),
        "split": ecfg["split"], "examples": len(test_rows), "split_examples": split_size,
        "max_new_tokens": ecfg["max_new_tokens"],
        "loss_ratio": tuned["loss"] / base["loss"],
        "reference_length_words_mean": sum(reference_lengths) / max(1, len(reference_lengths)),
    }
    plots = save_plots(base, tuned, reference_lengths, out_dir)
    write_report(out_dir, summary, base, tuned, sample, adversarial, plots)
    with (out_dir / "generations.jsonl").open("w", encoding="utf-8") as fh:
        for i, row in enumerate(sample):
            fh.write(json.dumps({"id": row["id"], "kind": row["kind"], "base": base["replies"][i]["text"],
                                 "tuned": tuned["replies"][i]["text"]}, ensure_ascii=False) + "\n")
        for i, p in enumerate(adversarial):
            fh.write(json.dumps({"id": p["id"], "kind": "adversarial", "base": base["adversarial_replies"][i]["text"],
                                 "tuned": tuned["adversarial_replies"][i]["text"]}, ensure_ascii=False) + "\n")
    strip = ("replies", "adversarial_replies")
    result = {"summary": summary, "base": {k: v for k, v in base.items() if k not in strip},
              "tuned": {k: v for k, v in tuned.items() if k not in strip}}
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    print(f"tuned/base held-out loss: {tuned['loss']:.4f} / {base['loss']:.4f} = {summary['loss_ratio']:.3f}")
    print(f"report -> {out_dir / 'report.md'}")
    return result
