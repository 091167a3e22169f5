"""KeyedLocks: one key's callers take turns in the order they asked; other keys run meanwhile; nothing is kept."""

from __future__ import annotations

import asyncio

from core.ordering import KeyedLocks


async def test_one_keys_callers_take_turns_in_order_and_other_keys_do_not_wait() -> None:
    locks, events = KeyedLocks(), []
    release = asyncio.Event()

    async def turn(key: str, name: str, wait: bool = False) -> None:
        async with locks.hold(key):
            events.append(f"{name} in")
            if wait:
                await release.wait()
            events.append(f"{name} out")

    first = asyncio.create_task(turn("ana", "a1", wait=True))
    later = [asyncio.create_task(turn("ana", f"a{i}")) for i in range(2, 5)]
    await asyncio.wait_for(turn("ben", "b1"), 1)  # ben is not held up by ana's open turn
    assert events == ["a1 in", "b1 in", "b1 out"] and len(locks) == 1
    release.set()
    await asyncio.gather(first, *later)
    assert events[3:] == ["a1 out", "a2 in", "a2 out", "a3 in", "a3 out", "a4 in", "a4 out"]
    assert len(locks) == 0  # the table forgets keys nobody uses


async def test_a_failing_turn_releases_the_key() -> None:
    locks = KeyedLocks()
    try:
        async with locks.hold(1):
            raise ValueError("boom")
    except ValueError:
        pass
    async with locks.hold(1):
        assert len(locks) == 1
    assert len(locks) == 0
