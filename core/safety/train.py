"""Train the safety screen's classifier: `haven safety train` (run it after changing the training rows).

Reads top to bottom: seed → rows (`training_rows()`: never an unseen split) → MiniLM fine-tuned on every row, once
per seed, averaged into one (`soup`) → the character n-gram reader (`core/safety/ngrams.py`) trained on the same
rows → how much the n-gram reader counts, for English and for the other four languages (`choose_ngram_weights`) →
the thresholds chosen with the whole screen on the development splits (`choose_on_dev`) → the weights and config
written to `core/safety/data/classifier/`. On a 2-core CPU a run over about 9,500 rows takes about 35 minutes
(`--seeds 1`: about 20).

Thresholds: both are chosen with the whole screen on the development splits (`--dev-splits`), which separate
authors wrote and nothing trains on, recall first (see `choose_on_dev`).
`--folds k` adds k out-of-fold runs first (k more trainings): their
figures on the training rows are kept beside the model, and without development splits they choose the
thresholds (the lowest that keep ordinary training rows raised within `--max-false-crisis` and
`--max-false-concern`, classifier alone).
Prints figures only, never message text.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.safety.classifier import (
    CATEGORIES,
    LOGIT_SCALE,
    ClassifierConfig,
    default_classifier_dir,
    encoder_from_bundled,
    mean_pool,
    rows_digest,
)
from core.safety.language import ENGLISH, guess_language
from core.safety.ngrams import NgramReader, combine
from core.safety.ngrams import fit as fit_ngrams
from core.safety.risk import RiskLevel
from core.safety.semantic import (
    DEVELOPMENT_SPLITS,
    LEVELS,
    Thresholds,
    bundled_model_path,
    read_jsonl,
    training_rows,
)

# LoRA on every Linear of the kept encoder layers (not the pooler, which mean pooling does not use).
TARGETS = ("query", "key", "value", "dense")
TARGET_PATTERN = r".*encoder\.layer\.\d+\..*\.(?:query|key|value|dense)$"


def train_model(rows: Sequence[dict[str, Any]], *, layers: int, rank: int, alpha: float, epochs: int,
                learning_rate: float, max_tokens: int, seed: int, progress: str = "") -> dict[str, Any]:
    """Fine-tune LoRA + both heads on `rows`; returns the tensors to save (LoRA pairs by module, and the heads)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    random.seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()), local_files_only=True)
    encoder = get_peft_model(
        encoder_from_bundled(layers),
        LoraConfig(r=rank, lora_alpha=int(alpha), lora_dropout=0.1, target_modules=TARGET_PATTERN),
    )
    level_head = torch.nn.Linear(384, len(LEVELS))
    category_head = torch.nn.Linear(384, len(CATEGORIES))
    texts = [row["text"] for row in rows]
    levels = torch.tensor([LEVELS.index(RiskLevel(row["level"])) for row in rows])
    categories = torch.tensor([[float(c.value in row.get("categories", ())) for c in CATEGORIES] for row in rows])
    counts = torch.bincount(levels, minlength=len(LEVELS)).float()
    class_weight = counts.sum() / counts.clamp(min=1) / len(LEVELS)
    params = [p for p in encoder.parameters() if p.requires_grad]
    params += [*level_head.parameters(), *category_head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    order = torch.Generator().manual_seed(seed)
    batch_size = 16
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc=progress or "training", unit="step", leave=False)
    encoder.train()
    for _ in range(epochs):
        for idx in _length_bucketed_batches(texts, batch_size, order):
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_tokens,
                              return_tensors="pt")
            pooled = mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"])
            level_loss = torch.nn.functional.cross_entropy(level_head(pooled) * LOGIT_SCALE, levels[idx],
                                                           weight=class_weight, label_smoothing=0.1)
            risky = levels[idx] != 0
            category_loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(
                    category_head(pooled[risky]) * LOGIT_SCALE, categories[idx][risky])
                if bool(risky.any()) else torch.zeros(())
            )
            loss = level_loss + 0.5 * category_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    encoder.eval()
    tensors = lora_tensors(encoder)
    for prefix, head in (("level_head", level_head), ("category_head", category_head)):
        tensors[f"{prefix}.weight"] = head.weight.detach().clone().contiguous()
        tensors[f"{prefix}.bias"] = head.bias.detach().clone().contiguous()
    return tensors


