"""Redis durability with the settings of deploy/redis.conf (append-only file, fsync every second): a counter
is written as fast as one client can, the server is SIGKILLed mid-stream and restarted from its files, and
every acknowledged write older than one second must be there.

Run it alone to see the figure:  pytest -s tests/reliability/test_durability.py
"""

from __future__ import annotations

import asyncio
import time

from core.store import EmbeddedRedis, connect_redis
from tests.reliability.conftest import deploy_durability_settings

WRITE_SECONDS = 2.5
# appendfsync everysec: at most about one second of writes; Redis allows an fsync up to 2 s late under load.
ALLOWED_LOSS_SECONDS = 2.0


def test_deploy_config_asks_for_an_fsynced_append_only_file():
    settings = deploy_durability_settings()
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] in {"everysec", "always"}
    assert settings["maxmemory-policy"] == "noeviction"


async def write_then_kill(server, client) -> tuple[int, int, float]:
    """Write a counter continuously, SIGKILL the server mid-stream, restart it from its files. Returns the last
    acknowledged value, the value that survived, and how long before the kill the oldest lost write was
    acknowledged (0 when nothing was lost)."""
    acked: list[tuple[int, float]] = []  # (counter value Redis acknowledged, when)
    stop = asyncio.Event()

    async def write_continuously() -> None:
        while not stop.is_set():
            try:
                value = await client.incr("haven:test:durability")
            except Exception:
                return
            acked.append((int(value), time.monotonic()))

    writer = asyncio.create_task(write_continuously())
    await asyncio.sleep(WRITE_SECONDS)
    server.kill()  # SIGKILL, mid-stream: no shutdown, no final fsync
    killed_at = time.monotonic()
    stop.set()
    await writer
    await asyncio.to_thread(server.start)  # loads the append-only file, if there is one

    fresh = connect_redis(unix_socket_path=server.socket_path)
    try:
        persisted = int(await fresh.get("haven:test:durability") or 0)
    finally:
        await fresh.aclose()
    lost = [at for value, at in acked if value > persisted]
    return acked[-1][0], persisted, (killed_at - lost[0] if lost else 0.0)


async def test_sigkill_loses_at_most_the_last_second_of_writes(own_redis, own_client):
    last_acked, persisted, oldest_lost_age = await write_then_kill(own_redis, own_client)
    print(f"\ndurability (deploy/redis.conf): {last_acked} writes acknowledged in {WRITE_SECONDS}s, {persisted} "
          f"survived SIGKILL, {max(0, last_acked - persisted)} lost (oldest lost write acknowledged "
          f"{oldest_lost_age:.3f}s before the kill)")
    assert last_acked > 1000, "the writer was really writing"
    assert persisted <= last_acked + 1  # at most the one write in flight at the kill
    assert oldest_lost_age <= ALLOWED_LOSS_SECONDS, f"lost writes acknowledged {oldest_lost_age:.2f}s before"


async def test_the_measure_sees_loss_without_the_append_only_file(tmp_path):
    """The control: the same run without the AOF loses everything, and the check above would say so."""
    server = EmbeddedRedis(tmp_path / "redis", extra_config={"appendonly": "no", "save": ""})
    server.start()
    client = connect_redis(unix_socket_path=server.socket_path)
    try:
        last_acked, persisted, oldest_lost_age = await write_then_kill(server, client)
    finally:
        await client.aclose()
        server.stop()
    assert persisted == 0 and last_acked > 1000
    assert oldest_lost_age > ALLOWED_LOSS_SECONDS
