"""One lock per key, held only while someone uses it: the per-user FIFO order of the dialog manager and of the
Telegram update processors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class KeyedLocks:
    """`async with locks.hold(key)`: callers with the same key run one at a time, in the order they asked (an
    asyncio.Lock wakes its waiters first come, first served); different keys never wait for each other. A key's
    lock is dropped when its last user leaves, so the table holds only keys in use."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}  # lock, callers holding or waiting

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        # Registered before the first await, so the order of the calls is the order of the turns.
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