def _length_bucketed_batches(texts: Sequence[str], batch_size: int, order: Any) -> list[Any]:
    """Shuffled batches of similar-length texts (sorted within windows of 16 batches), in shuffled order: a batch
    pads to its longest text, so mixing one long story with short lines would cost several times the compute."""
    import torch

    permutation = torch.randperm(len(texts), generator=order).tolist()
    window = batch_size * 16
    batches = []
    for start in range(0, len(permutation), window):
        chunk = sorted(permutation[start : start + window], key=lambda i: len(texts[i]))
        batches += [torch.tensor(chunk[j : j + batch_size]) for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=order).tolist()]


def soup(models: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One model whose weights are the average of `models`' (the same settings and rows, different seeds).

    Each LoRA update B @ A is averaged exactly by stacking the pairs (A along the rank, B / k beside it): a rank-k*r
    pair whose product is the mean of the k updates, merged at load like any other. The heads are averaged. A single
    seed's classifier moves by several points of crisis recall with the seed alone; the average does not.
    """
    import torch

    k = len(models)
    averaged: dict[str, Any] = {}
    for key in models[0]:
        parts = [model[key].float() for model in models]
        if key.endswith(".lora_A"):
            averaged[key] = torch.cat(parts, dim=0).contiguous()
        elif key.endswith(".lora_B"):
            averaged[key] = (torch.cat(parts, dim=1) / k).contiguous()
        else:
            averaged[key] = (sum(parts) / k).contiguous()
    return averaged


def lora_tensors(encoder: Any) -> dict[str, Any]:
    """The LoRA pairs of a peft-wrapped encoder, keyed by the plain module name they adapt (`<name>.lora_A`/`_B`)."""
    tensors: dict[str, Any] = {}
    for name, module in encoder.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            plain = name.removeprefix("base_model.model.")
            tensors[f"{plain}.lora_A"] = module.lora_A["default"].weight.detach().clone().contiguous()
            tensors[f"{plain}.lora_B"] = module.lora_B["default"].weight.detach().clone().contiguous()
    return tensors


def save(folder: Path, tensors: dict[str, Any], config: ClassifierConfig, figures: dict[str, Any],
         ngrams: NgramReader | None = None) -> None:
    """Write `weights.safetensors` (fp16: the file stays small), the n-gram reader if given, and `config.json`
    (with the figures) to `folder`."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16) for k, v in tensors.items()}, str(folder / "weights.safetensors"))
    if ngrams is not None:
        ngrams.save(folder)
    raw = asdict(config)
    raw["targets"] = list(config.targets)
    raw["figures"] = figures
    (folder / "config.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")


def out_of_fold(rows: Sequence[dict[str, Any]], folds: int, settings: dict[str, Any], scratch: Path,
                weights: dict[str, float]) -> np.ndarray:
    """(p_none, p_concern, p_crisis) for every row from a classifier (both readers, combined at `weights`) that did
    not see it; folds stratified by level."""
    from core.safety.classifier import RiskClassifier

    fold_of = np.zeros(len(rows), dtype=int)
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        fold_of[i] = seen.get(row["level"], 0) % folds
        seen[row["level"]] = seen.get(row["level"], 0) + 1
    probs = np.zeros((len(rows), len(LEVELS)))
    for fold in range(folds):
        train = [row for row, f in zip(rows, fold_of, strict=True) if f != fold]
        held = [i for i, f in enumerate(fold_of) if f == fold]
        tensors = train_model(train, progress=f"fold {fold + 1}/{folds}", **settings)
        config = _config(settings, Thresholds(), rows_digest(train), weights)
        save(scratch / f"fold{fold}", tensors, config, {}, ngram_reader(train))
        classifier = RiskClassifier(scratch / f"fold{fold}")
        for start in range(0, len(held), 64):
            chunk = held[start : start + 64]
            probs[chunk] = classifier.scores([rows[i]["text"] for i in chunk])[0]
    return probs


def choose_thresholds(rows: Sequence[dict[str, Any]], probs: np.ndarray, *, max_false_crisis: float,
                      max_false_concern: float) -> tuple[Thresholds, dict[str, float]]:
    """The lowest thresholds whose out-of-fold alarm rates on ordinary rows stay within the limits."""
    gold = np.array([row["level"] for row in rows])
    none, concern, crisis = gold == "none", gold == "concern", gold == "crisis"
    p_crisis, p_risk = probs[:, 2], probs[:, 1] + probs[:, 2]
    grid = [round(float(x), 2) for x in np.arange(0.30, 0.99, 0.01)]
    t_crisis = next((t for t in grid if (p_crisis[none] >= t).mean() <= max_false_crisis), grid[-1])
    t_concern = next((t for t in grid if (p_risk[none] >= t).mean() <= max_false_concern), grid[-1])
    figures: dict[str, Any] = {
        "crisis_recall": float((p_crisis[crisis] >= t_crisis).mean()),
        "concern_or_higher_recall": float(((p_risk[concern] >= t_concern) | (p_crisis[concern] >= t_crisis)).mean()),
        "false_crisis": float((p_crisis[none] >= t_crisis).mean()),
        "false_concern_or_higher": float(((p_risk[none] >= t_concern) | (p_crisis[none] >= t_crisis)).mean()),
    }
    # The whole trade-off, so a reader can see what another limit would have cost (classifier alone, out of fold).
    figures["crisis_curve"] = {
        f"{t:.2f}": [round(float((p_crisis[crisis] >= t).mean()), 3), round(float((p_crisis[none] >= t).mean()), 3)]
        for t in np.arange(0.30, 0.96, 0.05)
    }
    return Thresholds(crisis=t_crisis, concern=t_concern, crisis_with_intent=t_crisis), figures


def choose_ngram_weights(folder: Path, splits: Sequence[str]) -> tuple[dict[str, float], dict[str, Any]]:
    """How much the n-gram reader counts, for English and for the other four languages: the weight in NGRAM_WEIGHTS
    under which the classifier alone best ranks the development splits' crises above their ordinary messages (area
    under the curve; a tie goes to the middle weight). The n-gram reader must already be in `folder`."""
    from core.safety.classifier import RiskClassifier

    classifier = RiskClassifier(folder)
    ngrams = NgramReader.load(folder)
    chosen: dict[str, float] = {}
    figures: dict[str, Any] = {}
    for part, rows in zip(("english", "other_languages"), _dev_rows(splits), strict=True):
        rows = [row for row in rows if "messages" not in row and row["level"] in ("crisis", "none")]
        texts = [row["text"] for row in rows]
        minilm = np.concatenate([classifier.reader_scores(texts[i : i + 64])[0] for i in range(0, len(texts), 64)])
        theirs = ngrams.probabilities(texts)
        crisis = np.array([row["level"] == "crisis" for row in rows])
        areas = {w: _area_under_curve(combine(minilm, theirs, w)[:, 2], crisis) for w in NGRAM_WEIGHTS}
        middle = NGRAM_WEIGHTS[len(NGRAM_WEIGHTS) // 2]
        best = max(areas, key=lambda w: (round(areas[w], 4), w == middle))
        chosen["ngram_weight" if part == "english" else "ngram_weight_other_language"] = best
        figures[part] = {"rows": len(rows), "weight": best, "area_under_curve": {
            f"{w:.1f}": round(a, 4) for w, a in [(0.0, _area_under_curve(minilm[:, 2], crisis)), *areas.items()]}}
    return chosen, figures


# The n-gram reader's weights that training chooses among (0.5: the two readers count the same).
NGRAM_WEIGHTS = (0.3, 0.5, 0.7)


def _area_under_curve(scores: np.ndarray, positive: np.ndarray) -> float:
    """The chance that a positive row scores above a negative one (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return 0.5
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


def _dev_rows(splits: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The development splits' rows, English apart from the other four languages."""
    english: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for split in splits:
        for row in read_jsonl(f"eval_{split}.jsonl"):
            (english if guess_language(row["text"]) == ENGLISH else other).append(row)
    return english, other


def choose_on_dev(folder: Path, splits: Sequence[str], thresholds: Thresholds) -> tuple[Thresholds, dict[str, Any]]:
    """The thresholds at which the whole screen (rules + this classifier, context and escalation included) does
    best on the development splits.

    Crisis: English messages choose the English threshold; messages in Spanish, German, French and Portuguese
    choose their own (`Thresholds.crisis_other_language`), because the English encoder scores them on another
    scale. With fewer than MIN_DEV_ROWS crises or ordinary messages in the other languages, they share the English
    threshold. Concern (then, with the crisis thresholds chosen): the share of concern messages raised to concern
    or higher, on the English rows, and on the other four languages' rows their own (with as few rows, the English
    one). Recall comes first: each threshold reaches the issue's target (RECALL_FLOOR), and among those that do it
    is the lowest that raises no more ordinary messages than the highest does, give or take FALSE_ALARM_TOLERANCE;
    where none does, the one with the best Youden's J (recall minus the share of ordinary messages raised; ties go
    to the higher threshold).

    Out of fold, the training rows' ordinary messages (each written to look as much like a crisis as possible) make
    any threshold look several times more alarming than an independent author's ordinary messages do, and a
    threshold chosen there alone misses a third of the crises an independent author writes. The development splits
    are by separate authors; the test splits (TEST_SPLITS) and the reserve (RESERVE_SPLITS) are never read here.
    """
    from core.safety.classifier import ClassifierLayer, RiskClassifier

    english, other = _dev_rows(splits)
    layer = ClassifierLayer(RiskClassifier(folder))

    def same(t: float) -> Thresholds:
        return replace(thresholds, crisis=t, crisis_with_intent=t, crisis_other_language=None,
                       concern_other_language=None)

    t_en, en_figures = _best_on(english, layer, same, CRISIS)
    chosen = same(t_en)
    figures: dict[str, Any] = {"splits": list(splits), "english": en_figures}
    if min(sum(row["level"] == level for row in other) for level in ("crisis", "none")) >= MIN_DEV_ROWS:
        t_other, other_figures = _best_on(other, layer, lambda t: replace(chosen, crisis_other_language=t), CRISIS)
        chosen = replace(chosen, crisis_other_language=t_other)
        figures["other_languages"] = other_figures
    t_concern, figures["concern"] = _best_on(english, layer, lambda t: replace(chosen, concern=t), CONCERN)
    chosen = replace(chosen, concern=t_concern)
    if min(sum(row["level"] == level for row in other) for level in ("concern", "none")) >= MIN_DEV_ROWS:
        t_other, figures["concern_other_languages"] = _best_on(
            other, layer, lambda t: replace(chosen, concern_other_language=t), CONCERN)
        chosen = replace(chosen, concern_other_language=t_other)
    doubt, doubt_other, figures["crisis_doubt"] = choose_crisis_doubt(english, other, layer)
    return replace(chosen, crisis_doubt=doubt, crisis_doubt_other_language=doubt_other), figures


# The crisis doubt is this share of the lowest crisis score among the development crises that the rules read from
# words alone: the classifier must be several times surer than it ever was about a real crisis before it doubts one.
DOUBT_MARGIN = 0.5
# With fewer such development crises than this, a language group uses the doubt of all of them together, and with
# fewer than this in all the classifier doubts no rule.
MIN_DOUBT_ROWS = 100


def choose_crisis_doubt(english: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]], layer: Any
                        ) -> tuple[float, float, dict[str, Any]]:
    """`Thresholds.crisis_doubt` for English and `crisis_doubt_other_language` for the other four languages:
    DOUBT_MARGIN times the lowest crisis score the classifier gives a development crisis (of that language group)
    whose crisis the rules read from words alone, rounded down to 0.01, so that no such crisis on the development
    splits would have been doubted, with room to spare. The English encoder scores the other languages on another
    scale, so each group has its own; a group with fewer than MIN_DOUBT_ROWS such crises takes the doubt of both
    groups together. The figures say what each doubt lowers there."""
    from core.safety.rules import default_rulebook

    rulebook = default_rulebook()
    parts = {name: [row for row in rows if rulebook.assess(row["text"]).crisis_from_words]
             for name, rows in (("english", english), ("other_languages", other))}
    texts = [row["text"] for rows in parts.values() for row in rows]
    scores = iter(layer.probabilities(texts)[:, 2] if texts else ())
    scored = {name: [(float(next(scores)), row) for row in rows] for name, rows in parts.items()}
    crisis_scores = {name: [p for p, row in pairs if row["level"] == "crisis"] for name, pairs in scored.items()}

    def doubt_for(crises: list[float]) -> float | None:
        return math.floor(DOUBT_MARGIN * min(crises) * 100) / 100 if len(crises) >= MIN_DOUBT_ROWS else None

    pooled = doubt_for([p for crises in crisis_scores.values() for p in crises]) or 0.0
    chosen = {name: (doubt if (doubt := doubt_for(crises)) is not None else pooled)
              for name, crises in crisis_scores.items()}
    figures: dict[str, Any] = {}
    for name, pairs in scored.items():
        crises = crisis_scores[name]
        doubted = Counter(row["level"] for p, row in pairs if p < chosen[name])
        figures[name] = {"crises_read_from_words": len(crises),
                         "lowest_crisis_score": round(min(crises), 4) if crises else None,
                         "crisis_doubt": chosen[name],
                         "doubted": {level.value: doubted[level.value] for level in LEVELS}}
    return chosen["english"], chosen["other_languages"], figures


