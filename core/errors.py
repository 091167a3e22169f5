"""Haven's errors, in one place.

    HavenError
    ├── ConfigError           a setting is missing or wrong; start-up stops with one clear line
    ├── StoreError            the context store (Redis) failed
    │   └── StoreUnavailable  Redis cannot be reached right now
    └── EngineError           the language model failed to answer
        ├── EngineUnavailable the model could not be loaded or reached
        └── EngineTimeout     no complete answer within the configured time

Raise the specific error; catch broadly only at an adapter's edge, where the user gets a kind line.
"""

from __future__ import annotations


class HavenError(Exception):
    """Base of every error Haven raises on purpose."""


class ConfigError(HavenError):
    """A setting is missing or invalid. The message names the setting and says what is wrong."""


class StoreError(HavenError):
    """The context store failed."""


class StoreUnavailable(StoreError):
    """Redis cannot be reached right now."""


class EngineError(HavenError):
    """The language model failed to answer."""


class EngineUnavailable(EngineError):
    """The model could not be loaded or reached."""


class EngineTimeout(EngineError):
    """The model did not finish its answer in time."""
