"""How alike a screened name is to a list's name, and why (after Moov Watchman's word-wise
Jaro-Winkler scoring, tuned like OpenSanctions' matcher for OFAC's search tool).

Each word of the subject's name is paired with at most one word of the list's name, best
pairs first (so word order does not matter); a pair's similarity is Jaro-Winkler (an initial
pairs with any word it begins). The score is the pairs' similarity weighted by word length,
lowered for every word left unpaired: a little for a middle name one side leaves out, a lot
for a word with nothing like it on the other side. A date of birth and a nationality, when the
subject gives them, move the score up when they agree with the entry and down when they
contradict it; but they are the subject's claims, so they never take a name that reaches
review below review (index.decide). Every step leaves a plain-language reason. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import permutations

from rapidfuzz.distance import JaroWinkler

from tradeguard.kyc.sanctions.lists import BirthDate, ListEntry, ListName, NameKind

# Two words closer than this are a pair; below it they are different words.
PAIR_MIN = 0.84
# An initial ("A.") against a word it begins.
INITIAL_SIMILARITY = 0.9
# Each word one side leaves out while every word of the other side is paired (a missing
# middle name or patronymic), when at least two words were paired.
MISSING_WORD_FACTOR = 0.92
# Each word with no counterpart otherwise (a different first name: "John Smith" is not
# "Mark Smith").
UNMATCHED_WORD_FACTOR = 0.70
# The names run together ("Abubakar" for "Abu Bakar") count a little less than word pairs,
# and only when the joined spellings are nearly the same.
JOINED_FACTOR = 0.97
JOINED_MIN = 0.95
# Particles of Arabic, Dutch, Spanish... names ("al", "bin", "van", "de"): one side leaving
# one out costs little.
PARTICLES = frozenset(
    [
        "al",
        "el",
        "bin",
        "ibn",
        "bint",
        "ben",
        "abu",
        "umm",
        "de",
        "da",
        "del",
        "dela",
        "di",
        "du",
        "dos",
        "das",
        "van",
        "von",
        "der",
        "la",
        "le",
    ]
)
PARTICLE_FACTOR = 0.98

DOB_EXACT_BONUS = 0.05
DOB_WITHIN_BONUS = 0.02
DOB_NEAR_PENALTY = 0.05  # within a year of a list date: perhaps a mistyped year
DOB_CONTRADICTS_PENALTY = 0.15
NATIONALITY_BONUS = 0.02
NATIONALITY_PENALTY = 0.05

# Words of different lengths are less alike than Jaro-Winkler's prefix bonus says ("Rosa"
# is not "Rosalina"): the similarity loses this share of the length difference (Watchman
# applies a length-difference adjustment too).
LENGTH_PENALTY = 0.3

Similarity = Callable[[str, str], float]


def length_adjusted(a: str, b: str, similarity: float) -> float:
    longer = max(len(a), len(b))
    return similarity * (1 - LENGTH_PENALTY * abs(len(a) - len(b)) / longer)


def jaro_winkler(a: str, b: str) -> float:
    """Word similarity: Jaro-Winkler, and an initial against any word it begins."""
    if a == b:
        return 1.0
    if len(a) == 1 or len(b) == 1:
        return INITIAL_SIMILARITY if a[0] == b[0] else 0.0
    return length_adjusted(a, b, float(JaroWinkler.normalized_similarity(a, b)))


@dataclass(frozen=True, slots=True)
class WordPair:
    query: str
    listed: str
    similarity: float


@dataclass(frozen=True, slots=True)
class NameScore:
    score: float
    pairs: tuple[WordPair, ...]
    unpaired_query: tuple[str, ...]
    unpaired_listed: tuple[str, ...]
    joined: bool = False


def score_words(
    query: Sequence[str], listed: Sequence[str], similarity: Similarity = jaro_winkler
) -> NameScore:
    """Best one-to-one pairing of the words and the score it earns."""
    if not query or not listed:
        return NameScore(0.0, (), tuple(query), tuple(listed))
    scored = sorted(
        (
            (s, qi, li)
            for qi, q in enumerate(query)
            for li, w in enumerate(listed)
            if (s := similarity(q, w)) >= PAIR_MIN
        ),
        reverse=True,
    )
    used_q: set[int] = set()
    used_l: set[int] = set()
    pairs: list[WordPair] = []
    weighted = weights = 0.0
    for s, qi, li in scored:
        if qi in used_q or li in used_l:
            continue
        used_q.add(qi)
        used_l.add(li)
        pairs.append(WordPair(query[qi], listed[li], s))
        w = max(len(query[qi]), len(listed[li]))
        weighted += s * w
        weights += w
    unpaired_q = tuple(q for i, q in enumerate(query) if i not in used_q)
    unpaired_l = tuple(w for i, w in enumerate(listed) if i not in used_l)
    # Too few words paired (one shared surname of two): not the same name. The index's
    # candidate generation asks the same, so index and full scan agree.
    whole_words = sum(1 for p in pairs if distinctive(p.query) and distinctive(p.listed))
    needed = min(
        2,
        len({q for q in query if distinctive(q)}),
        len({w for w in listed if distinctive(w)}),
    )
    score = 0.0
    if pairs and whole_words >= needed:
        score = weighted / weights
        for _word, cost in word_costs(pairs, unpaired_q, unpaired_l):
            score *= cost
    if len(query) != len(listed):
        joined_q, joined_l = "".join(query), "".join(listed)
        if abs(len(joined_q) - len(joined_l)) <= 1:
            similar = float(JaroWinkler.normalized_similarity(joined_q, joined_l))
            if similar >= JOINED_MIN and similar * JOINED_FACTOR > score:
                return NameScore(similar * JOINED_FACTOR, (), (), (), joined=True)
    return NameScore(score, tuple(pairs), unpaired_q, unpaired_l)


# A name written without spaces ("BASHARALASSAD") is compared with the list's words run
# together in every order (names have few words; beyond this many, only as listed).
RUN_TOGETHER_MIN_CHARS = 8
_PERMUTE_MAX_WORDS = 5


def score_run_together(joined: str, listed: Sequence[str]) -> NameScore:
    """A name with no spaces against a list's name run together, in any word order, with
    or without its particles: JOINED_FACTOR times Jaro-Winkler when that is at least JOINED_MIN."""
    variants: list[tuple[tuple[str, ...], float]] = [(tuple(listed), 1.0)]
    kept = tuple(w for w in listed if w not in PARTICLES)
    if kept and kept != tuple(listed):
        variants.append((kept, 1.0))
    # A missing middle name or patronymic ("ArtemLifshits" for "LIFSHITS, Artem
    # Mikhaylovich") costs what it costs written with spaces.
    if len(kept) >= 3:
        variants.extend((kept[:i] + kept[i + 1 :], MISSING_WORD_FACTOR) for i in range(len(kept)))
    best = 0.0
    for words, factor in variants:
        orders = (
            permutations(words)
            if len(words) <= _PERMUTE_MAX_WORDS
            else iter([words, tuple(reversed(words))])
        )
        for order in orders:
            candidate = "".join(order)
            if abs(len(candidate) - len(joined)) > 2:
                continue
            similar = length_adjusted(
                joined, candidate, float(JaroWinkler.normalized_similarity(joined, candidate))
            )
            if similar >= JOINED_MIN:
                best = max(best, similar * factor)
    if best < JOINED_MIN * MISSING_WORD_FACTOR:
        return NameScore(0.0, (), (joined,), tuple(listed))
    return NameScore(best * JOINED_FACTOR, (), (), (), joined=True)


def distinctive(word: str) -> bool:
    """A word that can tell names apart: not an initial, not a particle ("al", "bin")."""
    return len(word) > 1 and word not in PARTICLES


def unpaired_factor(
    pairs: Sequence[WordPair], unpaired_q: Sequence[str], unpaired_l: Sequence[str]
) -> float:
    """What each unpaired word costs: little when one side is wholly paired (the other
    has a middle name more), much when both sides have words the other lacks."""
    one_side_whole = not unpaired_q or not unpaired_l
    return MISSING_WORD_FACTOR if one_side_whole and len(pairs) >= 2 else UNMATCHED_WORD_FACTOR


def every_listed_word_exact(pairs: Sequence[WordPair], unpaired_l: Sequence[str]) -> bool:
    """Every word of the list's name paired exactly (at least two of them): the subject's
    further words are only names the list does not record (a middle name, a patronymic)."""
    return not unpaired_l and len(pairs) >= 2 and all(p.similarity >= 0.9999 for p in pairs)


def word_costs(
    pairs: Sequence[WordPair], unpaired_q: Sequence[str], unpaired_l: Sequence[str]
) -> list[tuple[str, float]]:
    """The factor each unpaired word costs. When every word of the list's name matched
    exactly, the subject's extra given or middle names cost one missing-word factor in all
    (never enough to hide the match: "Igor Ivanovich Petrovich Sechin" is "SECHIN, Igor")."""
    factor = unpaired_factor(pairs, unpaired_q, unpaired_l)
    costs: list[tuple[str, float]] = []
    extra_counted = False
    extras_once = every_listed_word_exact(pairs, unpaired_l)
    for word in unpaired_l:
        costs.append((word, PARTICLE_FACTOR if word in PARTICLES else factor))
    for word in unpaired_q:
        if word in PARTICLES:
            costs.append((word, PARTICLE_FACTOR))
        elif extras_once and extra_counted:
            costs.append((word, 1.0))
        else:
            costs.append((word, factor))
            extra_counted = True
    return costs


@dataclass(frozen=True, slots=True)
class Adjustment:
    delta: float
    reason: str


def birth_date_adjustment(
    birth_date: date | None, listed: Sequence[BirthDate]
) -> Adjustment | None:
    """What the subject's date of birth says against the entry's dates of birth."""
    if birth_date is None:
        return None
    if not listed:
        return Adjustment(0.0, "the list gives no date of birth for this entry")
    shown = ", ".join(b.text for b in listed)
    if any(b.exact and b.earliest == birth_date for b in listed):
        return Adjustment(
            DOB_EXACT_BONUS, f"date of birth {birth_date.isoformat()} is the list's ({shown})"
        )
    if any(b.earliest <= birth_date <= b.latest for b in listed):
        return Adjustment(
            DOB_WITHIN_BONUS,
            f"date of birth {birth_date.isoformat()} falls within the list's ({shown})",
        )
    near = min(
        min(abs((birth_date - b.earliest).days), abs((birth_date - b.latest).days)) for b in listed
    )
    if near <= 366:
        return Adjustment(
            -DOB_NEAR_PENALTY,
            f"date of birth {birth_date.isoformat()} is within a year of the list's ({shown}) "
            "but not on it",
        )
    return Adjustment(
        -DOB_CONTRADICTS_PENALTY,
        f"date of birth {birth_date.isoformat()} contradicts every date of birth on the list "
        f"({shown})",
    )


def nationality_adjustment(nationality: str | None, entry: ListEntry) -> Adjustment | None:
    if nationality is None:
        return None
    code = nationality.upper()
    known = entry.nationalities
    if not known:
        return Adjustment(0.0, "the list gives no nationality for this entry")
    shown = ", ".join(known)
    if code in known:
        return Adjustment(NATIONALITY_BONUS, f"nationality {code} is among the list's ({shown})")
    return Adjustment(-NATIONALITY_PENALTY, f"nationality {code} is not among the list's ({shown})")


def _pct(factor: float) -> str:
    return f"{round((1 - factor) * 100)}%"


def name_reasons(found: NameScore, name: ListName) -> list[str]:
    aka = {
        NameKind.PRIMARY: "the list's name",
        NameKind.AKA: "an alias (a.k.a.) on the list",
        NameKind.FKA: "a former name (f.k.a.) on the list",
        NameKind.NKA: "a new name (n.k.a.) on the list",
    }[name.kind]
    reasons = [f"matched {aka}: {name.name!r}"]
    if found.joined:
        reasons.append(
            "the words run together are alike "
            f"(Jaro-Winkler {found.score / JOINED_FACTOR:.2f}, less {_pct(JOINED_FACTOR)})"
        )
        return reasons
    for p in found.pairs:
        if p.similarity >= 0.9999:
            how = "exactly"
        elif len(p.query) == 1 or len(p.listed) == 1:
            how = f"as an initial ({p.similarity:.2f})"
        else:
            how = f"closely, Jaro-Winkler {p.similarity:.2f} (a spelling difference)"
        reasons.append(f"word {p.query!r} matched {p.listed!r} {how}")
    costs = word_costs(found.pairs, found.unpaired_query, found.unpaired_listed)
    listed = len(found.unpaired_listed)
    for i, (w, cost) in enumerate(costs):
        if i < listed:
            reasons.append(
                f"the list's word {w!r} is missing from the name screened (less {_pct(cost)})"
            )
        elif cost >= 1.0:
            reasons.append(
                f"word {w!r} has no counterpart on the list (no further cost: every word of "
                "the list's name matched exactly)"
            )
        else:
            reasons.append(f"word {w!r} has no counterpart on the list (less {_pct(cost)})")
    return reasons


@dataclass(frozen=True, slots=True)
class Thresholds:
    block: float = 0.95
    review: float = 0.85


def clamp(score: float) -> float:
    return max(0.0, min(1.0, score))
