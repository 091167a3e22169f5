"""One default screen (rules + the trained classifier) for the whole safety test session: the model loads once."""

from __future__ import annotations

import pytest

from core.safety import SafetyScreen


@pytest.fixture(scope="session")
def full_screen() -> SafetyScreen:
    """The default screen: rules + the trained classifier (core/safety/data/classifier)."""
    screen = SafetyScreen()
    screen.warm_up()
    return screen
