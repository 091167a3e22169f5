"""The classifier's character n-gram reader: its features, its training, its file, and how it is combined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.safety import ngrams
from core.safety.ngrams import BUCKETS, NgramReader, combine, counts, fit, slices

ROWS = [
    ("i want to die tonight, i have the pills ready", 2),
    ("ya no quiero vivir, esta noche lo hago", 2),
    ("ich will heute nacht sterben, alles ist vorbereitet", 2),
    ("nothing feels worth it lately and i feel like a burden", 1),
    ("je me sens inutile depuis des semaines", 1),
    ("i drink every night to stop thinking", 1),
    ("what a lovely sunny morning", 0),
    ("que dia tan bonito hace hoy", 0),
    ("this homework is killing me lol", 0),
]


def test_slices_are_every_two_to_five_characters_of_the_normalised_text() -> None:
    text = "Déjà vu"  # normalised to " deja vu " (9 characters)
    assert len(slices(text)) == 8 + 7 + 6 + 5
    assert (slices(text) < BUCKETS).all()
    np.testing.assert_array_equal(slices("deja vu"), slices(text))  # accents and case folded first
    assert len(slices("")) == 1  # "  ": only the one 2-character slice of the padding


def test_counts_are_sublinear_and_the_same_every_time() -> None:
    buckets, values = counts("ha ha ha ha")
    again = counts("ha ha ha ha")
    np.testing.assert_array_equal(buckets, again[0])
    assert (np.diff(buckets) > 0).all()  # ascending, each bucket once
    assert values.max() == pytest.approx(1 + np.log(4))  # " ha " appears four times: 1 + log 4, not 4


def test_a_fitted_reader_separates_its_rows_and_survives_a_save(tmp_path: Path) -> None:
    reader = fit([text for text, _ in ROWS], [level for _, level in ROWS])
    probs = reader.probabilities([text for text, _ in ROWS])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert (probs.argmax(axis=1) == [level for _, level in ROWS]).all()
    reader.save(tmp_path)
    loaded = NgramReader.load(tmp_path)
    text = ["esta noche lo hago"]
    np.testing.assert_allclose(loaded.probabilities(text), reader.probabilities(text), rtol=1e-5)
    assert (tmp_path / ngrams.FILE_NAME).stat().st_size < 8_000_000


def test_a_reader_needs_every_level() -> None:
    with pytest.raises(ValueError):
        fit(["hello", "lovely day", "i want to die"], [0, 0, 2])


def test_combining_is_a_weighted_geometric_mean_that_sums_to_one() -> None:
    minilm = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    other = np.array([[0.1, 0.1, 0.8], [0.1, 0.1, 0.8]])
    np.testing.assert_array_equal(combine(minilm, other, 0.0), minilm)  # weight 0: MiniLM alone
    np.testing.assert_allclose(combine(minilm, other, 1.0), other, rtol=1e-6)
    half = combine(minilm, other, 0.5)
    np.testing.assert_allclose(half.sum(axis=1), 1.0, rtol=1e-6)
    expected = np.sqrt(minilm[0] * other[0])
    np.testing.assert_allclose(half[0], expected / expected.sum(), rtol=1e-6)
    assert minilm[0, 2] < half[0, 2] < other[0, 2]  # in between the two readers
