"""The canonical request, its signature and the nonce stores (API-3).

The published vectors (docs/api-keys.md) are recomputed here step by step with hashlib and
hmac, independently of tradeguard.apikeys.signing, then compared with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL, require_service
from tradeguard.apikeys.signing import (
    MemoryNonceStore,
    NonceStore,
    RedisNonceStore,
    canonical_query,
    canonical_request,
    new_key_id,
    new_secret,
    sign_headers,
    signature,
    signature_matches,
    well_formed_secret,
)

# The published vectors (docs/api-keys.md "Test vectors").
KEY_ID = "tgk_id_0123456789abcdef01234567"
SECRET = "tgk_live_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789WXYZ0SQSoV"
TIMESTAMP = 1767225600000
ORDER_BODY = b'{"symbol":"AAPL","side":"buy","quantity":10}'
VECTOR_1: dict[str, object] = {
    "method": "POST",
    "path": "/api/v1/accounts/acct-1/orders",
    "query": "b=two&a=hello%20world&a=%2A",
    "body": ORDER_BODY,
    "nonce": "n0nce-0123456789AB",
    "signature": "82cdaf3444bcbe99c401d3a40a35eb153709ee8dc78522d6a4f9d1cd29e0e030",
}
VECTOR_2: dict[str, object] = {
    "method": "GET",
    "path": "/api/v1/accounts",
    "query": "",
    "body": b"",
    "nonce": "n0nce-0123456789AC",
    "signature": "f41899354eb49fb5aa49c8017b7c9faeb5b25755844fb513e13d948658e26fca",
}


def independent_signature(vector: dict[str, object]) -> str:
    """The vector's signature written out by hand, sharing no code with the server."""
    # The query of vector 1, sorted by name then value and re-encoded by hand.
    query = "a=%2A&a=hello%20world&b=two" if vector["query"] else ""
    body = vector["body"]
    assert isinstance(body, bytes)
    lines = [
        "TG1-HMAC-SHA256",
        str(vector["method"]),
        str(vector["path"]),
        query,
        hashlib.sha256(body).hexdigest(),
        str(TIMESTAMP),
        str(vector["nonce"]),
        KEY_ID,
    ]
    message = "\n".join(lines).encode()
    return hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()


def canonical_of(vector: dict[str, object], **changes: object) -> str:
    fields: dict[str, object] = {
        "method": vector["method"],
        "path": vector["path"],
        "query": vector["query"],
        "body": vector["body"],
        "timestamp_ms": TIMESTAMP,
        "nonce": vector["nonce"],
        "key_id": KEY_ID,
    }
    fields.update(changes)
    return canonical_request(**fields)  # type: ignore[arg-type]


@pytest.mark.spec("API-3")
class TestVectors:
    @pytest.mark.parametrize("vector", [VECTOR_1, VECTOR_2], ids=["post-order", "get-empty"])
    def test_the_published_vectors_match_an_independent_computation(
        self, vector: dict[str, object]
    ) -> None:
        expected = independent_signature(vector)
        assert expected == vector["signature"]
        assert signature(SECRET, canonical_of(vector)) == expected
        assert signature_matches(SECRET.encode(), canonical_of(vector), expected)

    def test_the_vector_secret_is_well_formed(self) -> None:
        assert well_formed_secret(SECRET)
        assert not well_formed_secret(SECRET[:-1] + ("W" if SECRET[-1] != "W" else "X"))

    @pytest.mark.parametrize(
        "change",
        [
            {"method": "PUT"},
            {"path": "/api/v1/accounts/acct-2/orders"},
            {"query": "b=two&a=hello%20world&a=%2B"},
            {"query": "b=two&a=hello%20world"},
            {"body": ORDER_BODY.replace(b"10", b"11")},
            {"body": ORDER_BODY + b" "},
            {"timestamp_ms": TIMESTAMP + 1},
            {"nonce": "n0nce-0123456789AX"},
            {"key_id": "tgk_id_0123456789abcdef01234568"},
        ],
        ids=lambda change: next(iter(change)),
    )
    def test_a_change_to_any_component_breaks_the_signature(
        self, change: dict[str, object]
    ) -> None:
        assert not signature_matches(
            SECRET.encode(), canonical_of(VECTOR_1, **change), str(VECTOR_1["signature"])
        )

    def test_a_changed_byte_of_the_signature_or_secret_is_refused(self) -> None:
        good = str(VECTOR_1["signature"])
        flipped = ("0" if good[0] != "0" else "1") + good[1:]
        assert not signature_matches(SECRET.encode(), canonical_of(VECTOR_1), flipped)
        assert not signature_matches(SECRET.encode()[:-1] + b"x", canonical_of(VECTOR_1), good)