# The fewest crisis and ordinary development rows in the other four languages that choose their own threshold.
MIN_DEV_ROWS = 40
# Recall first: the highest threshold whose recall on the development rows reaches the target is taken;
# only where none reaches it does Youden's J choose. (J alone picked English 0.53 on the 2026-12-04 model, where
# one development crisis more is caught at 0.30; on the unseen sets that model then missed 11-13% of crises.)
RECALL_FLOOR = {"crisis": 0.98, "concern": 0.90}
# How much more of the ordinary messages a threshold below the highest one reaching the floor may raise, for the
# recall it adds (one percentage point). On the 2026-12-04 model the English concern curve is flat from 0.60 to
# 0.90 (17.3-18.3% of ordinary messages raised either way) while its recall falls from 0.966 to 0.865; the highest
# threshold reaching 0.90 (0.86) then gave 0.845 and 0.913 on two sets by fresh authors.
FALSE_ALARM_TOLERANCE = 0.01
# What a threshold is chosen for: (the gold level whose recall counts, the predicted levels that count as raised).
CRISIS = ("crisis", ("crisis",))
CONCERN = ("concern", ("concern", "crisis"))


def _best_on(rows: Sequence[dict[str, Any]], layer: Any, make: Callable[[float], Thresholds],
             target: tuple[str, tuple[str, ...]]) -> tuple[float, dict[str, Any]]:
    """The threshold t for the screen deciding with `make(t)` on `rows`, and its figures. Recall is the share of
    `target`'s gold level raised to one of its levels: of the thresholds whose recall reaches RECALL_FLOOR, the
    lowest that raises no more than FALSE_ALARM_TOLERANCE more ordinary messages than the highest of them; where
    none reaches it, the one with the best Youden's J (recall minus the share of ordinary messages raised)."""
    from core.safety.assess import SafetyScreen
    from core.safety.cli import confusion

    gold_level, raised = target
    grid = [round(float(x), 2) for x in np.arange(0.10, 0.96, 0.01)]  # an average of seeds scores less extremely
    table: dict[float, tuple[float, float]] = {}
    for t in grid:
        counts = confusion(rows, SafetyScreen(semantic=layer.with_thresholds(make(t))))  # (gold, predicted) -> n
        gold = {level: sum(n for (g, _), n in counts.items() if g == level) for level in (gold_level, "none")}
        table[t] = (sum(counts[(gold_level, p)] for p in raised) / gold[gold_level],
                    sum(counts[("none", p)] for p in raised) / gold["none"])
    floor = RECALL_FLOOR[gold_level]
    reaching = [t for t in grid if table[t][0] >= floor]
    if reaching:
        # The highest threshold that reaches the floor sits on its edge, and a fresh set falls below it. Where the
        # false alarms barely move under it, a lower threshold buys recall for nothing: take the lowest one whose
        # false alarms are within FALSE_ALARM_TOLERANCE of the highest's.
        top = max(reaching)
        chosen = min(t for t in reaching if table[t][1] <= table[top][1] + FALSE_ALARM_TOLERANCE)
    else:
        top = chosen = max(grid, key=lambda t: (round(table[t][0] - table[t][1], 6), t))
    name = "crisis" if gold_level == "crisis" else "concern_or_higher"
    figures = {"rows": len(rows), f"{name}_threshold": float(chosen), f"{name}_recall": round(table[chosen][0], 4),
               f"false_{name}": round(table[chosen][1], 4), "highest_reaching_floor": float(top),
               "false_at_highest": round(table[top][1], 4),
               "curve": {f"{t:.2f}": [round(r, 3), round(f, 3)] for t, (r, f) in table.items()
                         if round(t * 100) % 5 == 0}}
    return chosen, figures


