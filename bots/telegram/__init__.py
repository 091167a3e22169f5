"""Haven on Telegram (python-telegram-bot 22): a thin adapter over the dialog manager.

    run_telegram(runtime)        polling or webhook, per settings.telegram_mode, until cancelled
    build_application(runtime)   the wired Application, for tests and custom servers
"""

from bots.telegram.app import build_application, run_telegram
from bots.telegram.options import TelegramOptions

__all__ = ["TelegramOptions", "build_application", "run_telegram"]
