"""An independent verifier for the tests, written from the texts of RFC 9162 section 2.1 and
C2SP signed-note / tlog-checkpoint, step by step as they are worded. It imports nothing from
tradeguard: a proof or checkpoint our code produces is accepted here only if it is right by
the standard, not by our own reading of it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519


def HASH(data: bytes) -> bytes:  # noqa: N802 - the RFC's name
    return hashlib.sha256(data).digest()


def leaf(entry: bytes) -> bytes:
    """MTH({d(0)}) = HASH(0x00 || d(0))."""
    return HASH(b"\x00" + entry)


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaf_hashes: list[bytes]) -> bytes:
    """2.1.1: MTH({}) = HASH(); MTH(D_n) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    n = len(leaf_hashes)
    if n == 0:
        return HASH(b"")
    if n == 1:
        return leaf_hashes[0]
    k = _k(n)
    return HASH(b"\x01" + mth(leaf_hashes[:k]) + mth(leaf_hashes[k:]))


def path(m: int, leaf_hashes: list[bytes]) -> list[bytes]:
    """2.1.3.1: PATH(m, D_n)."""
    n = len(leaf_hashes)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, leaf_hashes[:k]), mth(leaf_hashes[k:])]
    return [*path(m - k, leaf_hashes[k:]), mth(leaf_hashes[:k])]


def proof(m: int, leaf_hashes: list[bytes]) -> list[bytes]:
    """2.1.4.1: PROOF(m, D_n) = SUBPROOF(m, D_n, true)."""

    def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [mth(d)]
        k = _k(n)
        if m <= k:
            return [*subproof(m, d[:k], b), mth(d[k:])]
        return [*subproof(m - k, d[k:], False), mth(d[:k])]

    return subproof(m, leaf_hashes, True)


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, inclusion_path: list[bytes], root: bytes
) -> bool:
    """2.1.3.2, steps 1 to 5."""
    # 1. Compare leaf_index against tree_size. If leaf_index is greater than or equal to
    # tree_size, then fail the proof verification.
    if leaf_index >= tree_size:
        return False
    # 2. Set fn to leaf_index and sn to tree_size - 1.
    fn, sn = leaf_index, tree_size - 1
    # 3. Set r to hash.
    r = leaf_hash
    # 4. For each value p in the inclusion_path array:
    for p in inclusion_path:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn % 2 == 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = HASH(b"\x01" + p + r)
            # ii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            # either LSB(fn) is set or fn is 0.
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn // 2, sn // 2
        # Otherwise: i. Set r to HASH(0x01 || r || p).
        else:
            r = HASH(b"\x01" + r + p)
        # c. Finally, right-shift both fn and sn one time.
        fn, sn = fn // 2, sn // 2
    # 5. Compare sn to 0. Compare r against the root_hash.
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, consistency_path: list[bytes]
) -> bool:
    """2.1.4.2, steps 1 to 7 (for 0 < first < second, as the RFC defines proofs)."""
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not consistency_path:
        return False
    path_ = list(consistency_path)
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path.
    if first & (first - 1) == 0:
        path_ = [first_hash, *path_]
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn % 2 == 1:
        fn, sn = fn // 2, sn // 2
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path_[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path_[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn % 2 == 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr). ii. Set sr to HASH(0x01 || c || sr).
            fr = HASH(b"\x01" + c + fr)
            sr = HASH(b"\x01" + c + sr)
            # iii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            # either LSB(fn) is set or fn is 0.
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn // 2, sn // 2
        # Otherwise: i. Set sr to HASH(0x01 || sr || c).
        else:
            sr = HASH(b"\x01" + sr + c)
        # c. Finally, right-shift both fn and sn one time.
        fn, sn = fn // 2, sn // 2
    # 7. Verify fr == first_hash, sr == second_hash and sn == 0.
    return fr == first_hash and sr == second_hash and sn == 0


def verify_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """C2SP signed-note + tlog-checkpoint with one Ed25519 verifier key
    "<name>+<hex key ID>+<base64(0x01 || key)>": the (origin, size, root) it signs.
    Raises ValueError unless the key's signature on the note verifies."""
    name, key_hash, encoded = vkey.strip().split("+", 2)
    raw = base64.b64decode(encoded)
    assert raw[0] == 0x01
    public = raw[1:]
    # key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]
    key_id = HASH(name.encode() + b"\n" + b"\x01" + public)[:4]
    if key_id.hex() != key_hash:
        raise ValueError("key hash does not match the key")
    # The text is separated from the signatures by the last empty line.
    cut = note.rindex("\n\n")
    text, signatures = note[: cut + 1], note[cut + 2 :].splitlines()
    verified = False
    for line in signatures:
        dash, signer, blob = line.split(" ")
        if dash != "\u2014":
            raise ValueError("signature lines start with an em dash")
        decoded = base64.b64decode(blob)
        if signer != name or decoded[:4] != key_id:
            continue  # an unknown key: ignored
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(public).verify(decoded[4:], text.encode())
        except InvalidSignature:
            raise ValueError("the known key's signature does not verify") from None
        verified = True
    if not verified:
        raise ValueError("no signature of the known key")
    origin, size, root, *_ = text.split("\n")
    return origin, int(size), base64.b64decode(root)
