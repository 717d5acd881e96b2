"""Names reduced to comparable words: Unicode NFKC and case folding, diacritics stripped,
other scripts transliterated to Latin (`anyascii`: Cyrillic, Arabic, Greek, CJK...),
honorifics and company-form words dropped, punctuation removed.

The same function normalises a list's names at load and a subject's name at screening, so
"Владимир Путин", "PUTIN, Vladimir" and "Dr. Vladimir  Putin" all become the same words.
"""

from __future__ import annotations

import re
import unicodedata

from anyascii import anyascii

# Titles and honorifics that say nothing about who someone is (OFAC writes some into names,
# customers add others). Dropped wherever they stand, but never when nothing else is left.
HONORIFICS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "doctor",
        "prof",
        "professor",
        "sir",
        "dame",
        "lord",
        "lady",
        "rev",
        "reverend",
        "fr",
        "father",
        "sheikh",
        "sheik",
        "shaikh",
        "shaykh",
        "shaikha",
        "haji",
        "hajji",
        "hadji",
        "hajj",
        "alhaji",
        "mullah",
        "mulla",
        "maulana",
        "maulvi",
        "mawlawi",
        "imam",
        "ayatollah",
        "hojatoleslam",
        "sayyid",
        "sayed",
        "syed",
        "gen",
        "general",
        "col",
        "colonel",
        "maj",
        "major",
        "capt",
        "captain",
        "lt",
        "lieutenant",
        "adm",
        "admiral",
        "brig",
        "brigadier",
        "sgt",
        "sergeant",
        "cmdr",
        "commander",
        "hon",
        "honourable",
        "honorable",
        "excellency",
        "his",
        "her",
    ]
)

# Words that only say what legal form a company has: "ACME LLC" and "Acme Limited" are the
# same name for screening.
COMPANY_FORMS = frozenset(
    [
        "llc",
        "ltd",
        "limited",
        "co",
        "company",
        "corp",
        "corporation",
        "inc",
        "incorporated",
        "plc",
        "llp",
        "lp",
        "sa",
        "sas",
        "sarl",
        "srl",
        "spa",
        "gmbh",
        "ag",
        "kg",
        "mbh",
        "bv",
        "nv",
        "ab",
        "oy",
        "as",
        "aps",
        "asa",
        "ooo",
        "oao",
        "zao",
        "pao",
        "ao",
        "jsc",
        "ojsc",
        "cjsc",
        "pjsc",
        "tov",
        "pp",
        "pte",
        "pvt",
        "private",
        "pty",
        "bhd",
        "sdn",
        "fze",
        "fzco",
        "fzc",
        "fzllc",
        "est",
        "establishment",
        "sociedad",
        "anonima",
        "cia",
        "compania",
    ]
)

_DROPPED = HONORIFICS | COMPANY_FORMS
# Apostrophes join ("O'Brien" is one word); every other non-alphanumeric splits.
_APOSTROPHES = re.compile(r"['`´‘’ʼ]")
_SEPARATORS = re.compile(r"[^0-9a-z]+")


def fold(text: str) -> str:
    """Lower-case ASCII letters, digits and single spaces: any script, any accents."""
    composed = unicodedata.normalize("NFKC", text).casefold()
    # Strip combining marks first (é → e) so anyascii sees base letters.
    stripped = "".join(
        c for c in unicodedata.normalize("NFKD", composed) if not unicodedata.combining(c)
    )
    latin = anyascii(stripped).casefold()
    latin = _APOSTROPHES.sub("", latin)
    return " ".join(_SEPARATORS.sub(" ", latin).split())


# Company forms written with dots ("S.A.", "L.L.C."): not "A.B." (initials, not a Swedish AB).
DOTTED_FORMS = frozenset(
    ["sa", "spa", "sas", "srl", "sarl", "bv", "nv", "llc", "llp", "plc", "ooo", "oao", "zao"]
)


def _joined_forms(words: list[str]) -> list[str]:
    """Runs of single letters that spell a company form ("S.A.", "L.L.C.", "B.V.") become
    that form; other single letters stay initials."""
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        if run:
            joined = "".join(run)
            out.extend([joined] if len(run) > 1 and joined in DOTTED_FORMS else run)
            run = []
        if word:
            out.append(word)
    return out


# Russian name endings as transliterations differ (Аркадий: "Arkadii", "Arkadiy", "Arkady";
# Юрий: "Yurii", "Yuriy", "Yuri"): one spelling for all.
_ENDINGS = (("iy", "y"), ("ii", "y"), ("yy", "y"), ("ij", "y"))


def _ending(word: str) -> str:
    if len(word) > 4:
        for ending, common in _ENDINGS:
            if word.endswith(ending):
                return word[: -len(ending)] + common
    return word


_WIDE_SPACE = re.compile(r"\s{2,}|\t")


def _joined_letters(words: list[str]) -> list[str]:
    """Runs of three or more single letters are one word spelt out ("B a s h a r" →
    "bashar"): spacing letters must not hide a name. Two stay initials ("A. B. Smith")."""
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        if run:
            out.extend(["".join(run)] if len(run) >= 3 else run)
            run = []
        if word:
            out.append(word)
    return out


def name_words(text: str) -> tuple[str, ...]:
    """The words of a name that identify it: folded, letters spaced out joined, without
    honorifics and company forms (kept when they are all there is, so "Co" alone still has a
    word)."""
    # Two or more spaces (or a tab) part the spelt-out words: "B a s h a r  A s s a d".
    words = [
        _ending(w)
        for part in _WIDE_SPACE.split(text)
        for w in _joined_letters(_joined_forms(fold(part).split()))
    ]
    kept = [w for w in words if w not in _DROPPED]
    return tuple(kept or words)
