"""The safety screen's trained classifier: the bundled all-MiniLM-L6-v2, fine-tuned with LoRA on Haven's labelled
rows, with a three-way level head (none / concern / crisis) and a category head.

Rules name the phrasings we know; this model reads the ones no rule names ("ive paid off my debts and left the
cat with my sister"). It is trained by `haven safety train` (core/safety/train.py) on the exemplars and the
training rows, never on an evaluation split, and shipped as a small file of LoRA and head weights
(`data/classifier/`): at load time the LoRA deltas are merged into the bundled MiniLM, so scoring a message is one
forward pass of a plain BERT encoder (int8 dynamic quantisation, traced with TorchScript, one intra-op thread) and
two small matrix products. A second reader, a linear model on character n-grams (`core/safety/ngrams.py`, shipped
beside the weights), reads the same text; the level probabilities are the two readers' weighted geometric mean,
with a weight for English and one for the other four languages that training chose on the development sets.
Deterministic: the same text always gets the same probabilities.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from core.safety.language import ENGLISH, guess_language
from core.safety.ngrams import NgramReader, combine, softmax
from core.safety.risk import RiskCategory, RiskLevel
from core.safety.semantic import LEVELS, SemanticVerdict, Thresholds, bundled_model_path, decide

log = logging.getLogger(__name__)

CATEGORIES = tuple(RiskCategory)
# Pooled embeddings are unit length; the heads read them scaled, as they were trained (cosine-style logits).
LOGIT_SCALE = 20.0
# A category is named when its head says at least this; otherwise the single likeliest one is.
CATEGORY_THRESHOLD = 0.5


def default_classifier_dir() -> Path:
    """Where Haven's trained classifier lives (`core/safety/data/classifier`)."""
    return Path(str(resources.files("core.safety").joinpath("data"))) / "classifier"


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    """What the weights file was trained as; written next to the weights by `haven safety train`."""

    layers: int  # how many of MiniLM's six layers the classifier keeps (fewer: faster, a little less accurate)
    rank: int
    alpha: float
    targets: tuple[str, ...]  # the Linear layers LoRA adapted, by their last name ("query", "dense", ...)
    max_tokens: int
    thresholds: Thresholds
    trained_on: str  # a digest of the training rows, so a stale file is visible
    # How much the character n-gram reader (core/safety/ngrams.py) counts against MiniLM, for English messages and
    # for the other four languages; 0: MiniLM alone (and no n-gram file is needed).
    ngram_weight: float = 0.0
    ngram_weight_other_language: float = 0.0

    @classmethod
    def read(cls, folder: Path) -> ClassifierConfig:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return cls(
            layers=int(raw["layers"]), rank=int(raw["rank"]), alpha=float(raw["alpha"]),
            targets=tuple(raw["targets"]), max_tokens=int(raw["max_tokens"]),
            thresholds=Thresholds(**raw["thresholds"]), trained_on=str(raw["trained_on"]),
            ngram_weight=float(raw.get("ngram_weight", 0.0)),
            ngram_weight_other_language=float(raw.get("ngram_weight_other_language", 0.0)),
        )

    def ngram_weight_for(self, language: str) -> float:
        return self.ngram_weight if language == ENGLISH else self.ngram_weight_other_language


def rows_digest(rows: Sequence[dict[str, Any]]) -> str:
    """A short digest of labelled rows (text, level, categories): what a trained file was trained on."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([row["text"], row["level"], sorted(row.get("categories", []))]).encode())
    return h.hexdigest()[:16]


def encoder_from_bundled(layers: int, model_path: Path | None = None) -> Any:
    """The bundled MiniLM as a transformers BertModel, keeping its first `layers` layers (local files only)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_path or bundled_model_path()), local_files_only=True)
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    return model


def traced_encoder(model: Any, tokenizer: Any) -> Any:
    """`model` as a function of (input_ids, attention_mask) to the last hidden state, traced with TorchScript: the
    same numbers without transformers' Python between the layers, which is most of the time for one short message
    (an encode took 5.4 ms eager and 3.1 ms traced, median over the `independent` texts). The trace is checked
    against the model on texts of other lengths and batch sizes; if tracing fails or differs, the model itself runs.
    """
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    eager = LastHidden().eval()
    sample = tokenizer(["a short text to trace with"], return_tensors="pt")
    checks = [tokenizer(texts, padding=True, return_tensors="pt") for texts in (
        ["ok"], ["a longer text than the traced one, to check that its length was not fixed in the trace"],
        ["two texts of different lengths", "so that the shorter one is padded in the batch"])]
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about Python values in transformers' own code
            traced = torch.jit.trace(eager, (sample["input_ids"], sample["attention_mask"]), check_trace=False)
            for batch in checks:
                args = (batch["input_ids"], batch["attention_mask"])
                if not torch.allclose(traced(*args), eager(*args), atol=1e-4):
                    raise ValueError("the traced encoder differs from the model")
    except Exception:
        log.warning("could not trace the safety encoder; running it untraced (slower)", exc_info=True)
        return eager
    return traced


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Mean of the token vectors under the attention mask, unit length: the sentence embedding both heads read."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


