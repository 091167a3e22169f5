"""A fake Telegram Bot API server on 127.0.0.1, and a harness that runs the real Haven Telegram bot against it.

The server speaks the Bot API over real HTTP (python-telegram-bot's own HTTPX transport talks to it), records
every call, keeps what each chat would show (messages after edits and deletions), and can be told to answer
429 with retry_after or 5xx a number of times. It enforces the Bot API rules Haven could break: 4096 UTF-16
units per message, no empty text, "message is not modified", entity parsing when a parse_mode is set.

Reuse: `async with TelegramHarness.start(redis_client, engine) as bot: ...` runs Haven by polling; push updates
with `bot.send_text(user, "hi")` and wait with `await bot.wait_for(...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from bots.telegram import TelegramOptions, run_telegram
from core.checkins import CheckinService
from core.clock import Clock
from core.dialog import DialogLimits, DialogManager
from core.engines.base import Engine
from core.runtime import Runtime
from core.safety import SafetyScreen
from core.settings import Settings
from core.store import RedisContextStore

TOKEN = "123456:TEST-token-never-logged"
BOT_ID = 123456
BOT_USERNAME = "haven_test_bot"
MAX_TEXT_UTF16 = 4096

# Waits kept short so the whole suite stays fast; the behaviour is the same as with the defaults.
FAST_OPTIONS = TelegramOptions(edit_interval_seconds=0.15, typing_refresh_seconds=0.5, typing_delay_seconds=0.05,
                               server_error_backoff_seconds=0.05, poll_timeout_seconds=1,
                               checkin_poll_seconds=0.1)


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() when the server received it
    status: int = 200
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)


@dataclass
class Fault:
    status: int
    retry_after: int | None = None
    description: str = ""


@dataclass
class ChatMessage:
    message_id: int
    text: str
    from_bot: bool
    reply_markup: dict[str, Any] | None = None
    document: tuple[str, bytes] | None = None
    photo: tuple[str, bytes] | None = None
    edits: int = 0


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# Shared by every fake server, as Telegram's ids keep growing across restarts of the bot.
_update_ids = itertools.count(1000)
_MARKDOWN_V2_SPECIAL = re.compile(r"(?<!\\)[_*\[\]()~`>#+\-=|{}.!]")


class FakeBotApi:
    """The Bot API methods Haven uses, served from memory."""

    def __init__(self, *, bot_id: int = BOT_ID, username: str = BOT_USERNAME) -> None:
        self.bot = {"id": bot_id, "is_bot": True, "first_name": "Haven", "username": username,
                    "can_join_groups": True, "can_read_all_group_messages": False,
                    "supports_inline_queries": False}
        self.calls: list[ApiCall] = []
        self.chats: dict[int, list[ChatMessage]] = {}
        self.chat_types: dict[int, str] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.webhook: dict[str, Any] | None = None
        self._pending: list[dict[str, Any]] = []
        self._message_ids = itertools.count(1)
        self._new_update = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.changed = asyncio.Event()

    # ---- life cycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._new_update.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    # ---- what tests do ------------------------------------------------------------------------------------

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates. An explicit update_id is kept (so duplicates can be sent)."""
        update.setdefault("update_id", next(_update_ids))
        chat = (update.get("message") or update.get("callback_query", {}).get("message") or {}).get("chat")
        if chat:
            self.chat_types[chat["id"]] = chat["type"]
        self._pending.append(update)
        self._new_update.set()
        return update

    def fail_next(self, method: str, status: int, *, times: int = 1, retry_after: int | None = None,
                  description: str = "") -> None:
        """The next `times` calls of `method` get this error instead of being carried out."""
        self.faults.setdefault(method, []).extend([Fault(status, retry_after, description)] * times)

    def calls_of(self, method: str, *, chat_id: int | None = None, ok_only: bool = True) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and (not ok_only or c.status == 200)
                and (chat_id is None or int(c.params.get("chat_id", 0)) == chat_id)]

    def shown(self, chat_id: int) -> list[str]:
        """What the chat shows from the bot now, oldest first (after edits and deletions)."""
        return [m.text for m in self.chats.get(chat_id, []) if m.from_bot]

    def bot_messages(self, chat_id: int) -> list[ChatMessage]:
        return [m for m in self.chats.get(chat_id, []) if m.from_bot]

    # ---- the HTTP side ------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files = await self._read_params(request)
        call = ApiCall(method, params, time.monotonic(), files=files)
        self.calls.append(call)
        faults = self.faults.get(method)
        if faults:
            fault = faults.pop(0)
            call.status = fault.status
            body: dict[str, Any] = {"ok": False, "error_code": fault.status,
                                    "description": fault.description or _default_description(fault)}
            if fault.retry_after is not None:
                body["parameters"] = {"retry_after": fault.retry_after}
            return web.json_response(body, status=fault.status)
        if request.match_info["token"] != TOKEN:
            call.status = 401
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            call.status = 404
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        try:
            result = await handler(params, files) if method == "getUpdates" else handler(params, files)
        except _ApiError as exc:
            call.status = exc.status
            return web.json_response({"ok": False, "error_code": exc.status, "description": exc.description},
                                     status=exc.status)
        self.changed.set()
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, tuple[str, bytes]] = {}
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = (value.filename, value.file.read())
                else:
                    params[key] = value
        for key in ("reply_markup", "allowed_updates", "commands", "reply_parameters", "entities"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params, files

    # ---- Bot API methods ----------------------------------------------------------------------------------

    def _api_getMe(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        return self.bot

    async def _api_getUpdates(self, params: dict[str, Any], files: Any) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is active")
        # Long poll: wait for an update, at most briefly, so that stopping the bot is quick.
        if not self._pending and float(params.get("timeout", 0) or 0) > 0:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), 0.5)
        # Everything queued is handed out, whatever the offset: duplicates are the bot's to drop.
        updates, self._pending = self._pending, []
        return updates

    def _api_deleteWebhook(self, params: dict[str, Any], files: Any) -> bool:
        self.webhook = None
        return True

    def _api_setWebhook(self, params: dict[str, Any], files: Any) -> bool:
        self.webhook = params
        return True

    def _api_setMyCommands(self, params: dict[str, Any], files: Any) -> bool:
        return True

    def _api_sendChatAction(self, params: dict[str, Any], files: Any) -> bool:
        return True

    def _api_answerCallbackQuery(self, params: dict[str, Any], files: Any) -> bool:
        return True

    def _api_sendMessage(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        text = self._checked_text(params)
        message = ChatMessage(next(self._message_ids), text, True, params.get("reply_markup"))
        self.chats.setdefault(chat_id, []).append(message)
        return self._message_json(chat_id, message)

    def _api_editMessageText(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        chat_id, message = self._find(params)
        text = self._checked_text(params)
        markup = params.get("reply_markup")
        if text == message.text and markup == message.reply_markup:
            raise _ApiError(400, "Bad Request: message is not modified: specified new message content and "
                                 "reply markup are exactly the same as a current content and reply markup of "
                                 "the message")
        message.text, message.reply_markup = text, markup
        message.edits += 1
        return self._message_json(chat_id, message)

    def _api_editMessageReplyMarkup(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        chat_id, message = self._find(params)
        markup = params.get("reply_markup")
        if markup == message.reply_markup:
            raise _ApiError(400, "Bad Request: message is not modified")
        message.reply_markup = markup
        return self._message_json(chat_id, message)

    def _api_deleteMessage(self, params: dict[str, Any], files: Any) -> bool:
        chat_id, message = self._find(params)
        self.chats[chat_id].remove(message)
        return True

    def _api_sendDocument(self, params: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        if "document" not in files:
            raise _ApiError(400, "Bad Request: there is no document in the request")
        message = ChatMessage(next(self._message_ids), params.get("caption", ""), True,
                              params.get("reply_markup"), document=files["document"])
        self.chats.setdefault(chat_id, []).append(message)
        body = self._message_json(chat_id, message)
        body.pop("text", None)
        body["caption"] = message.text
        body["document"] = {"file_id": f"doc{message.message_id}", "file_unique_id": f"u{message.message_id}",
                            "file_name": files["document"][0], "file_size": len(files["document"][1])}
        return body

    def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        if "photo" not in files:
            raise _ApiError(400, "Bad Request: there is no photo in the request")
        if _utf16_len(str(params.get("caption", ""))) > 1024:
            raise _ApiError(400, "Bad Request: message caption is too long")
        message = ChatMessage(next(self._message_ids), params.get("caption", ""), True,
                              params.get("reply_markup"), photo=files["photo"])
        self.chats.setdefault(chat_id, []).append(message)
        body = self._message_json(chat_id, message)
        body.pop("text", None)
        body["caption"] = message.text
        body["photo"] = [{"file_id": f"photo{message.message_id}", "file_unique_id": f"p{message.message_id}",
                          "width": 800, "height": 500, "file_size": len(files["photo"][1])}]
        return body

    # ---- helpers ------------------------------------------------------------------------------------------

    def _checked_text(self, params: dict[str, Any]) -> str:
        text = str(params.get("text", ""))
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if _utf16_len(text) > MAX_TEXT_UTF16:
            raise _ApiError(400, "Bad Request: message is too long")
        mode = params.get("parse_mode")
        if mode and _unparseable(text, str(mode)):
            raise _ApiError(400, "Bad Request: can't parse entities: Can't find end of the entity")
        return text

    def _find(self, params: dict[str, Any]) -> tuple[int, ChatMessage]:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        for message in self.chats.get(chat_id, []):
            if message.message_id == message_id:
                return chat_id, message
        raise _ApiError(400, "Bad Request: message to edit not found")

    def _message_json(self, chat_id: int, message: ChatMessage) -> dict[str, Any]:
        body: dict[str, Any] = {"message_id": message.message_id, "date": int(time.time()),
                                "chat": _chat_json(chat_id, self.chat_types.get(chat_id)),
                                "from": self.bot, "text": message.text}
        if message.reply_markup:
            body["reply_markup"] = message.reply_markup
        return body


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _default_description(fault: Fault) -> str:
    if fault.status == 429:
        return f"Too Many Requests: retry after {fault.retry_after}"
    return {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(
        fault.status, "Error")


def _unparseable(text: str, mode: str) -> bool:
    if mode.lower() == "markdownv2":
        return bool(_MARKDOWN_V2_SPECIAL.search(text))
    if mode.lower() == "markdown":
        return any(text.count(ch) % 2 for ch in "*_`") or text.count("[") != text.count("]")
    if mode.lower() == "html":
        return "<" in text and not re.search(r"</\w+>", text)
    return False


def _chat_json(chat_id: int, chat_type: str | None) -> dict[str, Any]:
    chat_type = chat_type or ("private" if chat_id > 0 else "supergroup")
    if chat_type == "private":
        return {"id": chat_id, "type": "private", "first_name": "Sam"}
    return {"id": chat_id, "type": chat_type, "title": "Support circle"}


# ---- updates, as Telegram would send them --------------------------------------------------------------------

_message_ids = itertools.count(50_000)


def user_json(user_id: int, first_name: str = "Sam", username: str | None = None) -> dict[str, Any]:
    user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
    if username:
        user["username"] = username
    return user


def message_update(user_id: int, *, text: str | None = None, chat_id: int | None = None,
                   chat_type: str = "private", entities: list[dict[str, Any]] | None = None,
                   reply_to: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                   update_id: int | None = None, username: str | None = None) -> dict[str, Any]:
    chat_id = user_id if chat_id is None else chat_id
    message: dict[str, Any] = {"message_id": next(_message_ids), "date": int(time.time()),
                               "chat": _chat_json(chat_id, chat_type), "from": user_json(user_id, username=username)}
    if text is not None:
        message["text"] = text
    if text is not None and text.startswith("/"):
        command = text.split()[0]
        entities = [*(entities or []), {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]
    if entities:
        message["entities"] = entities
    if reply_to is not None:
        message["reply_to_message"] = reply_to
    message.update(extra or {})
    update: dict[str, Any] = {"message": message}
    if update_id is not None:
        update["update_id"] = update_id
    return update


def mention_entity(text: str, handle: str = f"@{BOT_USERNAME}") -> dict[str, Any]:
    start = text.index(handle)
    return {"type": "mention", "offset": _utf16_len(text[:start]), "length": _utf16_len(handle)}


def callback_update(user_id: int, data: str, message: ChatMessage, chat_id: int | None = None,
                    chat_type: str = "private") -> dict[str, Any]:
    chat_id = user_id if chat_id is None else chat_id
    return {"callback_query": {
        "id": str(next(_message_ids)), "from": user_json(user_id), "chat_instance": "ci", "data": data,
        "message": {"message_id": message.message_id, "date": int(time.time()), "text": message.text,
                    "chat": _chat_json(chat_id, chat_type), "from": {"id": BOT_ID, "is_bot": True,
                                                                     "first_name": "Haven"},
                    **({"reply_markup": message.reply_markup} if message.reply_markup else {})},
    }}


STICKER = {"sticker": {"file_id": "stk1", "file_unique_id": "ustk1", "type": "regular", "width": 512,
                       "height": 512, "is_animated": False, "is_video": False}}
VOICE = {"voice": {"file_id": "v1", "file_unique_id": "uv1", "duration": 3}}


# ---- the harness ---------------------------------------------------------------------------------------------

def make_runtime(redis_client: aioredis.Redis, engine: Engine, base_url: str, *, clock: Clock | None = None,
                 **settings: Any) -> Runtime:
    """A Runtime over the test Redis, a fake model, the rules-only safety screen and check-ins."""
    # Waits are shortened here (and tools run on a fake clock), so Telegram's one-message-a-second pace per chat
    # would only slow the tests down; test_fleet.py checks that pace on its own.
    values: dict[str, Any] = {"telegram_bot_token": TOKEN, "telegram_base_url": base_url,
                              "telegram_chat_messages_per_second": 100.0, **settings}
    config = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    store = RedisContextStore(redis_client, max_turns=12, max_tokens=4000, ttl_seconds=3600)
    screen = SafetyScreen(semantic=False)
    checkins = CheckinService(redis_client, store, screen, clock=clock, default_country="GB")
    manager = DialogManager(store, engine, screen, limits=DialogLimits(reply_timeout_seconds=20), checkins=checkins)
    return Runtime(config, redis_client, store, engine, screen, manager, checkins=checkins)


class TelegramHarness:
    """Haven's Telegram bot running by polling against a FakeBotApi, inside the test's event loop."""

    def __init__(self, api: FakeBotApi, runtime: Runtime, options: TelegramOptions) -> None:
        self.api = api
        self.runtime = runtime
        self.options = options
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, redis_client: aioredis.Redis, engine: Engine, *, api: FakeBotApi | None = None,
                    options: TelegramOptions = FAST_OPTIONS, runtime: Runtime | None = None,
                    **settings: Any) -> AsyncIterator[TelegramHarness]:
        api = api or FakeBotApi()
        own_server = api.port == 0
        if own_server:
            await api.start()
        runtime = runtime or make_runtime(redis_client, engine, api.base_url, **settings)
        harness = cls(api, runtime, options)
        try:
            await harness.run()
            yield harness
        finally:
            await harness.shutdown()
            if own_server:
                await api.stop()

    async def run(self) -> None:
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        self._task = asyncio.create_task(run_telegram(self.runtime, options=self.options, stop=self._stop,
                                                      ready=ready))
        await self.wait_for(ready.is_set)

    async def shutdown(self) -> None:
        """Stop the bot as a deployment would (in-flight replies finish), and surface a crash."""
        if self._task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, 15)
        finally:
            self._task = None

    def _task_failed(self) -> bool:
        if self._task is not None and self._task.done():
            self._task.result()  # raises what killed the bot
        return False

    # ---- conversation helpers -----------------------------------------------------------------------------

    def send_text(self, user_id: int, text: str, **kwargs: Any) -> dict[str, Any]:
        return self.api.push_update(message_update(user_id, text=text, **kwargs))

    def press(self, user_id: int, data: str, message: ChatMessage) -> dict[str, Any]:
        return self.api.push_update(callback_update(user_id, data, message))

    async def wait_for(self, predicate: Callable[[], Any], limit_seconds: float = 10.0) -> Any:
        """Poll until `predicate()` is truthy; its value is returned. Fails with the recorded calls."""
        deadline = time.monotonic() + limit_seconds
        while True:
            self._task_failed()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                methods = [f"{c.method}:{c.status}" for c in self.api.calls]
                raise AssertionError(f"timed out waiting; calls so far: {methods}")
            await asyncio.sleep(0.02)

    async def wait_for_messages(self, chat_id: int, count: int, limit_seconds: float = 10.0) -> list[str]:
        """Wait until the chat shows at least `count` bot messages and no reply is still streaming."""
        await self.wait_for(lambda: len(self.api.shown(chat_id)) >= count, limit_seconds)
        await self.settle()
        return self.api.shown(chat_id)

    async def settle(self, quiet_seconds: float = 0.3, limit_seconds: float = 10.0) -> None:
        """Wait until no Bot API call other than getUpdates has arrived for `quiet_seconds`."""
        deadline = time.monotonic() + limit_seconds
        while time.monotonic() < deadline:
            self._task_failed()
            last = max((c.at for c in self.api.calls if c.method != "getUpdates"), default=0.0)
            if time.monotonic() - last >= quiet_seconds:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the bot kept calling the Bot API")
