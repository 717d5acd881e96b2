"""Run verification workers (ledger/verification/worker.py), one per range of the chain.

Each worker is a separate Python process with its own database connection, so the row
decoding and hashing of the ranges run on as many cores as there are workers. Results come
back in range order; closing the iterator early ends the workers still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path

import tradeguard
from tradeguard.ledger.verification.walk import Failure
from tradeguard.ledger.verification.worker import MODULE, Job, Outcome

log = logging.getLogger(__name__)

Range = tuple[int, int]


def split(top: int, parts: int, first: int = 1) -> list[Range]:
    """[first, top] cut into `parts` consecutive ranges of near equal size (none empty)."""
    total = top - first + 1
    parts = max(1, min(parts, total))
    size, extra = divmod(total, parts)
    ranges = []
    for k in range(parts):
        last = first + size - 1 + (1 if k < extra else 0)
        ranges.append((first, last))
        first = last + 1
    return ranges


def _environment() -> dict[str, str]:
    # The worker must import this very tradeguard package, installed or from a source tree.
    root = str(Path(tradeguard.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _decode(payload: str) -> Outcome:
    raw = json.loads(payload)
    stop = raw["stop"]
    return Outcome(
        anchor=bytes.fromhex(raw["anchor"]) if raw["anchor"] is not None else None,
        previous=bytes.fromhex(raw["previous"]),
        expected=int(raw["expected"]),
        stop=(int(stop[0]), Failure(stop[1])) if stop else None,
    )


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process, job: Job) -> None:
        self.process = process
        self.job = job
        self.done = 0

    async def outcome(self, on_progress: Callable[[], None]) -> Outcome | None:
        """Read the worker's reports to its end; None if it failed (the caller then verifies
        its range itself)."""
        stdout, stderr_stream = self.process.stdout, self.process.stderr
        if stdout is None or stderr_stream is None:  # pragma: no cover - started with pipes
            raise RuntimeError("worker started without pipes")
        errors = asyncio.ensure_future(stderr_stream.read())
        outcome = None
        try:
            async for line in stdout:
                kind, _, payload = line.decode("ascii", "replace").strip().partition(" ")
                try:
                    if kind == "progress":
                        self.done = int(payload)
                        on_progress()
                    elif kind == "result":
                        outcome = _decode(payload)
                except (ValueError, KeyError, TypeError, IndexError):
                    # Garbled: end it (it could block on a full pipe); the range is then
                    # verified in process instead.
                    self.process.kill()
                    outcome = None
                    break
            code = await self.process.wait()
            stderr = await errors
        finally:
            errors.cancel()
        if code != 0 or outcome is None:
            last_line = (stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
            log.warning(
                "verification worker for sequence %d..%d failed (exit %s): %s",
                self.job.first,
                self.job.last,
                code,
                last_line[:300],
            )
            return None
        return outcome


async def _start(job: Job) -> _Worker | None:
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            MODULE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_environment(),
        )
    except OSError as exc:  # no interpreter to start (an embedded Python), out of processes
        log.warning(
            "verification worker for sequence %d..%d not started: %s", job.first, job.last, exc
        )
        return None
    if process.stdin is None:  # pragma: no cover - started with pipes
        raise RuntimeError("worker started without pipes")
    # The job travels on stdin, not the command line: it may carry a database password.
    process.stdin.write(json.dumps(dataclasses.asdict(job)).encode())
    # A worker that died at once is reported by its outcome (no result).
    with contextlib.suppress(ConnectionError):
        await process.stdin.drain()
    process.stdin.close()
    return _Worker(process, job)


async def run(
    dialect: str,
    connect: dict[str, object],
    ranges: Sequence[Range],
    *,
    chunk: int,
    progress: Callable[[int], None] | None = None,
) -> AsyncGenerator[tuple[Range, Outcome | None]]:
    """Verify each range in a worker process; yield (range, outcome) in range order, the
    outcome None where a worker failed."""
    workers: list[_Worker] = []
    tasks: list[asyncio.Future[Outcome | None]] = []

    def report() -> None:
        if progress is not None:
            progress(sum(w.done for w in workers))

    try:
        for first, last in ranges:
            worker = await _start(Job(dialect, dict(connect), first, last, chunk))
            if worker is None:
                failed: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
                failed.set_result(None)
                tasks.append(failed)
            else:
                workers.append(worker)
                tasks.append(asyncio.ensure_future(worker.outcome(report)))
        for (first, last), task in zip(ranges, tasks, strict=True):
            yield (first, last), await task
    finally:
        for worker in workers:
            if worker.process.returncode is None:
                worker.process.kill()
        for task in tasks:
            task.cancel()
        for worker in workers:
            await worker.process.wait()
