"""One embedder and one full screen for the whole safety test session: MiniLM loads once (seconds on a busy box)."""

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
def full_screen(embedder: Embedder) -> SafetyScreen:
    screen = SafetyScreen(semantic=SemanticLayer(embedder))
    screen.warm_up()
    return screen
