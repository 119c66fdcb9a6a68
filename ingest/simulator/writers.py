"""Outputs of a simulation: files on disk, or a paced stream into a callback (e.g. a Kafka producer).

``progress(done, estimated_total)`` is called every ``progress_every`` events and once at the end;
``estimated_total`` is ``SimResult.estimated_events()`` (the background count is random around it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ingest.schema import Event, encode_event
from ingest.simulator.engine import SimResult
from ingest.simulator.truth import write_ground_truth

__all__ = [
    "EVENTS_FILE",
    "GROUND_TRUTH_FILE",
    "TENANTS_FILE",
    "Progress",
    "WrittenFiles",
    "stream_to",
    "write_files",
]

EVENTS_FILE: Final = "events.jsonl"
TENANTS_FILE: Final = "tenants.yaml"
GROUND_TRUTH_FILE: Final = "ground_truth.jsonl"
Progress = Callable[[int, int], None]
_CHUNK: Final = 8192


@dataclass(frozen=True)
class WrittenFiles:
    events: Path
    tenants: Path
    ground_truth: Path
    event_count: int
    truth_count: int  # the scenarios' records
    context_count: int = 0  # the background's context records after them


def write_files(
    result: SimResult,
    out_dir: str | os.PathLike[str],
    progress: Progress | None = None,
    progress_every: int = 100_000,
) -> WrittenFiles:
    """Write ``events.jsonl`` (one canonical event per line, sorted by ts), ``tenants.yaml`` and
    ``ground_truth.jsonl`` (the scenarios' records, then the background's context records) into
    ``out_dir`` (created if missing). Same result, same bytes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    events_path, tenants_path, truth_path = out / EVENTS_FILE, out / TENANTS_FILE, out / GROUND_TRUTH_FILE
    result.registry.dump(tenants_path)
    context = result.context_truth()
    write_ground_truth([*result.truth, *context], truth_path)
    total = result.estimated_events()
    n = 0
    buf: list[bytes] = []
    with events_path.open("wb") as fh:
        for event in result.events():
            buf.append(encode_event(event))
            n += 1
            if len(buf) >= _CHUNK:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
            if progress is not None and n % progress_every == 0:
                progress(n, total)
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    if progress is not None:
        progress(n, total)
    return WrittenFiles(events_path, tenants_path, truth_path, n, len(result.truth), len(context))


def stream_to(
    result: SimResult,
    send: Callable[[Event], object],
    rate_per_s: float | None = None,
    progress: Progress | None = None,
    *,
    progress_every: int = 1000,
    limit: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """Call ``send(event)`` for every event in ts order, at about ``rate_per_s`` events per second
    of wall time (as fast as possible when ``None``). Stops after ``limit`` events if given.
    Returns the number of events sent. Pacing is checked ~100 times a second, not per event."""
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
    total = result.estimated_events() if limit is None else min(limit, result.estimated_events())
    check_every = max(1, int(rate_per_s / 100)) if rate_per_s else 0
    interval = 1.0 / rate_per_s if rate_per_s else 0.0
    t0 = clock()
    n = 0
    for event in result.events():
        if limit is not None and n >= limit:
            break
        send(event)
        n += 1
        if check_every and n % check_every == 0:
            ahead = t0 + n * interval - clock()
            if ahead > 0:
                sleep(ahead)
        if progress is not None and n % progress_every == 0:
            progress(n, total)
    if progress is not None:
        progress(n, total)
    return n
