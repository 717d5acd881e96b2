"""The in-memory screening index of one list version: every name's words in an inverted
index, so a screened name is scored only against names sharing a word like one of its own.

Candidate generation is by word: each word of the screened name is compared (Jaro-Winkler,
in rapidfuzz's C++ loop) with the list's vocabulary of distinct words, about 13,000 for the
full SDN list, and the names holding a close word are the candidates. Unlike blocking on a
word's first letters this still finds "Deripasca" for "Deripaska" and "Mohamed" for
"Muhammad", and the word similarities it computes are the ones the score needs. A word seen
before is answered from a cache (customers share first names and surnames).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler

from tradeguard.kyc.contracts import ScreeningDecision
from tradeguard.kyc.sanctions.lists import EntryKind, ListEntry, ListName
from tradeguard.kyc.sanctions.normalize import name_words
from tradeguard.kyc.sanctions.scoring import (
    INITIAL_SIMILARITY,
    PAIR_MIN,
    RUN_TOGETHER_MIN_CHARS,
    NameScore,
    Similarity,
    Thresholds,
    birth_date_adjustment,
    clamp,
    distinctive,
    jaro_winkler,
    length_adjusted,
    name_reasons,
    nationality_adjustment,
    score_run_together,
    score_words,
)

INDIVIDUALS = frozenset({EntryKind.INDIVIDUAL})
EVERY_KIND = frozenset(EntryKind)
# Bound on the per-index cache of word look-ups (entries are small dicts).
_WORD_CACHE_MAX = 50_000


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    birth_date: date | None = None
    nationality: str | None = None
    kinds: frozenset[EntryKind] = EVERY_KIND


@dataclass(frozen=True, slots=True)
class Match:
    entry: ListEntry
    name: ListName
    name_score: float
    score: float
    decision: ScreeningDecision
    reasons: tuple[str, ...]


def decide(
    name_score: float, score: float, thresholds: Thresholds, *, corroborated: bool
) -> ScreeningDecision:
    """The name alone decides whether a person looks at it: a name score at or above review
    is never taken below REVIEW by a date of birth or nationality the subject supplied (those
    are claims, not evidence). An automatic BLOCK needs more than a name (OFAC: a name match
    is not a match until the other identifiers are checked): the score at or above block
    AND corroboration, an identifier from the list that agrees (a date of birth, a
    nationality or citizenship) or, for an entity, an exact distinctive multi-word name."""
    if score >= thresholds.block and corroborated:
        return ScreeningDecision.BLOCK
    if score >= thresholds.review or name_score >= thresholds.review:
        return ScreeningDecision.REVIEW
    return ScreeningDecision.CLEAR


def exact_entity_name(entry: ListEntry, found: NameScore) -> bool:
    """An entity's (vessel's, aircraft's) name matched word for word: at least two words
    (after company forms are dropped), one of them a distinctive word of four letters or
    more ("B-Finance Ltd", "Hesa Trade Center"): a company's name, not a shared personal
    name."""
    return (
        entry.kind is not EntryKind.INDIVIDUAL
        and not found.joined
        and not found.unpaired_query
        and not found.unpaired_listed
        and len(found.pairs) >= 2
        and all(p.similarity >= 0.9999 for p in found.pairs)
        and any(distinctive(p.listed) and len(p.listed) >= 4 for p in found.pairs)
    )


def explain(
    entry: ListEntry,
    name: ListName,
    found: NameScore,
    query: Query,
    thresholds: Thresholds,
) -> Match:
    """The final score of one entry's best name, with every reason."""
    reasons = name_reasons(found, name)
    score = found.score
    reasons.append(f"name score {score:.2f}")
    corroborations: list[str] = []
    for what, adjustment in (
        ("date of birth", birth_date_adjustment(query.birth_date, entry.birth_dates)),
        ("nationality", nationality_adjustment(query.nationality, entry)),
    ):
        if adjustment is None:
            continue
        score += adjustment.delta
        sign = f" ({adjustment.delta:+.2f})" if adjustment.delta else ""
        reasons.append(adjustment.reason + sign)
        if adjustment.delta > 0:
            corroborations.append(what)
    if exact_entity_name(entry, found):
        corroborations.append("the entity's exact name")
    score = clamp(score)
    decision = decide(found.score, score, thresholds, corroborated=bool(corroborations))
    reasons.append(
        f"score {score:.2f}: {decision.value} (block at {thresholds.block:.2f}, review at "
        f"{thresholds.review:.2f})"
    )
    if decision is ScreeningDecision.BLOCK:
        reasons.append(f"corroborated by {', '.join(corroborations)}")
    elif score >= thresholds.block:
        reasons.append(
            "not blocked automatically: nothing but the name matched (no date of birth or "
            "nationality from the list agrees); a person decides"
        )
    elif score < thresholds.review <= found.score:
        reasons.append(
            "the name alone reaches review: a date of birth or nationality the subject gave "
            "differs from the list's, which a reviewer weighs (a claim, not evidence)"
        )
    for link in entry.linked_to:
        reasons.append(f"the entry is linked to {link} (OFAC 'Linked To')")
    return Match(entry, name, found.score, score, decision, tuple(reasons))


