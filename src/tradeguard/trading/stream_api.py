"""`/api/v1/stream`: order and execution updates over WebSocket (TLS-2: the server speaks TLS
only, so this is always WSS).

Authentication: the access token in `Authorization: Bearer ...` (non-browser clients) or, as
the first message within a few seconds, `{"type": "auth", "token": "..."}` (browsers cannot
set headers on a WebSocket; a token in the URL would end up in logs). The session is checked
again periodically and when the token expires: a revoked or expired session closes the
stream (send a fresh token with another `auth` message to keep it). A client that does not
drain its messages is disconnected (close code 1013) instead of slowing anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from tradeguard.access.domain import Permission
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import TradeguardError
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.container import IdentityServices
from tradeguard.identity.guard import (
    Principal,
    authenticate_token,
    check_permission,
    guarded_websocket,
)
from tradeguard.trading.container import TradingServices
from tradeguard.trading.stream import StreamConnection

router = APIRouter(tags=["trading"])

STREAM_PATH = "/api/v1/stream"
AUTH_TIMEOUT_SECONDS = 10.0
RECHECK_SECONDS = 5.0
MAX_CLIENT_MESSAGE = 16_384
CLOSE_POLICY = 1008
CLOSE_SLOW = 1013
CLOSE_EXPIRED = 4001

# The route-table audit reads this like an HTTP route's declaration (deny by default).
STREAM_PERMISSION = Permission.ACCOUNT_VIEW


async def _first_token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_SECONDS):
            raw = await websocket.receive_text()
    except (TimeoutError, WebSocketDisconnect, RuntimeError):
        return None
    return _auth_token(raw)


def _auth_token(raw: str) -> str | None:
    if len(raw) > MAX_CLIENT_MESSAGE:
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if isinstance(message, dict) and message.get("type") == "auth":
        token = message.get("token")
        if isinstance(token, str) and 0 < len(token) < 8192:
            return token
    return None


async def _authorize(websocket: WebSocket, identity: IdentityServices, token: str) -> Principal:
    principal = await authenticate_token(websocket, identity, token)
    await check_permission(
        identity, principal, STREAM_PERMISSION, route=STREAM_PATH, method="WEBSOCKET"
    )
    return principal


@router.websocket(STREAM_PATH)
@guarded_websocket(STREAM_PERMISSION)
async def stream(websocket: WebSocket) -> None:
    identity: IdentityServices = websocket.app.state.identity
    services: TradingServices = websocket.app.state.trading
    await websocket.accept()
    token = await _first_token(websocket)
    try:
        if token is None:
            raise TradeguardError("send an access token")
        principal = await _authorize(websocket, identity, token)
        claims = identity.verifier.verify(token)
    except TradeguardError as exc:
        await _close(websocket, CLOSE_POLICY, exc.client_detail[:120])
        return
    async with unit_of_work(services.sessions) as session:
        accounts = [a.id for a in await services.accounts.list_for(session, principal.user_id)]
    connection = services.hub.connect(principal.user_id, accounts)
    state: dict[str, Any] = {"token": token, "expires_ns": claims.expires_at * NS_PER_SECOND}
    try:
        await websocket.send_json({"type": "hello", "accounts": accounts})
        await _serve(websocket, identity, services, connection, state)
    finally:
        services.hub.disconnect(connection)


async def _serve(
    websocket: WebSocket,
    identity: IdentityServices,
    services: TradingServices,
    connection: StreamConnection,
    state: dict[str, Any],
) -> None:
    sender = asyncio.create_task(_send(websocket, connection))
    receiver = asyncio.create_task(_receive(websocket, identity, state))
    watcher = asyncio.create_task(_watch(websocket, identity, state))
    overflow = asyncio.create_task(connection.overflowed.wait())
    done, pending = await asyncio.wait(
        {sender, receiver, watcher, overflow}, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if overflow in done:
        await _close(websocket, CLOSE_SLOW, "too slow: reconnect and catch up over REST")
    elif watcher in done:
        reason = (
            watcher.result() if not watcher.cancelled() and watcher.exception() is None else None
        )
        await _close(
            websocket,
            CLOSE_EXPIRED if reason == "expired" else CLOSE_POLICY,
            "the session ended" if reason != "expired" else "token expired",
        )
    elif (
        receiver in done
        and not receiver.cancelled()
        and receiver.exception() is None
        and receiver.result() == "refused"
    ):
        await _close(websocket, CLOSE_POLICY, "the new token was not accepted")
    else:
        await _close(websocket, 1000, "bye")


async def _send(websocket: WebSocket, connection: StreamConnection) -> None:
    while True:
        message = await connection.queue.get()
        await websocket.send_json(message)
        connection.sent += 1


async def _receive(websocket: WebSocket, identity: IdentityServices, state: dict[str, Any]) -> str:
    while True:
        raw = await websocket.receive_text()
        token = _auth_token(raw)
        if token is None:
            with contextlib.suppress(ValueError):
                if json.loads(raw).get("type") == "ping":
                    await websocket.send_json({"type": "pong"})
            continue
        try:
            principal = await _authorize(websocket, identity, token)
            claims = identity.verifier.verify(token)
        except TradeguardError:
            return "refused"
        if principal.user_id != state.get("user_id", principal.user_id):
            return "refused"
        state["user_id"] = principal.user_id
        state["token"] = token
        state["expires_ns"] = claims.expires_at * NS_PER_SECOND
        await websocket.send_json({"type": "reauthenticated"})


async def _watch(websocket: WebSocket, identity: IdentityServices, state: dict[str, Any]) -> str:
    """Ends the stream when the session is revoked or the token expires."""
    while True:
        await asyncio.sleep(RECHECK_SECONDS)
        if identity.clock.now_ns() >= state["expires_ns"]:
            return "expired"
        try:
            await authenticate_token(websocket, identity, state["token"])
        except TradeguardError:
            return "ended"


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code=code, reason=reason)