class RiskClassifier:
    """Loads the trained file and scores texts: (p_none, p_concern, p_crisis) and per-category probabilities."""

    def __init__(self, folder: Path | None = None, *, model_path: Path | None = None, threads: int | None = 1,
                 quantize: bool = True) -> None:
        self._folder = folder or default_classifier_dir()
        self._model_path = model_path
        self._threads = threads
        self._quantize = quantize
        self._lock = threading.RLock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._level_head: tuple[np.ndarray, np.ndarray] | None = None
        self._category_head: tuple[np.ndarray, np.ndarray] | None = None
        self._ngrams: NgramReader | None = None
        self.config = ClassifierConfig.read(self._folder)

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import torch
            from safetensors.torch import load_file
            from transformers import AutoTokenizer

            weights = load_file(str(self._folder / "weights.safetensors"))
            model = encoder_from_bundled(self.config.layers, self._model_path)
            merge_lora(model, weights, self.config)
            model.eval()
            if self._quantize:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.ao's deprecation notices; the API still works
                    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            self._level_head, self._category_head = (
                (weights[f"{head}.weight"].float().numpy(), weights[f"{head}.bias"].float().numpy())
                for head in ("level_head", "category_head")
            )
            if max(self.config.ngram_weight, self.config.ngram_weight_other_language) > 0:
                self._ngrams = NgramReader.load(self._folder)
            self._tokenizer = AutoTokenizer.from_pretrained(str(self._model_path or bundled_model_path()),
                                                            local_files_only=True)
            with _torch_threads(self._threads):
                self._model = traced_encoder(model, self._tokenizer)

    def windows(self, text: str) -> list[str]:
        """The text itself, or for a text longer than `max_tokens` its first and last `max_tokens` tokens as two
        texts: a crisis said at the end of a long story must not be cut off (the rules read the whole text)."""
        if len(text) < self.config.max_tokens * 2:  # a word piece is at least one character: surely short enough
            return [text]
        self.load()
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        room = self.config.max_tokens - 2
        if len(ids) <= room:
            return [text]
        return [self._tokenizer.decode(ids[:room]), self._tokenizer.decode(ids[-room:])]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length sentence embeddings from the fine-tuned encoder (the first `max_tokens` tokens of each).

        Each text goes through the encoder alone. The int8 encoder quantizes each Linear layer's input with one scale
        for the whole batch, padding included, so a text scored in a batch scored up to 0.04 crisis apart from the
        same text alone: a conversation's earlier messages, and the development texts `choose_crisis_doubt` scores,
        got other scores than the screen gives each message. Alone, a text's scores depend on nothing else."""
        self.load()
        import torch

        vectors = []
        with self._lock, torch.inference_mode(), _torch_threads(self._threads):
            for text in texts:
                encoded = self._tokenizer([text], truncation=True, max_length=self.config.max_tokens,
                                          return_tensors="pt")
                hidden = self._model(encoded["input_ids"], encoded["attention_mask"])
                vectors.append(mean_pool(hidden, encoded["attention_mask"]).numpy().astype(np.float32))
        if not vectors:
            assert self._level_head is not None
            return np.zeros((0, self._level_head[0].shape[1]), dtype=np.float32)
        return np.concatenate(vectors)

    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Level probabilities (n, 3) and category probabilities (n, 7) for each text: MiniLM's levels combined
        with the n-gram reader's at the weight for the text's language, and MiniLM's categories."""
        levels, ngram_levels, categories = self.reader_scores(texts)
        if ngram_levels is not None:
            for row, text in enumerate(texts):
                weight = self.config.ngram_weight_for(guess_language(text))
                levels[row] = combine(levels[row : row + 1], ngram_levels[row : row + 1], weight)[0]
        return levels, categories

    def reader_scores(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Each reader's level probabilities apart (MiniLM's, the n-gram reader's or None when the config gives it
        no weight) and MiniLM's category probabilities: what `scores` combines, and what training weighs."""
        vectors = self.embed(texts)
        assert self._level_head is not None and self._category_head is not None
        levels = softmax(_linear(vectors, *self._level_head) * LOGIT_SCALE)
        ngram_levels = None if self._ngrams is None else self._ngrams.probabilities(texts)
        categories = 1.0 / (1.0 + np.exp(-_linear(vectors, *self._category_head) * LOGIT_SCALE))
        return levels, ngram_levels, categories


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    # einsum's own loop, not BLAS: for one message OpenBLAS would start its thread pool, and on a busy 2-core box
    # those threads spin against everything else (measured: 18 ms per call instead of under 2 ms).
    return np.einsum("ij,kj->ik", x, weight, optimize=False) + bias


