"""The Redis client for state shared by replicas (TRADEGUARD_REDIS_URL), when configured."""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis

# A Redis that stops answering must cost a request (or a readiness probe) seconds, not the
# client library's default of waiting for as long as the operating system lets it.
CONNECT_TIMEOUT_SECONDS: Final = 2.0
COMMAND_TIMEOUT_SECONDS: Final = 2.0


def create_redis(url: str) -> Redis:
    """A pooled client for `url`; it connects on first use, so creating it never fails on an
    unreachable server. Close it with `await client.aclose()`."""
    client: Redis = Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=COMMAND_TIMEOUT_SECONDS,
        # Idle pooled connections are checked before reuse, so one dropped by a Redis
        # restart or a middlebox fails the check instead of a command.
        health_check_interval=30,
    )
    return client
