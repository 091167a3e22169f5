"""One embedder and one screen of each kind for the whole safety test session: MiniLM loads once per encoder."""

from __future__ import annotations

import pytest

from core.safety import SafetyScreen
from core.safety.semantic import Embedder, SemanticLayer


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    shared = Embedder()
    shared.load()
    return shared


@pytest.fixture(scope="session")
def full_screen() -> SafetyScreen:
    """The default screen: rules + the semantic layer on the static-token encoder (builds its token table once per
    machine, under a minute on 2 cores, then reads it from core/safety/data/cache)."""
    screen = SafetyScreen()
    screen.warm_up()
    return screen


@pytest.fixture(scope="session")
def minilm_screen(embedder: Embedder) -> SafetyScreen:
    """Rules + the semantic layer on the contextual MiniLM encoder."""
    screen = SafetyScreen(semantic=SemanticLayer(embedder))
    screen.warm_up()
    return screen
