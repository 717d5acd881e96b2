"""Holding SQLite COMMITs on the connection's thread (db/sqlite_inloop.py), so a test can act
while one is being flushed, as it would during a slow disk flush."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

BOUNDED_SECONDS = 20.0


class HeldCommit:
    """One COMMIT being held on a connection's thread until `release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()


class HeldCommits:
    """The COMMITs held so far (see `commits_held`), in the order they began."""

    def __init__(self) -> None:
        self.held: list[HeldCommit] = []
        self._first = threading.Event()

    def hold(self) -> HeldCommit:
        commit = HeldCommit()
        self.held.append(commit)
        self._first.set()
        return commit

    async def first(self) -> HeldCommit:
        """The first held COMMIT, once one has begun."""
        await asyncio.to_thread(self._first.wait, BOUNDED_SECONDS)
        return self.held[0]

    def release_all(self) -> None:
        for commit in self.held:
            commit.release.set()


class _HoldingConnection:
    """The real sqlite3 connection, whose COMMITs on the connection's thread (those with
    something to flush) wait until the test lets them go. A COMMIT with nothing to flush
    runs on the event loop's thread and is not held."""

    def __init__(self, real: sqlite3.Connection, commits: HeldCommits) -> None:
        self._real = real
        self._commits = commits
        self._loop_thread = threading.get_ident()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def commit(self) -> None:
        if threading.get_ident() != self._loop_thread:
            self._commits.hold().release.wait(BOUNDED_SECONDS)
        self._real.commit()


@contextmanager
def commits_held(engine: AsyncEngine) -> Iterator[HeldCommits]:
    """While this lasts, every COMMIT with something to flush on the engine's connections
    waits on the connection's thread until the test releases it: a slow disk flush during
    which the test can act."""
    commits = HeldCommits()
    wrapped: list[tuple[Any, sqlite3.Connection]] = []

    def hold(conn: Any) -> None:
        inloop = conn.connection.dbapi_connection
        if not isinstance(inloop.sqlite, _HoldingConnection):
            wrapped.append((inloop, inloop.sqlite))
            inloop.sqlite = _HoldingConnection(inloop.sqlite, commits)

    event.listen(engine.sync_engine, "commit", hold)
    try:
        yield commits
    finally:
        event.remove(engine.sync_engine, "commit", hold)
        commits.release_all()
        for inloop, real in wrapped:
            inloop.sqlite = real
