"""Sanctions name screening against the full OFAC SDN list (issue #13, KYC-2): the word
index against a brute-force Jaro-Winkler scan in the same run, and re-screening a customer
base.

    python bench/screening.py [--list DIR] [--names N] [--brute N] [--customers N]
                              [--postgres URL]

Prints one JSON object. The list (default /work/shared/data/ofac/sdn-2021: 8,976 entries,
11,910 aliases) is parsed and indexed in memory. `--names` synthetic customer names (first
and last names of many origins, a tenth of them real SDN names with a typo, reordered or
written in Cyrillic) are screened one at a time through the index: the first pass from a
fresh index ("cold": every word looked up in the vocabulary for the first time), then a new
set after the base's common words are cached ("steady"). `--brute` of the same names are
scored by comparing with every name and alias (rapidfuzz Jaro-Winkler, the same scoring):
the baseline, and a check that both find the same entries. Latencies are wall time per name
in one process (one core); names/s per core is from CPU time.

Then `--customers` synthetic customers (0.2% of them listed names) are re-screened through
the real app and database (a scratch SQLite file, or a PostgreSQL schema with --postgres):
the full list loaded as a version, a customer source registered, `run_rescreen` timed end to
end (reading the subjects, screening, recording new hits and their ledger events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from anyascii import anyascii  # noqa: E402, F401 - the transliteration under test
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402
from tests.support.api import running_api  # noqa: E402

from _machine import machine_info  # noqa: E402 - bench/ is on sys.path as the script's dir
from _scratch import scratch_engine  # noqa: E402
from tradeguard.config import Settings  # noqa: E402
from tradeguard.core.clock import FrozenClock  # noqa: E402
from tradeguard.db.engine import unit_of_work  # noqa: E402
from tradeguard.db.migrate import upgrade  # noqa: E402
from tradeguard.kyc.contracts import ScreeningSubject, SubjectKind  # noqa: E402
from tradeguard.kyc.sanctions.container import SanctionsServices  # noqa: E402
from tradeguard.kyc.sanctions.index import INDIVIDUALS, Query, ScreeningIndex  # noqa: E402
from tradeguard.kyc.sanctions.lists import FILES, EntryKind, ParsedList, parse_sdn  # noqa: E402
from tradeguard.kyc.sanctions.scoring import Thresholds  # noqa: E402
from tradeguard.kyc.sanctions.tasks import run_rescreen  # noqa: E402
from tradeguard.ledger.domain import Party  # noqa: E402

FIRST = """james mary john patricia robert jennifer michael linda william elizabeth david barbara
richard susan joseph jessica thomas sarah charles karen daniel nancy matthew lisa anthony
betty mark sandra paul ashley steven kimberly andrew emily joshua donna kenneth michelle
kevin carol brian amanda george melissa timothy deborah jose maria juan carmen luis ana
carlos rosa jorge laura pedro sofia miguel elena mohammed fatima ahmed aisha ali omar hassan
yusuf ibrahim khalid amina layla mustafa hussein abdullah ivan olga sergei natalia dmitry
irina alexei tatiana vladimir svetlana nikolai ekaterina wei li fang jing min yan hui lei
hiroshi yuki kenji aiko raj priya amit anjali vikram sunita kwame ama chinedu ngozi""".split()  # noqa: SIM905 - a word list reads better as text
LAST = """smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez
lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white
harris sanchez clark ramirez lewis robinson walker young allen king wright scott torres
nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter roberts
khan ahmed ali hussain rahman hassan mahmoud abdullah ibrahim said ivanov petrov smirnov
kuznetsov popov sokolov lebedev kozlov novikov morozov wang zhang liu chen yang zhao huang
zhou wu tanaka suzuki sato watanabe patel sharma singh kumar gupta okafor mensah mueller
schmidt schneider fischer weber rossi russo ferrari esposito dubois moreau laurent""".split()  # noqa: SIM905 - a word list reads better as text


def read_list(directory: Path) -> ParsedList:
    return parse_sdn({name: (directory / name).read_bytes() for name in FILES})


def typo(word: str, rng: random.Random) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def cyrillic(name: str) -> str:
    table = str.maketrans("abvgdezijklmnoprstufhc", "абвгдезийклмнопрстуфхц")
    return name.lower().translate(table)


def synthetic_names(parsed: ParsedList, count: int, seed: int, listed_share: float) -> list[str]:
    rng = random.Random(seed)
    people = [e for e in parsed.entries if e.kind is EntryKind.INDIVIDUAL]
    names: list[str] = []
    for _ in range(count):
        if rng.random() < listed_share:
            entry = rng.choice(people)
            words = list(rng.choice(entry.names).words)
            form = rng.randrange(3)
            if form == 0:
                words = [typo(w, rng) for w in words]
            elif form == 1:
                rng.shuffle(words)
            names.append(cyrillic(" ".join(words)) if form == 2 else " ".join(words))
        else:
            names.append(f"{rng.choice(FIRST)} {rng.choice(LAST)}".title())
    return names


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(index: ScreeningIndex, names: list[str], *, brute: bool = False) -> dict[str, Any]:
    latencies: list[float] = []
    cpu0 = time.process_time()
    for name in names:
        start = time.perf_counter()
        query = Query(name, kinds=INDIVIDUALS)
        if brute:
            index.brute_force(query)
        else:
            index.screen(query)
        latencies.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu0
    return {
        "names": len(names),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "max_ms": round(max(latencies) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
        "names_per_s_per_core": round(len(names) / cpu, 1) if cpu else None,
    }


class Customers:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    async def subjects(self, session: AsyncSession) -> AsyncIterator[ScreeningSubject]:
        del session
        for i, name in enumerate(self.names):
            ref = f"c-{i:07d}"
            yield ScreeningSubject(SubjectKind.CUSTOMER, ref, name, ref)


async def rescreen(args: argparse.Namespace, parsed: ParsedList) -> dict[str, Any]:
    names = synthetic_names(parsed, args.customers, seed=7, listed_share=0.002)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        async with scratch_engine(data_dir, args.postgres) as engine:
            await upgrade(engine)
            settings = Settings(data_dir=data_dir / "var", _env_file=None)  # type: ignore[call-arg]
            async with running_api(settings, engine, FrozenClock()) as api:
                services: SanctionsServices = api.app.state.sanctions
                files = await services.service.fetch(str(args.list))
                started = time.perf_counter()
                async with unit_of_work(services.sessions) as session:
                    await services.service.load(
                        session, files, source=str(args.list), actor=Party("operator", "bench")
                    )
                loaded = time.perf_counter() - started
                services.service.register_source(SubjectKind.CUSTOMER, Customers(names))
                started = time.perf_counter()
                cpu0 = time.process_time()
                report = await run_rescreen(services)
                total = time.perf_counter() - started
                cpu = time.process_time() - cpu0
    return {
        "database": "postgresql" if args.postgres else "sqlite",
        "customers": report.subjects,
        "new_hits": len(report.new_hits),
        "list_load_s": round(loaded, 2),
        "rescreen_s": round(total, 1),
        "rescreen_cpu_s": round(cpu, 1),
        "customers_per_s": round(report.subjects / total, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", type=Path, default=Path("/work/shared/data/ofac/sdn-2021"))
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--brute", type=int, default=100)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    parsed = read_list(args.list)
    parse_s = time.perf_counter() - started
    started = time.perf_counter()
    index = ScreeningIndex(parsed.entries, version="bench", thresholds=Thresholds())
    build_s = time.perf_counter() - started

    first = synthetic_names(parsed, args.names, seed=1, listed_share=0.1)
    cold = timed(index, first)
    # Steady state: the base's common words are cached; a new set of names.
    timed(index, synthetic_names(parsed, 5000, seed=2, listed_share=0.1))
    second = synthetic_names(parsed, args.names, seed=3, listed_share=0.1)
    steady = timed(index, second)
    sample = second[: args.brute]
    brute = timed(index, sample, brute=True)
    same = sum(
        [m.entry.entry_id for m in index.screen(Query(n, kinds=INDIVIDUALS))]
        == [m.entry.entry_id for m in index.brute_force(Query(n, kinds=INDIVIDUALS))]
        for n in sample
    )
    result: dict[str, Any] = {
        "list": {
            "entries": len(parsed.entries),
            "names": parsed.name_count,
            "vocabulary_words": index.word_count,
            "parse_s": round(parse_s, 2),
            "index_build_s": round(build_s, 3),
        },
        "index_cold": cold,
        "index_steady": steady,
        "brute_force": brute,
        "same_entries_as_brute_force": f"{same}/{len(sample)}",
        "speedup_p50": round(brute["p50_ms"] / steady["p50_ms"], 1),
    }
    if args.customers:
        result["rescreen"] = asyncio.run(rescreen(args, parsed))
    result["machine"] = machine_info()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
