"""Haven's fixed lines (welcome, confirmations, fallbacks), loaded from `core/data/texts.yaml`."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def load_yaml_mapping(package: str, path: str) -> dict[str, Any]:
    """A YAML data file shipped inside `package`, parsed once. Every one of Haven's text files is a mapping that
    carries the date it was last reviewed."""
    raw = resources.files(package).joinpath(path).read_text(encoding="utf-8")
    data = yaml.safe_load(raw)
    if not isinstance(data, dict) or "reviewed" not in data:
        raise ValueError(f"{package.replace('.', '/')}/{path} must be a mapping with a reviewed date")
    return data


def load_data_file(name: str) -> dict[str, Any]:
    """A YAML file from core/data."""
    return load_yaml_mapping("core.data", name)


def text(key: str, **values: str) -> str:
    """One fixed line, with `{placeholders}` filled in."""
    line = load_data_file("texts.yaml")[key]
    return str(line).format(**values) if values else str(line)
