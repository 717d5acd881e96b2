"""Live order and execution updates for WebSocket clients (TLS-2: served over WSS only).

Publishing never waits for a client: each connection has a bounded queue, and a client too
slow to drain it is disconnected (it can reconnect and read the REST API to catch up), so one
slow reader can never stall the order path or the other clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tradeguard.core.clock import Clock


class NoticeLike(Protocol):
    @property
    def account_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def payload(self) -> dict[str, Any]: ...


@dataclass(eq=False, slots=True)
class StreamConnection:
    user_id: str
    accounts: set[str]
    queue: asyncio.Queue[dict[str, Any]]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0

    def offer(self, message: dict[str, Any]) -> None:
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed.set()


class StreamHub:
    def __init__(
        self, *, clock: Clock, buffer: int, on_slow_drop: Callable[[], None] | None = None
    ) -> None:
        self._clock = clock
        self._buffer = buffer
        self._on_slow_drop = on_slow_drop
        self._by_account: dict[str, set[StreamConnection]] = {}
        self._connections: set[StreamConnection] = set()
        self.dropped_slow = 0

    def connection_count(self) -> int:
        return len(self._connections)

    def connect(self, user_id: str, accounts: Iterable[str]) -> StreamConnection:
        connection = StreamConnection(
            user_id=user_id, accounts=set(accounts), queue=asyncio.Queue(self._buffer)
        )
        self._connections.add(connection)
        for account_id in connection.accounts:
            self._by_account.setdefault(account_id, set()).add(connection)
        return connection

    def disconnect(self, connection: StreamConnection) -> None:
        self._connections.discard(connection)
        for account_id in connection.accounts:
            members = self._by_account.get(account_id)
            if members is not None:
                members.discard(connection)
                if not members:
                    del self._by_account[account_id]
        if connection.overflowed.is_set():
            self.dropped_slow += 1
            if self._on_slow_drop is not None:
                self._on_slow_drop()

    def account_opened(self, user_id: str, account_id: str) -> None:
        """A new account's updates reach its owner's open connections too."""
        for connection in list(self._connections):
            if connection.user_id == user_id:
                connection.accounts.add(account_id)
                self._by_account.setdefault(account_id, set()).add(connection)

    def drop_user(self, user_id: str) -> None:
        """Sessions ended elsewhere: their live streams must end as well."""
        for connection in list(self._connections):
            if connection.user_id == user_id:
                connection.overflowed.set()

    async def publish(self, notices: Iterable[NoticeLike]) -> None:
        now = str(self._clock.now_ns())
        for notice in notices:
            message = {
                "type": notice.kind,
                "account_id": notice.account_id,
                "ts": now,
                "data": notice.payload,
            }
            for connection in list(self._by_account.get(notice.account_id, ())):
                connection.offer(message)

    @property
    def connections(self) -> int:
        return len(self._connections)
