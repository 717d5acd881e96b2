"""Database outages at the HTTP edge: 503 problem+json with Retry-After, one retry when safe,
and one log line per kind of failure instead of a traceback per request.

A request whose database connection failed (see `db.availability`) is run once more after
a short pause if nothing was committed in it yet (no COMMIT was even attempted, so it
changed nothing and running it again cannot apply anything twice) and no response has
started; the request body read by the first attempt is replayed to the second. A lock or
pool wait that timed out is not retried (it would only wait again). If the retry fails too,
or a retry is not safe, the client gets 503 with Retry-After. The failure state is logged
when it changes (failing, a new kind of failure, recovered), not per request, and counted
in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradeguard.core.context import DatabaseActivity, database_activity_var
from tradeguard.core.errors import ServiceUnavailable
from tradeguard.core.workers import FailureTracker
from tradeguard.db.availability import Outage, classify_outage
from tradeguard.web.problems import send_problem

COMPONENT: Final = "api-database"
# Long enough for a failover or a restart to finish, short enough that clients come back
# soon; the readiness probe takes the instance out of a load balancer meanwhile.
RETRY_AFTER_SECONDS: Final = 5
# The pause before the one in-request retry: a dropped pooled connection is replaced at
# once, a server that is restarting gets a moment.
RETRY_PAUSE_SECONDS: Final = 0.2

logger = logging.getLogger("tradeguard.web.outage")


# Given an error that is not an outage, makes good what the request lacked (keys the
# process has not read yet, because the database was down when it started): True if the
# request may run again, False if the error stands. An outage while doing so is an outage.
Recover = Callable[[BaseException], Awaitable[bool]]


class DatabaseOutageMiddleware:
    """Turns database outages into 503 + Retry-After, retrying once when nothing committed."""

    def __init__(
        self, app: ASGIApp, *, tracker: FailureTracker, recover: Recover | None = None
    ) -> None:
        self.app = app
        self._tracker = tracker
        self._recover = recover

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        activity = DatabaseActivity()
        token = database_activity_var.set(activity)
        body = _ReplayableBody(receive)
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            for attempt in (1, 2):
                try:
                    await self.app(scope, body.receive, tracking_send)
                except Exception as exc:
                    if response_started:
                        raise
                    failure, outage, recovered = await self._diagnose(exc)
                    again = attempt == 1 and not activity.commit_attempted and body.replayable
                    if recovered and again:
                        body.rewind()
                        continue
                    if outage is None and not recovered:
                        raise
                    if outage is not None and outage.retryable and again:
                        await asyncio.sleep(RETRY_PAUSE_SECONDS)
                        body.rewind()
                        continue
                    if outage is not None:
                        self._tracker.failed(failure)
                    await send_problem(
                        send,
                        # Says what to do, not which dependency failed or why.
                        ServiceUnavailable(
                            "The service is temporarily unavailable; retry after "
                            f"{RETRY_AFTER_SECONDS} seconds"
                        ),
                        instance=scope["path"],
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                    )
                    return
                if activity.connected:
                    self._tracker.succeeded()
                return
        finally:
            database_activity_var.reset(token)

    async def _diagnose(self, exc: Exception) -> tuple[Exception, Outage | None, bool]:
        """The error to report, the outage it is (None: not one), and whether `recover`
        made good what the request lacked (it may run again)."""
        outage = classify_outage(exc)
        if outage is not None or self._recover is None:
            return exc, outage, False
        try:
            return exc, None, await self._recover(exc)
        except Exception as recovering:
            outage = classify_outage(recovering)
            if outage is None:
                raise
            return recovering, outage, False


class _ReplayableBody:
    """The request's receive channel, recording the body so a retry can read it again."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._recorded: list[Message] = []
        self._replay_at: int | None = None
        self._disconnected = False

    @property
    def replayable(self) -> bool:
        """False once the client went away: there is nobody to answer a retry."""
        return not self._disconnected

    def rewind(self) -> None:
        self._replay_at = 0

    async def receive(self) -> Message:
        if self._replay_at is not None and self._replay_at < len(self._recorded):
            message = self._recorded[self._replay_at]
            self._replay_at += 1
            return message
        message = await self._receive()
        if message["type"] == "http.request":
            self._recorded.append(message)
            if self._replay_at is not None:
                self._replay_at += 1
        elif message["type"] == "http.disconnect":
            self._disconnected = True
        return message
