"""The `haven` command: one entry point with a subcommand per job.

    haven chat                        talk to Haven in this terminal
    haven run                         start every bot whose token is set; the console chat when none is
    haven user export|forget          a user's data, for admins answering a request
    haven safety classify|eval|train  run the safety screen over JSON lines, evaluate it, or train its classifier
    haven checkins ...                check-in templates, campaigns and counts; `haven checkins scheduler`
    haven data prepare | train | eval | export    the training pipeline (training/README.md)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from core.errors import ConfigError, HavenError
from core.logs import configure_logging
from core.settings import Settings, load_settings


def _progress(step: str) -> None:
    print(f"… {step}", file=sys.stderr, flush=True)


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


async def _chat(settings: Settings, *, note: str | None = None) -> None:
    from bots.console import run_console
    from core.runtime import open_runtime

    if note:
        print(note, file=sys.stderr)
    async with open_runtime(settings, on_progress=_progress) as runtime:
        await run_console(runtime.manager, checkins=runtime.checkins, redis=runtime.redis,
                          admins=runtime.settings.admins)


async def _run(settings: Settings) -> None:
    from core.texts import text

    if not settings.platforms_configured:
        await _chat(settings, note=text("connect_platforms"))
        return
    from core.checkins.config import CheckinConfig
    from core.checkins.scheduler import CheckinScheduler
    from core.runtime import open_runtime

    async with open_runtime(settings, on_progress=_progress) as runtime:
        # The check-in scheduler elects one leader through Redis, so every bot process can run one safely: a
        # single-box install gets check-ins with no extra service, a fleet gets standbys for free.
        bots = [CheckinScheduler(runtime.redis, config=CheckinConfig.from_settings(settings)).run()]
        if settings.telegram_bot_token:
            from bots.telegram import run_telegram

            bots.append(run_telegram(runtime))
        if settings.discord_bot_token:
            from bots.discord import run_discord

            bots.append(run_discord(runtime))
        await asyncio.gather(*bots)


async def _user(settings: Settings, action: str, platform: str, user_id: str) -> None:
    from core.runtime import open_runtime
    from core.types import UserRef

    user = UserRef(platform, user_id)
    async with open_runtime(settings, engine=_NoEngine(), on_progress=_progress) as runtime:
        if action == "export":
            print(json.dumps(await runtime.manager.export(user), indent=2, ensure_ascii=False))
        else:
            print((await runtime.manager.forget(user)).text)


class _NoEngine:
    """Data commands never generate text, so they skip loading the model."""

    name = "none"

    def warm_up(self) -> None:
        return None

    async def stream(self, messages: object, *, max_new_tokens: int | None = None):  # type: ignore[no-untyped-def]
        raise HavenError("no model is loaded for data commands")
        yield ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="haven", description="Haven, a mental-health support companion.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("chat", help="talk to Haven in this terminal (or pipe one message per line)")
    commands.add_parser("run", help="start the bots whose tokens are set; the console chat when none is")
    user = commands.add_parser("user", help="export or delete everything stored about one user")
    user.add_argument("action", choices=["export", "forget"])
    user.add_argument("--platform", default="console", help="console, telegram or discord")
    user.add_argument("--id", dest="user_id", default="local", help="the platform's user id")
    safety = commands.add_parser("safety", add_help=False,
                                 help="classify JSON lines, evaluate the safety screen, or train its classifier")
    safety.add_argument("rest", nargs=argparse.REMAINDER)
    checkins = commands.add_parser("checkins", help="configure check-ins, see counts, run the scheduler",
                                   add_help=False)
    checkins.add_argument("rest", nargs=argparse.REMAINDER)
    from training.cli import add_commands as add_training_commands

    add_training_commands(commands)
    return parser


# Commands that own their argument parsing; `haven <name> ...` hands them the rest of the line.
def _delegated(command: str, rest: list[str]) -> int:
    if command == "safety":
        from core.safety.cli import main as safety_main

        return safety_main(rest)
    if command == "checkins":
        from core.checkins.cli import main as checkins_main

        return checkins_main(rest)
    raise AssertionError(command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in {"safety", "checkins"}:  # they parse their own options, --help included
        configure_logging("WARNING")
        return _delegated(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"haven: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command in {"chat", "run"} and not settings.platforms_configured:
        # The terminal is the UI: keep logs out of it.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        configure_logging(settings.log_level, stream=open(settings.data_dir / "haven.log", "a"))  # noqa: SIM115
    else:
        configure_logging(settings.log_level)
    _quiet_libraries()
    try:
        if args.command == "chat":
            asyncio.run(_chat(settings))
        elif args.command == "run":
            asyncio.run(_run(settings))
        elif args.command == "user":
            asyncio.run(_user(settings, args.action, args.platform, args.user_id))
        elif args.command in {"data", "train", "eval", "export"}:
            from training.cli import run_training_command

            return run_training_command(args)
    except KeyboardInterrupt:
        return 130
    except HavenError as exc:
        logging.getLogger("haven").error("stopped: %s", type(exc).__name__)
        print(f"haven: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