class TestCanonicalForm:
    def test_the_query_is_decoded_reencoded_and_sorted_as_sigv4(self) -> None:
        assert canonical_query("z=1&a=b+c&a=%7e&m") == "a=b%20c&a=~&m=&z=1"
        assert canonical_query("q=%c3%a9") == "q=%C3%A9"
        assert canonical_query("") == ""

    def test_fresh_keys_and_secrets_have_their_scanner_prefixes(self) -> None:
        assert new_key_id().startswith("tgk_id_")
        secret = new_secret()
        assert secret.startswith("tgk_live_")
        assert well_formed_secret(secret)
        assert new_secret() != secret

    def test_the_client_helper_signs_what_the_server_checks(self) -> None:
        headers = sign_headers(
            key_id=KEY_ID,
            secret=SECRET,
            method="POST",
            path=str(VECTOR_1["path"]),
            query=str(VECTOR_1["query"]),
            body=ORDER_BODY,
            timestamp_ms=TIMESTAMP,
            nonce=str(VECTOR_1["nonce"]),
        )
        assert headers["TG-SIGNATURE"] == VECTOR_1["signature"]


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[NonceStore]:
    if request.param == "memory":
        yield MemoryNonceStore(lambda: 0)
        return
    client: Redis = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # redis-py raises its own ConnectionError
        await client.aclose()
        require_service("Redis", exc)
    try:
        yield RedisNonceStore(client)
    finally:
        await client.aclose()


@pytest.mark.spec("API-3")
class TestNonceStores:
    async def test_a_nonce_is_claimed_once(self, store: NonceStore) -> None:
        nonce = secrets.token_hex(16)
        assert await store.claim(KEY_ID, nonce, 10_000)
        assert not await store.claim(KEY_ID, nonce, 10_000)
        assert await store.claim(KEY_ID + "x", nonce, 10_000)  # per key

    async def test_concurrent_claims_of_one_nonce_let_exactly_one_through(
        self, store: NonceStore
    ) -> None:
        nonce = secrets.token_hex(16)
        results = await asyncio.gather(*(store.claim(KEY_ID, nonce, 10_000) for _ in range(50)))
        assert sum(results) == 1

    async def test_the_memory_store_forgets_a_nonce_after_its_time(self) -> None:
        now = [0]
        store = MemoryNonceStore(lambda: now[0])
        assert await store.claim(KEY_ID, "n" * 16, 1000)
        now[0] = 999
        assert not await store.claim(KEY_ID, "n" * 16, 1000)
        now[0] = 2001
        assert await store.claim(KEY_ID, "n" * 16, 1000)

    async def test_the_redis_store_expires_its_entries(self) -> None:
        client: Redis = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            try:
                await client.ping()
            except Exception as exc:
                require_service("Redis", exc)
            nonce = secrets.token_hex(16)
            assert await RedisNonceStore(client).claim(KEY_ID, nonce, 10_000)
            ttl = await client.pttl(f"{RedisNonceStore.PREFIX}{KEY_ID}:{nonce}")
            assert 0 < ttl <= 10_000
        finally:
            await client.aclose()


def test_the_python_example_in_the_docs_signs_the_published_vectors() -> None:
    from pathlib import Path  # noqa: PLC0415

    guide = (Path(__file__).resolve().parents[3] / "docs" / "api-keys.md").read_text()
    example = guide.split("### Python\n\n```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, object] = {}
    exec(compile(example, "docs/api-keys.md", "exec"), scope)  # noqa: S102 - our own docs
    sign = scope["sign"]
    for vector in (VECTOR_1, VECTOR_2):
        headers = sign(  # type: ignore[operator]
            KEY_ID,
            SECRET,
            vector["method"],
            vector["path"],
            query=vector["query"],
            body=vector["body"],
            timestamp_ms=TIMESTAMP,
            nonce=vector["nonce"],
        )
        assert headers["TG-SIGNATURE"] == vector["signature"]
    assert str(VECTOR_1["signature"]) in guide
    assert str(VECTOR_2["signature"]) in guide
