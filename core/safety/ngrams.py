"""The safety classifier's second reader: a linear model on the character n-grams of a message.

The fine-tuned MiniLM reads English well and Spanish, German, French and Portuguese poorly: it was trained on
English and sees those languages as broken word pieces. Character n-grams ("dorm", "ormi", "rmir") carry a word's
stem in any of the five languages, misspelt or not. On the development sets the two readers together did better
than either alone, most in the other four languages (area under the crisis curve 0.86 with MiniLM alone, 0.95 with
this reader alone, 0.96 together); `RiskClassifier` combines their level probabilities as a weighted geometric mean.

Features: every 2- to 5-character slice of the normalised text (`core.safety.text.normalize`: lower case, accents
and apostrophes dropped, disguised letters undone), hashed into BUCKETS buckets, counted sublinearly (1 + log n),
weighted by inverse document frequency and scaled to unit length. Scoring is a few numpy operations (tens of
microseconds); training (`fit`, called by `haven safety train`) is a multinomial logistic regression in
scikit-learn. Deterministic: the same text always gets the same probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.safety.text import normalize

BITS = 18
BUCKETS = 1 << BITS
SIZES = (2, 3, 4, 5)
FILE_NAME = "ngrams.npz"
_MIX = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit constant: spreads nearby hashes across the buckets


def slices(text: str) -> np.ndarray:
    """The buckets of every 2- to 5-character slice of the normalised text (one entry per slice, repeats kept)."""
    codes = np.frombuffer(normalize(text).encode("ascii", "ignore"), dtype=np.uint8).astype(np.uint64)
    buckets = []
    for size in SIZES:
        if len(codes) < size:
            break
        # A polynomial hash of each slice, seeded by its size so "ab" and " ab" never share a hash by construction.
        h = np.full(len(codes) - size + 1, size, dtype=np.uint64)
        for k in range(size):
            h = h * np.uint64(257) + codes[k : len(codes) - size + 1 + k]
        buckets.append((h * _MIX) >> np.uint64(64 - BITS))
    return np.concatenate(buckets) if buckets else np.zeros(0, dtype=np.uint64)


def counts(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(buckets, sublinear counts) of the text's slices, buckets ascending."""
    buckets, n = np.unique(slices(text), return_counts=True)
    return buckets.astype(np.int64), 1.0 + np.log(n)


@dataclass(frozen=True)
class NgramReader:
    """Level probabilities (none, concern, crisis) from character n-grams: `weight` (3, BUCKETS) and `bias` (3,)
    of the logistic regression, and the inverse document frequency of each bucket."""

    weight: np.ndarray
    bias: np.ndarray
    idf: np.ndarray

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return self.weighted(*counts(text))

    def weighted(self, buckets: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counted slices (`counts`) as the unit-length tf-idf vector the model reads."""
        values = values * self.idf[buckets]
        norm = float(np.sqrt(values @ values))
        return buckets, (values / norm if norm else values)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Rows of (p_none, p_concern, p_crisis), one per text."""
        logits = np.tile(self.bias, (len(texts), 1)).astype(np.float64)
        for row, text in enumerate(texts):
            buckets, values = self.features(text)
            logits[row] += self.weight[:, buckets] @ values
        return softmax(logits)

    def save(self, folder: Path) -> None:
        np.savez_compressed(folder / FILE_NAME, weight=self.weight.astype(np.float32),
                            bias=self.bias.astype(np.float32), idf=self.idf.astype(np.float32))

    @classmethod
    def load(cls, folder: Path) -> NgramReader:
        with np.load(folder / FILE_NAME) as saved:
            return cls(weight=saved["weight"], bias=saved["bias"], idf=saved["idf"])


def fit(texts: Sequence[str], levels: Sequence[int], *, c: float = 4.0) -> NgramReader:
    """Train the reader: multinomial logistic regression (inverse regularisation `c`, classes balanced) on the
    unit-length tf-idf vectors of `texts`, whose level indices (0 none, 1 concern, 2 crisis) are `levels`."""
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    rows = [counts(text) for text in texts]
    document_frequency = np.zeros(BUCKETS)
    for buckets, _ in rows:
        document_frequency[buckets] += 1
    idf = np.log((1 + len(texts)) / (1 + document_frequency)) + 1.0  # smoothed, as in the usual tf-idf
    reader = NgramReader(weight=np.zeros((3, BUCKETS)), bias=np.zeros(3), idf=idf)
    data, indices, pointers = [], [], [0]
    for counted in rows:
        buckets, values = reader.weighted(*counted)
        data.append(values)
        indices.append(buckets)
        pointers.append(pointers[-1] + len(buckets))
    matrix = csr_matrix((np.concatenate(data), np.concatenate(indices), pointers), shape=(len(texts), BUCKETS))
    model: Any = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    model.fit(matrix, np.asarray(levels))
    if list(model.classes_) != [0, 1, 2]:
        raise ValueError("the n-gram reader needs rows of all three levels")
    return NgramReader(weight=model.coef_.astype(np.float32), bias=model.intercept_.astype(np.float32),
                       idf=idf.astype(np.float32))


def combine(minilm: np.ndarray, ngrams: np.ndarray, weight: float) -> np.ndarray:
    """The two readers' level probabilities as one: their geometric mean, `weight` on the n-gram reader's,
    renormalised per row. With weight 0 it is MiniLM's alone."""
    if weight <= 0.0:
        return minilm
    return softmax((1.0 - weight) * np.log(np.clip(minilm, 1e-9, 1.0)) + weight * np.log(np.clip(ngrams, 1e-9, 1.0)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Each row of `logits` as probabilities (shifted by its maximum first, so no exponential overflows)."""
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)