def merge_lora(model: Any, weights: dict[str, Any], config: ClassifierConfig) -> None:
    """Add each LoRA pair's update (alpha / rank * B @ A) into the Linear layer it adapted."""
    import torch

    scale = config.alpha / config.rank
    modules = dict(model.named_modules())
    merged = 0
    with torch.no_grad():
        for key, lora_a in weights.items():
            if not key.endswith(".lora_A"):
                continue
            name = key.removesuffix(".lora_A")
            lora_b = weights[f"{name}.lora_B"]
            modules[name].weight += scale * (lora_b.float() @ lora_a.float())
            merged += 1
    if merged == 0:
        raise ValueError("the classifier weights hold no LoRA pairs")


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block on `threads` intra-op threads (None: leave torch's setting). One thread for one short message:
    on a busy 2-core box two OpenMP threads spin against each other (measured: ~300 ms instead of ~25 ms)."""
    import torch

    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class ClassifierLayer:
    """The semantic layer of the screen on the trained classifier: one verdict per text.

    The level comes from the level head and the thresholds chosen at training time; the categories from the
    category head. Scores are remembered by a hash of the text (they never change), so the user's earlier messages,
    screened again as context with every new one, cost nothing; `with_thresholds` shares them.
    """

    def __init__(self, classifier: RiskClassifier | None = None, *, thresholds: Thresholds | None = None,
                 scores: OrderedDict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self._classifier = classifier
        self._thresholds = thresholds
        self._scores: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict() if scores is None else scores
        self._lock = threading.Lock()

    @property
    def classifier(self) -> RiskClassifier:
        if self._classifier is None:
            self._classifier = RiskClassifier()
        return self._classifier

    @property
    def thresholds(self) -> Thresholds:
        return self._thresholds or self.classifier.config.thresholds

    def with_thresholds(self, thresholds: Thresholds) -> ClassifierLayer:
        """The same classifier and remembered scores, deciding with other thresholds (for choosing them)."""
        return ClassifierLayer(self.classifier, thresholds=thresholds, scores=self._scores)

    def warm_up(self) -> None:
        self.classifier.load()

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Rows of (p_none, p_concern, p_crisis) for each text."""
        return np.stack([levels for levels, _ in self._scored(texts)])

    def classify(self, texts: Sequence[str]) -> list[SemanticVerdict]:
        return [self._verdict(levels, categories, self.thresholds.for_language(guess_language(text)))
                for text, (levels, categories) in zip(texts, self._scored(texts), strict=True)]

    def _scored(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        keys = [hashlib.blake2b(text.encode(), digest_size=16).hexdigest() for text in texts]
        with self._lock:
            known = {key: self._scores[key] for key in keys if key in self._scores}
        missing = list(dict.fromkeys(i for i, key in enumerate(keys) if key not in known))
        if missing:
            windows = [self.classifier.windows(texts[i]) for i in missing]
            levels, categories = self.classifier.scores([w for group in windows for w in group])
            with self._lock:
                row = 0
                for i, group in zip(missing, windows, strict=True):
                    span = range(row, row + len(group))
                    row += len(group)
                    riskiest = max(span, key=lambda j: (levels[j, 2], levels[j, 1] + levels[j, 2]))
                    known[keys[i]] = self._scores[keys[i]] = (levels[riskiest], categories[riskiest])
                while len(self._scores) > 4096:
                    self._scores.popitem(last=False)
        return [known[key] for key in keys]

    def _verdict(self, levels: np.ndarray, categories: np.ndarray, thresholds: Thresholds) -> SemanticVerdict:
        _, p_concern, p_crisis = (float(x) for x in levels)
        level = decide(p_concern, p_crisis, thresholds)
        named: frozenset[RiskCategory] = frozenset()
        reasons: tuple[str, ...] = ()
        if level is not RiskLevel.NONE:
            picked = [c for c, p in zip(CATEGORIES, categories, strict=True) if p >= CATEGORY_THRESHOLD]
            named = frozenset(picked or [CATEGORIES[int(np.argmax(categories))]])
            reasons = (f"semantic.{level.value}", "classifier")
        if_intent = level is RiskLevel.CONCERN and p_crisis >= thresholds.crisis_with_intent
        sure = level is RiskLevel.CRISIS and p_crisis >= thresholds.crisis_sure
        return SemanticVerdict(level, named, reasons, p_crisis, p_concern + p_crisis, if_intent, sure,
                               doubts_crisis=p_crisis < thresholds.crisis_doubt)


assert LEVELS == (RiskLevel.NONE, RiskLevel.CONCERN, RiskLevel.CRISIS)  # the level head's output order
