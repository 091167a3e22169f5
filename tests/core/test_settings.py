"""Settings: every one documented, and a wrong one stops start-up with one clear line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings, env_name, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert {env_name(field) for field in Settings.model_fields} <= documented


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"history_max_turns": -3}, "HAVEN_HISTORY_MAX_TURNS: Input should be greater than 0 (got -3)"),
    ({"redis_url": "http://localhost:6379"}, "REDIS_URL: must start with redis://, rediss:// or unix://"),
    ({"redis_url": "redis://localhost:port/0"}, "REDIS_URL: has a port that is not a number"),
    ({"model": "./models/missing"}, "HAVEN_MODEL: no model folder at models/missing"),
    ({"admin_ids": "telegram"}, "HAVEN_ADMIN_IDS: 'telegram' is not platform:id"),
])
def test_a_bad_setting_names_itself(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**overrides)
    assert str(raised.value).startswith(expected)


def test_a_hub_id_is_accepted_and_tokens_stay_secret() -> None:
    settings = load_settings(model="google/gemma-2-2b-it", telegram_bot_token="123:abc")
    assert settings.model == "google/gemma-2-2b-it"
    assert "123:abc" not in repr(settings) and settings.platforms_configured == ["telegram"]


def test_the_cli_prints_one_line_and_no_traceback_for_a_bad_setting(tmp_path: Path) -> None:
    env = {**os.environ, "HAVEN_DATA_DIR": str(tmp_path), "HAVEN_MAX_NEW_TOKENS": "-1", "REDIS_URL": "localhost"}
    done = subprocess.run([sys.executable, "-m", "bots.cli", "chat"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "HAVEN_MAX_NEW_TOKENS" in done.stderr and "REDIS_URL" in done.stderr
