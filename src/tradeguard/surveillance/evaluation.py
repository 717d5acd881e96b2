"""Precision, recall and alert latency of each detector on a generated scenario.

The scenario's documents go through exactly what the stream does with ledger events
(`parse_market_event`, the engine, the folding rule of the alert store), in memory.

- An episode of manipulation is **detected** when its detector raised a finding for its
  owner and symbol between the episode's first manipulative event and a while after its
  last (`GRACE_NS`: its resting orders may still trade). Recall = detected episodes /
  episodes, per detector. Episodes that never came about (a spoofer whose genuine order
  found nothing to trade with) are counted apart, as `not_completed`, and not scored.
- An alert (findings folded as the store folds them) is **true** when one of its findings
  detected an episode of its detector. Precision = true alerts / alerts, per detector.
- **Detection delay**: market time from an episode's first manipulative event to the
  finding that detected it (the pattern is not complete before its last step, so this is
  mostly the episode's own length).
- **Processing latency**: wall-clock time the engine took over the event that completed a
  finding (on this machine, without the database; the stream adds its poll interval and
  the ledger sequencer's).

Near-miss episodes (honest trading that looks like manipulation) are reported by kind: how
many of them drew an alert of any detector.

Rows are the detectors (by requirement), except that momentum ignition gets a row of its
own (`PRE-3/MI`) beside the other PRE-3 models (marking the close, quote stuffing): it is
a model of its own with its own episodes, and its quality is read apart.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, replace
from typing import Any

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.surveillance.domain import (
    AlertType,
    Detector,
    Finding,
    FindingFolder,
    SurveillanceParameters,
)
from tradeguard.surveillance.engine import SurveillanceEngine
from tradeguard.surveillance.events import MARKET_EVENT_TYPES, parse_market_event
from tradeguard.surveillance.owners import BeneficialOwners
from tradeguard.surveillance.scenarios import (
    Episode,
    EpisodeKind,
    Scenario,
    ScenarioConfig,
    generate,
)

GRACE_NS = 300 * NS_PER_SECOND
MOMENTUM_ROW = "PRE-3/MI"
ROWS = (*(detector.value for detector in Detector), MOMENTUM_ROW)


def row_of_finding(finding: Finding) -> str:
    """The evaluation row a finding is scored in."""
    if finding.alert_type is AlertType.MOMENTUM_IGNITION:
        return MOMENTUM_ROW
    return finding.detector.value


def row_of_episode(episode: Episode) -> str | None:
    """The evaluation row an episode is scored in (None for a near-miss)."""
    if episode.kind is EpisodeKind.MOMENTUM_IGNITION:
        return MOMENTUM_ROW
    return None if episode.detector is None else episode.detector.value


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _covers(episode: Episode, finding: Finding) -> bool:
    return (
        row_of_episode(episode) == row_of_finding(finding)
        and (episode.owner == finding.owner or finding.owner in episode.others)
        and episode.symbol == finding.symbol
        and episode.start_ns <= finding.trigger_ns <= episode.end_ns + GRACE_NS
    )


def _touches(episode: Episode, finding: Finding) -> bool:
    """A finding about a near-miss: its owner, in its symbol(s), during it."""
    return (
        episode.owner == finding.owner
        and finding.symbol in episode.symbol.split(",")
        and episode.start_ns <= finding.trigger_ns <= episode.end_ns + GRACE_NS
    )


def scenario_parameters(
    scenario: Scenario, params: SurveillanceParameters
) -> SurveillanceParameters:
    """`params` with the scenario's staff and proprietary accounts among MAN-4's insiders
    (a firm's register of them is its own; the generated market has its own accounts)."""
    insiders = params.frontrun.insiders | scenario.insiders
    return replace(params, frontrun=replace(params.frontrun, insiders=insiders))


def run_scenario(
    scenario: Scenario, params: SurveillanceParameters
) -> tuple[list[tuple[Finding, int]], dict[str, int], float]:
    """Every finding with the engine's time over its event (ns), the event counts, and the
    engine's total wall time (s)."""
    owners = BeneficialOwners(scenario.account_users)
    engine = SurveillanceEngine(scenario_parameters(scenario, params))
    engine.set_owners(owners.owner)
    market_types = frozenset(MARKET_EVENT_TYPES)
    found: list[tuple[Finding, int]] = []
    counts = {"events": len(scenario.documents), "market_events": 0}
    clock = time.perf_counter_ns
    began = clock()
    for seq, document in enumerate(scenario.documents, start=1):
        if document["type"] not in market_types:
            continue
        event = parse_market_event(seq, document, owners.owner)
        if event is None:  # pragma: no cover - the generator writes market events only
            continue
        counts["market_events"] += 1
        before = clock()
        findings = engine.feed(event)
        if findings:
            spent = clock() - before
            found.extend((finding, spent) for finding in findings)
    return found, counts, (clock() - began) / 1e9


def evaluate(config: ScenarioConfig, params: SurveillanceParameters) -> dict[str, Any]:
    """Generate the scenario of `config` and score every detector on it."""
    started = time.perf_counter()
    scenario = generate(config)
    generated = time.perf_counter() - started
    found, counts, engine_seconds = run_scenario(scenario, params)
    return score_findings(
        scenario,
        params,
        found,
        counts=counts,
        seconds={"generate": generated, "detect": engine_seconds},
    )


def score_findings(
    scenario: Scenario,
    params: SurveillanceParameters,
    found: list[tuple[Finding, int]],
    *,
    counts: dict[str, int],
    seconds: dict[str, float],
) -> dict[str, Any]:
    folder = FindingFolder(params.fold_window_ns)
    findings_of: dict[int, list[Finding]] = defaultdict(list)
    alert_of_finding: list[int] = []
    for finding, _ in found:
        new = folder.add(finding)
        index = len(folder.alerts) - 1 if new is not None else _live_index(folder, finding)
        findings_of[index].append(finding)
        alert_of_finding.append(index)
    positives = [e for e in scenario.episodes if e.positive and e.completed]
    not_completed = [e for e in scenario.episodes if e.positive and not e.completed]
    report: dict[str, Any] = {
        "seed": scenario.config.seed,
        "config": asdict(scenario.config),
        "events": counts["events"],
        "market_events": counts["market_events"],
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "engine_events_per_second": round(counts["market_events"] / seconds["detect"])
        if seconds["detect"]
        else None,
        "detectors": {},
        "near_misses": {},
    }
    for row in ROWS:
        episodes = [e for e in positives if row_of_episode(e) == row]
        alerts = [i for i, a in enumerate(folder.alerts) if row_of_finding(a.first) == row]
        detected = 0
        delays: list[float] = []
        true_alerts: set[int] = set()
        for episode in episodes:
            hits = [
                (finding, alert_of_finding[n])
                for n, (finding, _) in enumerate(found)
                if _covers(episode, finding)
            ]
            if hits:
                detected += 1
                first = min(hits, key=lambda hit: hit[0].trigger_ns)[0]
                delays.append((first.trigger_ns - episode.start_ns) / NS_PER_SECOND)
                true_alerts.update(index for _, index in hits)
        spent = [ns / 1000 for finding, ns in found if row_of_finding(finding) == row]
        report["detectors"][row] = {
            "episodes": len(episodes),
            "not_completed": sum(1 for e in not_completed if row_of_episode(e) == row),
            "detected": detected,
            "recall": round(detected / len(episodes), 4) if episodes else None,
            "alerts": len(alerts),
            "true_alerts": len(true_alerts),
            "precision": round(len(true_alerts) / len(alerts), 4) if alerts else None,
            "alert_types": _types(folder, alerts),
            "detection_delay_seconds": {
                "p50": _round(_percentile(delays, 0.5)),
                "p95": _round(_percentile(delays, 0.95)),
                "max": _round(max(delays) if delays else None),
            },
            "processing_latency_us": {
                "p50": _round(_percentile(spent, 0.5)),
                "p99": _round(_percentile(spent, 0.99)),
            },
        }
    for episode in scenario.episodes:
        if episode.positive:
            continue
        entry = report["near_misses"].setdefault(episode.kind.value, {"episodes": 0, "flagged": 0})
        entry["episodes"] += 1
        if any(_touches(episode, finding) for finding, _ in found):
            entry["flagged"] += 1
    return report


def _live_index(folder: FindingFolder, finding: Finding) -> int:
    for index in range(len(folder.alerts) - 1, -1, -1):
        if folder.alerts[index].first.fold_key == finding.fold_key:
            return index
    raise ValueError("a folded finding has a live alert")  # pragma: no cover


def _types(folder: FindingFolder, alerts: list[int]) -> dict[str, int]:
    types: dict[str, int] = defaultdict(int)
    for index in alerts:
        types[folder.alerts[index].alert_type.value] += 1
    return dict(sorted(types.items()))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def render_report(report: dict[str, Any]) -> str:
    """The report as lines a person reads."""
    config = report["config"]
    lines = [
        f"seed {report['seed']}: {config['accounts']} accounts, {config['days']} session(s), "
        f"{config['episodes_per_kind']} episodes of each kind; {report['events']} ledger "
        f"events ({report['market_events']} market events)",
        f"engine: {report['engine_events_per_second']} events/s on this machine",
        "",
        f"{'detector':10} {'episodes':>8} {'detected':>8} {'recall':>7} {'alerts':>7} "
        f"{'true':>5} {'precision':>9} {'delay p50':>10} {'delay p95':>10} {'cpu p99':>9}",
    ]
    for name, row in report["detectors"].items():
        recall = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        precision = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        delay = row["detection_delay_seconds"]
        cpu = row["processing_latency_us"]["p99"]
        lines.append(
            f"{name:10} {row['episodes']:>8} {row['detected']:>8} {recall:>7} "
            f"{row['alerts']:>7} {row['true_alerts']:>5} {precision:>9} "
            f"{_seconds(delay['p50']):>10} {_seconds(delay['p95']):>10} "
            f"{'-' if cpu is None else f'{cpu:.0f}us':>9}"
        )
    lines.append("")
    lines.append("honest near-misses flagged:")
    for kind, row in report["near_misses"].items():
        lines.append(f"  {kind:28} {row['flagged']} of {row['episodes']}")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
