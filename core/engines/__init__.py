"""Language-model engines behind one streaming protocol."""

from core.engines.base import Engine, collect
from core.engines.factory import build_engine

__all__ = ["Engine", "build_engine", "collect"]
