"""The stream hub: publishing never waits for a client; a client that falls a full buffer
behind is marked for disconnection while the others keep receiving."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tradeguard.core.clock import FrozenClock
from tradeguard.trading.stream import StreamHub


@dataclass(frozen=True)
class Notice:
    account_id: str
    kind: str
    payload: dict[str, Any]


class TestStreamHub:
    async def test_a_full_queue_marks_only_that_client_and_publishing_never_blocks(self) -> None:
        dropped: list[int] = []
        hub = StreamHub(clock=FrozenClock(), buffer=4, on_slow_drop=lambda: dropped.append(1))
        slow = hub.connect("u1", ["a1"])
        fast = hub.connect("u1", ["a1"])
        received: list[dict[str, Any]] = []

        async def drain() -> None:
            while True:
                received.append(await fast.queue.get())

        reader = asyncio.create_task(drain())
        for n in range(10):
            # One notice at a time with the loop turning in between: the fast client keeps
            # up; the slow one (nobody drains it) overflows at its fifth message.
            await asyncio.wait_for(hub.publish([Notice("a1", "order", {"n": n})]), 1)
            await asyncio.sleep(0)
        reader.cancel()
        assert slow.overflowed.is_set()
        assert not fast.overflowed.is_set()
        assert [m["data"]["n"] for m in received] == list(range(10))
        hub.disconnect(slow)
        hub.disconnect(fast)
        assert dropped == [1]
        assert hub.connections == 0

    async def test_updates_reach_only_the_owner_of_the_account(self) -> None:
        hub = StreamHub(clock=FrozenClock(), buffer=8)
        alice = hub.connect("alice", ["a1"])
        bob = hub.connect("bob", ["b1"])
        await hub.publish([Notice("a1", "order", {})])
        assert alice.queue.qsize() == 1
        assert bob.queue.qsize() == 0

    async def test_an_account_opened_later_streams_to_its_owner(self) -> None:
        hub = StreamHub(clock=FrozenClock(), buffer=8)
        alice = hub.connect("alice", [])
        hub.account_opened("alice", "a2")
        hub.account_opened("bob", "b2")
        await hub.publish([Notice("a2", "execution", {}), Notice("b2", "execution", {})])
        assert alice.queue.qsize() == 1