class ScreeningIndex:
    def __init__(
        self, entries: Iterable[ListEntry], *, version: str, thresholds: Thresholds
    ) -> None:
        self.version = version
        self.thresholds = thresholds
        self.entries: tuple[ListEntry, ...] = tuple(entries)
        self._names: list[tuple[int, ListName]] = []
        vocabulary: dict[str, int] = {}
        postings: list[list[int]] = []
        for ei, entry in enumerate(self.entries):
            for name in entry.names:
                ni = len(self._names)
                self._names.append((ei, name))
                for word in set(name.words):
                    wi = vocabulary.setdefault(word, len(vocabulary))
                    if wi == len(postings):
                        postings.append([])
                    postings[wi].append(ni)
        self._vocabulary = vocabulary
        self._words = list(vocabulary)
        self._postings = postings
        # Names with a single distinctive word ("HESA"): one screened word may match them.
        self._single = frozenset(
            ni
            for ni, (_, name) in enumerate(self._names)
            if len({w for w in name.words if distinctive(w)}) <= 1
        )
        self._cache: dict[str, tuple[dict[str, float], frozenset[int]]] = {}

    @property
    def name_count(self) -> int:
        return len(self._names)

    @property
    def word_count(self) -> int:
        return len(self._words)

    def _close_words(self, word: str) -> tuple[dict[str, float], frozenset[int]]:
        """The list's words within PAIR_MIN of `word` with their similarity, and the names
        holding any of them."""
        found = self._cache.get(word)
        if found is None:
            close = {
                w: s
                for w, s, _ in process.extract(
                    word,
                    self._words,
                    scorer=JaroWinkler.normalized_similarity,
                    score_cutoff=PAIR_MIN,
                    limit=None,
                )
            }
            names: set[int] = set()
            for listed in close:
                names.update(self._postings[self._vocabulary[listed]])
            found = (close, frozenset(names))
            if len(self._cache) >= _WORD_CACHE_MAX:
                self._cache.clear()
            self._cache[word] = found
        return found

    def _candidates(self, holders: list[frozenset[int]]) -> set[int]:
        """Names holding close words of at least two screened words (set intersections, so
        a common word such as "Ali" costs little), or of one when either side has only one
        distinctive word."""
        if len(holders) == 1:
            return set(holders[0])
        found: set[int] = set()
        for i, first in enumerate(holders):
            found.update(first & self._single)
            for second in holders[i + 1 :]:
                found.update(first & second)
        return found

    def screen(self, query: Query, *, limit: int = 10) -> list[Match]:
        """The entries whose best name scores at least the review threshold, best first."""
        words = name_words(query.name)
        # Initials and particles ("al", "bin", "de") find too many names to say which to
        # compare; they still count in the score.
        full = sorted({w for w in words if distinctive(w)})
        if not full:
            return []
        looked_up = {w: self._close_words(w) for w in full}
        close = {w: found[0] for w, found in looked_up.items()}
        candidates = self._candidates([found[1] for found in looked_up.values()])

        def similarity(q: str, w: str) -> float:
            if q == w:
                return 1.0
            if len(q) == 1 or len(w) == 1:
                return INITIAL_SIMILARITY if q[0] == w[0] else 0.0
            found = close.get(q)
            if found is None:  # a particle: compared directly
                return jaro_winkler(q, w)
            return length_adjusted(q, w, found.get(w, 0.0))

        best: dict[int, tuple[float, ListName, NameScore]] = {}
        for ni in candidates:
            ei, name = self._names[ni]
            entry = self.entries[ei]
            if entry.kind not in query.kinds:
                continue
            found = score_words(words, name.words, similarity)
            if found.score <= 0:
                continue
            current = best.get(ei)
            if current is None or found.score > current[0]:
                best[ei] = (found.score, name, found)
        self._run_together(words, full, best, query, self._run_together_candidates)
        return self._finish(best, query, limit)

    def _run_together_words(self, full: Sequence[str]) -> str | None:
        """The screened name run together, when it looks written without spaces: at most
        two distinctive words, one of them long and like no word of the list
        ("BASHARALASSAD", "B a s h a r A s s a d" once its letters are joined)."""
        if not 1 <= len(full) <= 2:
            return None
        if not any(len(w) >= RUN_TOGETHER_MIN_CHARS and not self._pairs_any(w) for w in full):
            return None
        return "".join(full)

    def _pairs_any(self, word: str) -> bool:
        """Whether some list word pairs with `word` (length-adjusted, as the score does)."""
        close = self._close_words(word)[0]
        return any(length_adjusted(word, w, s) >= PAIR_MIN for w, s in close.items())

    def _run_together_candidates(self, joined: str) -> set[int]:
        """Names holding at least two list words found inside the run-together name (or
        their one distinctive word): every substring of three letters or more is looked up
        in the vocabulary (a set look-up each)."""
        inside: set[str] = set()
        n = len(joined)
        for i in range(n):
            for j in range(i + 3, n + 1):
                if joined[i:j] in self._vocabulary:
                    inside.add(joined[i:j])
        counts: dict[int, int] = {}
        for word in inside:
            if not distinctive(word):
                continue
            for ni in self._postings[self._vocabulary[word]]:
                counts[ni] = counts.get(ni, 0) + 1
        return {ni for ni, c in counts.items() if c >= 2 or ni in self._single}

    def _all_names(self, joined: str) -> set[int]:
        del joined
        return set(range(len(self._names)))

    def _run_together(
        self,
        words: Sequence[str],
        full: Sequence[str],
        best: dict[int, tuple[float, ListName, NameScore]],
        query: Query,
        candidates_of: Callable[[str], set[int]],
    ) -> None:
        """Also compare a name written without spaces with the list's names run together."""
        del words
        joined = self._run_together_words(full)
        if joined is None:
            return
        for ni in candidates_of(joined):
            ei, name = self._names[ni]
            if self.entries[ei].kind not in query.kinds:
                continue
            found = score_run_together(joined, name.words)
            current = best.get(ei)
            if found.score > 0 and (current is None or found.score > current[0]):
                best[ei] = (found.score, name, found)

    def _finish(
        self, best: dict[int, tuple[float, ListName, NameScore]], query: Query, limit: int
    ) -> list[Match]:
        # A date of birth can add at most this much: below it no adjustment reaches review.
        floor = self.thresholds.review - 0.07
        matches = [
            explain(self.entries[ei], name, found, query, self.thresholds)
            for ei, (score, name, found) in best.items()
            if score >= floor
        ]
        matches = [m for m in matches if m.decision is not ScreeningDecision.CLEAR]
        matches.sort(key=lambda m: (-m.score, m.entry.entry_id))
        return matches[:limit]

    def brute_force(
        self, query: Query, *, limit: int = 10, similarity: Similarity = jaro_winkler
    ) -> list[Match]:
        """The same scores by comparing the name with every name and alias of the list (the
        benchmark's baseline, and the tests' proof that the index misses nothing)."""
        words = name_words(query.name)
        best: dict[int, tuple[float, ListName, NameScore]] = {}
        for ni, (ei, name) in enumerate(self._names):
            del ni
            if self.entries[ei].kind not in query.kinds:
                continue
            found = score_words(words, name.words, similarity)
            current = best.get(ei)
            if found.score > 0 and (current is None or found.score > current[0]):
                best[ei] = (found.score, name, found)
        full = sorted({w for w in words if distinctive(w)})
        self._run_together(words, full, best, query, self._all_names)
        return self._finish(best, query, limit)


def best_of(matches: Sequence[Match]) -> Match | None:
    return matches[0] if matches else None