def _config(settings: dict[str, Any], thresholds: Thresholds, digest: str,
            weights: dict[str, float] | None = None) -> ClassifierConfig:
    return ClassifierConfig(layers=settings["layers"], rank=settings["rank"], alpha=settings["alpha"],
                            targets=TARGETS, max_tokens=settings["max_tokens"], thresholds=thresholds,
                            trained_on=digest, **(weights or {}))


def ngram_reader(rows: Sequence[dict[str, Any]]) -> NgramReader:
    """The character n-gram reader trained on `rows` (seconds)."""
    return fit_ngrams([row["text"] for row in rows], [LEVELS.index(RiskLevel(row["level"])) for row in rows])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="haven safety train", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dest", type=Path, default=default_classifier_dir())
    parser.add_argument("--layers", type=int, default=6, help="MiniLM layers kept (1-6)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=2, help="final models, one per seed, averaged into one")
    parser.add_argument("--folds", type=int, default=0,
                        help="out-of-fold runs for figures, and for the thresholds without --dev-splits")
    parser.add_argument("--max-false-crisis", type=float, default=0.02,
                        help="the issue's limit on false crisis alarms, applied out of fold to the classifier alone")
    parser.add_argument("--max-false-concern", type=float, default=0.15)
    parser.add_argument("--save-out-of-fold", type=Path, help="also write the out-of-fold probabilities (.npy)")
    parser.add_argument("--folds-only", action="store_true", help="stop after the thresholds; write nothing")
    parser.add_argument("--dev-splits", default=",".join(DEVELOPMENT_SPLITS),
                        help="choose the n-gram weights and the thresholds on these splits (comma-separated) "
                             "('' to skip)")
    parser.add_argument("--crisis-threshold", type=float, default=0.8, help="with --folds 0 and no --dev-splits")
    parser.add_argument("--concern-threshold", type=float, default=0.6, help="with --folds 0 and no --dev-splits")
    parser.add_argument("--ngram-weight", type=float, default=0.5,
                        help="the n-gram reader's weight for English without --dev-splits (0: MiniLM alone)")
    parser.add_argument("--ngram-weight-other-language", type=float, default=0.5,
                        help="the same for Spanish, German, French and Portuguese")
    args = parser.parse_args(argv)
    if not 1 <= args.layers <= 6:
        parser.error("--layers must be between 1 and 6")
    import tempfile

    settings = {"layers": args.layers, "rank": args.rank, "alpha": args.alpha, "epochs": args.epochs,
                "learning_rate": args.learning_rate, "max_tokens": args.max_tokens, "seed": args.seed}
    weights = {"ngram_weight": args.ngram_weight, "ngram_weight_other_language": args.ngram_weight_other_language}
    rows = training_rows()
    print(f"training rows: {len(rows)} (" + ", ".join(
        f"{level.value} {sum(r['level'] == level.value for r in rows)}" for level in LEVELS) + ")")
    started = time.monotonic()
    figures: dict[str, Any] = {"rows": len(rows), **settings, "seeds": args.seeds}
    if args.folds >= 2:
        with tempfile.TemporaryDirectory() as scratch:
            probs = out_of_fold(rows, args.folds, settings, Path(scratch), weights)
        if args.save_out_of_fold:
            np.save(args.save_out_of_fold, probs)
        thresholds, oof = choose_thresholds(rows, probs, max_false_crisis=args.max_false_crisis,
                                            max_false_concern=args.max_false_concern)
        figures["out_of_fold"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in oof.items()}
        print(f"thresholds: crisis={thresholds.crisis} concern={thresholds.concern}")
        print("out of fold (classifier alone): "
              + " ".join(f"{k}={v:.3f}" for k, v in oof.items() if isinstance(v, float)))
    else:
        thresholds = Thresholds(crisis=args.crisis_threshold, concern=args.concern_threshold,
                                crisis_with_intent=args.crisis_threshold)
    if args.folds_only:
        return 0
    tensors = soup([train_model(rows, progress=f"final model, seed {seed + 1}/{args.seeds}",
                                **{**settings, "seed": args.seed + seed}) for seed in range(args.seeds)])
    ngrams = ngram_reader(rows)
    digest = rows_digest(rows)
    save(args.dest, tensors, _config(settings, thresholds, digest, weights), figures, ngrams)
    dev_splits = [split for split in args.dev_splits.split(",") if split]
    if dev_splits:
        weights, figures["ngram_weights"] = choose_ngram_weights(args.dest, dev_splits)
        print("n-gram reader's weight: " + ", ".join(f"{k} {v}" for k, v in weights.items()))
        save(args.dest, tensors, _config(settings, thresholds, digest, weights), figures)
        thresholds, figures["development"] = choose_on_dev(args.dest, dev_splits, thresholds)
        for part, dev in figures["development"].items():
            name = next((key.removesuffix("_threshold") for key in dev if key.endswith("_threshold")), None) \
                if isinstance(dev, dict) else None
            if name is not None:
                print(f"{name.replace('_', ' ')} threshold, {part.replace('_', ' ')} ({dev['rows']} rows of "
                      f"{args.dev_splits}): {dev[f'{name}_threshold']} (recall {dev[f'{name}_recall']:.3f}, "
                      f"false alarms {dev[f'false_{name}']:.3f})")
        print(f"crisis doubt: English {thresholds.crisis_doubt}, other languages "
              f"{thresholds.crisis_doubt_other_language}")
        save(args.dest, tensors, _config(settings, thresholds, digest, weights), figures)
    print(f"wrote {args.dest} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
