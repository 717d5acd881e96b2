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

from collections.abc import Iterable, Sequence
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
    NameScore,
    Similarity,
    Thresholds,
    birth_date_adjustment,
    clamp,
    jaro_winkler,
    name_reasons,
    nationality_adjustment,
    score_words,
)

INDIVIDUALS = frozenset({EntryKind.INDIVIDUAL})
EVERY_KIND = frozenset(EntryKind)
# Bound on the per-index cache of word look-ups (entries are small dicts).
_WORD_CACHE_MAX = 200_000


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


def decide(score: float, thresholds: Thresholds) -> ScreeningDecision:
    if score >= thresholds.block:
        return ScreeningDecision.BLOCK
    if score >= thresholds.review:
        return ScreeningDecision.REVIEW
    return ScreeningDecision.CLEAR


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
    for adjustment in (
        birth_date_adjustment(query.birth_date, entry.birth_dates),
        nationality_adjustment(query.nationality, entry),
    ):
        if adjustment is None:
            continue
        score += adjustment.delta
        sign = f" ({adjustment.delta:+.2f})" if adjustment.delta else ""
        reasons.append(adjustment.reason + sign)
    score = clamp(score)
    decision = decide(score, thresholds)
    reasons.append(
        f"score {score:.2f}: {decision.value} (block at {thresholds.block:.2f}, review at "
        f"{thresholds.review:.2f})"
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
        self._cache: dict[str, dict[str, float]] = {}

    @property
    def name_count(self) -> int:
        return len(self._names)

    @property
    def word_count(self) -> int:
        return len(self._words)

    def _close_words(self, word: str) -> dict[str, float]:
        """The list's words within PAIR_MIN of `word`, with their similarity."""
        found = self._cache.get(word)
        if found is None:
            found = {
                w: s
                for w, s, _ in process.extract(
                    word,
                    self._words,
                    scorer=JaroWinkler.normalized_similarity,
                    score_cutoff=PAIR_MIN,
                    limit=None,
                )
            }
            if len(self._cache) >= _WORD_CACHE_MAX:
                self._cache.clear()
            self._cache[word] = found
        return found

    def _candidates(self, close: dict[str, dict[str, float]]) -> dict[int, set[str]]:
        """For each candidate name, which of the screened words found a close word in it."""
        seen: dict[int, set[str]] = {}
        for word, similar in close.items():
            for listed in similar:
                for ni in self._postings[self._vocabulary[listed]]:
                    seen.setdefault(ni, set()).add(word)
        return seen

    def screen(self, query: Query, *, limit: int = 10) -> list[Match]:
        """The entries whose best name scores at least the review threshold, best first."""
        words = name_words(query.name)
        if not words:
            return []
        full = [w for w in words if len(w) > 1]
        if not full:
            return []
        close = {w: self._close_words(w) for w in set(full)}
        seen = self._candidates(close)

        def similarity(q: str, w: str) -> float:
            if len(q) == 1 or len(w) == 1:
                return INITIAL_SIMILARITY if q[0] == w[0] else 0.0
            return close[q].get(w, 0.0)

        distinct = len(set(full))
        best: dict[int, tuple[float, ListName, NameScore]] = {}
        for ni, hit in seen.items():
            ei, name = self._names[ni]
            if len(hit) < min(2, distinct, len(set(name.words))):
                continue
            entry = self.entries[ei]
            if entry.kind not in query.kinds:
                continue
            found = score_words(words, name.words, similarity)
            if found.score <= 0:
                continue
            current = best.get(ei)
            if current is None or found.score > current[0]:
                best[ei] = (found.score, name, found)
        return self._finish(best, query, limit)

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
        return self._finish(best, query, limit)


def best_of(matches: Sequence[Match]) -> Match | None:
    return matches[0] if matches else None
