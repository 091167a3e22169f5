"""Every setting Haven reads, in one pydantic-settings model built once at start-up.

Values come from the environment or a `.env` file; `.env.example` documents each one. Nothing else in Haven
reads `os.environ`. A wrong value stops start-up with one line that names the setting (see `load_settings`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "haven"


def _env(name: str) -> Any:
    return Field(validation_alias=AliasChoices(name))


class Settings(BaseSettings):
    """Haven's configuration. Field docs are mirrored, with examples, in `.env.example`."""

    model_config = SettingsConfigDict(
        env_prefix="HAVEN_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # Where Haven keeps its embedded Redis data, the converted bundled model and logs.
    data_dir: Path = Field(default_factory=_default_data_dir)
    # Unset: Haven starts its own embedded Redis under data_dir. Set: redis://, rediss:// or unix:// URL.
    redis_url: Annotated[str | None, _env("REDIS_URL")] = None

    # Where replies come from: local (transformers in this process), openai (an OpenAI-compatible server such as
    # vLLM, llama.cpp's llama-server or Ollama), or llamacpp (llama-cpp-python in this process on a GGUF file).
    engine: Literal["local", "openai", "llamacpp"] = "local"
    # local: how many conversations are generated together.
    batch_size: int = Field(default=8, gt=0, le=256)
    # openai: the server's base URL (e.g. http://localhost:8000/v1), the model or LoRA name it serves, its key.
    openai_base_url: str | None = None
    openai_model: str = "haven"
    openai_api_key: SecretStr | None = None
    # openai: Gemma's template has no system role; set false to fold the guidance into the first user turn.
    openai_system_role: bool = True
    engine_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    engine_first_token_timeout_seconds: float = Field(default=30.0, gt=0)
    engine_max_retries: int = Field(default=2, ge=0, le=10)
    # llamacpp: the GGUF file (unset: the bundled model's), CPU threads (unset: all) and context length.
    gguf_path: Path | None = None
    llamacpp_threads: int | None = Field(default=None, gt=0)
    llamacpp_context_tokens: int = Field(default=4096, gt=0)

    # Model: unset → the bundled SmolLM2-135M-Instruct; otherwise a hub id or a local folder.
    model: str | None = None
    # Optional LoRA adapter folder (from `haven export`) applied on top of the model.
    adapter: Path | None = None
    # With HAVEN_MODEL unset and no HAVEN_ADAPTER, the bundled model answers with the adapter Haven trained for
    # it (training/adapters/haven-smollm2-135m); false talks to the untuned base.
    bundled_adapter: bool = True
    load_in_4bit: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_new_tokens: int = Field(default=200, gt=0, le=4096)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    reply_timeout_seconds: float = Field(default=120.0, gt=0)

    # Memory: false keeps no conversations at all (nobody is asked; every user counts as having said no).
    remember_conversations: bool = True
    # How much of a conversation Haven keeps and for how long after the last message.
    history_max_turns: int = Field(default=12, gt=0, le=200)
    history_max_tokens: int = Field(default=1200, gt=0)
    history_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)

    # Safety
    default_country: str | None = Field(default=None, min_length=2, max_length=2)

    # Platforms: a bot starts only when its token is set.
    telegram_bot_token: Annotated[SecretStr | None, _env("TELEGRAM_BOT_TOKEN")] = None
    # polling: one process asks Telegram for updates. webhook: Telegram posts updates to several workers.
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_url: str | None = None  # the public https URL Telegram posts to (webhook mode)
    telegram_webhook_secret: SecretStr | None = None  # checked on every webhook request
    telegram_listen_host: str = "127.0.0.1"
    telegram_listen_port: int = Field(default=8443, gt=0, lt=65536)
    # Webhook mode: several workers on one host share the port (SO_REUSEPORT); off: one port per worker.
    telegram_reuse_port: bool = False
    # Webhook mode: register the webhook at start (only the first of workers starting together does).
    telegram_set_webhook: bool = True
    # Outgoing messages, shared by every worker through Redis: per bot, per private chat (sustained, with a
    # burst of three), per group.
    telegram_messages_per_second: float = Field(default=30.0, gt=0)
    telegram_chat_messages_per_second: float = Field(default=1.0, gt=0)
    telegram_group_messages_per_minute: int = Field(default=20, gt=0)
    # Only for a local Bot API server or tests; normally Telegram's own.
    telegram_base_url: str = "https://api.telegram.org/bot"
    discord_bot_token: Annotated[SecretStr | None, _env("DISCORD_BOT_TOKEN")] = None
    # Publish the slash commands to Discord at every start (turn off for deployments that restart often).
    discord_sync_commands: bool = True

    # Check-ins: how often the scheduler looks for due check-ins, when a missed one is skipped instead of sent
    # late, and the delivery rate (Telegram allows about 30 messages a second overall, one a second per chat).
    checkin_tick_seconds: float = Field(default=30.0, gt=0)
    checkin_lock_ttl_seconds: float = Field(default=90.0, gt=0)
    checkin_grace_seconds: float = Field(default=1800.0, ge=0)
    checkin_rate_per_second: float = Field(default=25.0, gt=0, le=30)
    checkin_per_chat_interval_seconds: float = Field(default=1.0, ge=0)

    # Admins by platform id, e.g. "telegram:12345,discord:67890". They may configure check-ins.
    admin_ids: str = ""
    # Tell admins (no message text) when a crisis reply was sent. Off by default.
    crisis_alerts: bool = False

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parsed = urlparse(value)
        if parsed.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must start with redis://, rediss:// or unix://")
        if parsed.scheme != "unix" and not parsed.hostname:
            raise ValueError("has no host (expected e.g. redis://localhost:6379/0)")
        if parsed.scheme == "unix" and not parsed.path:
            raise ValueError("has no socket path (expected e.g. unix:///run/redis.sock)")
        try:
            parsed.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        path = Path(value).expanduser()
        if path.exists():
            if not (path / "config.json").exists() and not any(path.glob("*.gguf")):
                raise ValueError(f"{path} has no config.json: not a model folder")
            return str(path)
        if value.startswith(("/", ".", "~")) or not _HUB_ID.match(value):
            raise ValueError(f"no model folder at {path} (and it is not a hub id like google/gemma-2-2b-it)")
        return value

    @field_validator("adapter")
    @classmethod
    def _check_adapter(cls, value: Path | None) -> Path | None:
        if value is None or str(value) == "":
            return None
        value = value.expanduser()
        if not (value / "adapter_config.json").exists():
            raise ValueError(f"no LoRA adapter at {value} (expected adapter_config.json there)")
        return value

    @field_validator("openai_base_url")
    @classmethod
    def _check_openai_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value or None

    @field_validator("gguf_path")
    @classmethod
    def _check_gguf(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"no GGUF file at {value}")
        return value.expanduser() if value is not None else None

    @field_validator("default_country")
    @classmethod
    def _upper_country(cls, value: str | None) -> str | None:
        return value.upper() if value else None

    @field_validator("admin_ids")
    @classmethod
    def _check_admins(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            platform, _, user_id = item.partition(":")
            if platform not in {"telegram", "discord", "console"} or not user_id:
                raise ValueError(f"{item!r} is not platform:id (e.g. telegram:12345)")
        return value

    @property
    def admins(self) -> frozenset[tuple[str, str]]:
        pairs = (item.strip().partition(":") for item in self.admin_ids.split(",") if item.strip())
        return frozenset((platform, user_id) for platform, _, user_id in pairs)

    @property
    def platforms_configured(self) -> list[str]:
        return [name for name, token in (("telegram", self.telegram_bot_token),
                                         ("discord", self.discord_bot_token)) if token]


def env_name(field: str) -> str:
    """The environment variable that sets `field`."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"HAVEN_{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once; a wrong value raises ConfigError with one line per problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = env_name(field) if field in Settings.model_fields else field
            message = error["msg"].removeprefix("Value error, ")
            secret = "token" in field or "key" in field or "secret" in field
            shown = "" if secret or not isinstance(error.get("input"), str | int | float) else (
                f" (got {error['input']!r})")
            problems.append(f"{name}: {message}{shown}")
        raise ConfigError("; ".join(problems)) from None
