"""Split knowledge of the master key (PCI DSS 3.6.1.2 / 3.7.6): Shamir shares as SLIP-0039
mnemonics, with the reference implementation by SatoshiLabs (`shamir-mnemonic`).

Any `threshold` of the shares rebuild the key; fewer reveal nothing about it. Each share is
33 words with its own checksum (RS1024), so a mistyped word is caught before combining, and
all shares of one split carry the same random identifier, so shares of two splits are not
mixed by accident. The combined key is checked against the fingerprint printed at the split.
"""

from __future__ import annotations

from collections.abc import Sequence

import shamir_mnemonic

from tradeguard.core.errors import InvalidInput

MAX_SHARES = 16  # SLIP-0039's limit per group


class SharesRefused(InvalidInput):
    slug = "key-shares-refused"
    title = "The key shares were refused"


def split_secret(secret: bytes, *, threshold: int, shares: int) -> list[str]:
    """`shares` mnemonics, any `threshold` of which rebuild `secret`."""
    if not 1 <= threshold <= shares <= MAX_SHARES:
        raise SharesRefused(f"need 1 <= threshold <= shares <= {MAX_SHARES}")
    if threshold == 1 and shares > 1:
        # SLIP-0039 refuses this too: each share would simply be the key.
        raise SharesRefused("a threshold of 1 would make every share a full copy of the key")
    groups = shamir_mnemonic.generate_mnemonics(1, [(threshold, shares)], secret)
    return [str(words) for words in groups[0]]


def combine_shares(mnemonics: Sequence[str]) -> bytes:
    """The secret the shares were split from; SharesRefused for too few, mixed or mistyped."""
    cleaned = [" ".join(m.split()).lower() for m in mnemonics if m.strip()]
    if not cleaned:
        raise SharesRefused("no shares given")
    try:
        return bytes(shamir_mnemonic.combine_mnemonics(cleaned))
    except (shamir_mnemonic.MnemonicError, ValueError) as exc:
        # The library's messages may quote words of a share: say what is wrong in our words.
        raise SharesRefused(_reason(str(exc))) from None


def _reason(message: str) -> str:
    text = message.lower()
    if "insufficient" in text or "wrong number" in text:
        return "too few shares (or too many of one group) to rebuild the key"
    if "identifier" in text or "common parameters" in text or "do not match" in text:
        return "the shares come from different splits"
    if "checksum" in text or "invalid mnemonic" in text or "length" in text or "padding" in text:
        return "a share has a mistyped or missing word (its checksum does not match)"
    return "the shares are not valid SLIP-0039 shares of one key"
