"""``ssa ingest``: read a file, stdin or a UDP address, parse one format, send to a sink.

``run_ingest`` is complete on its own; the CLI only turns arguments into a call and the summary
into a line. Every input record is counted exactly once as parsed (events), DLQ (sent to the
sink's dead-letter side, with its reason) or skipped (valid input that carries no telemetry,
by reason): nothing is dropped silently. An event stamped more than a minute ahead of the clock
is a DLQ record too (``MAX_AHEAD_MS``). Gzip input (CloudTrail delivers ``.json.gz``) is
detected by its magic bytes. ``udp://HOST:PORT`` with ``--format netflow`` runs the collector
until ``stop`` is set (or Ctrl-C).
"""

from __future__ import annotations

import gzip
import io
import operator
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from ingest.dlq import DlqRecord, make_dlq
from ingest.parsers import FORMAT_NAMES, FORMATS, ParseContext, Parser, get_format
from ingest.parsers.base import Output
from ingest.parsers.netflow import NetflowParser
from ingest.parsers.netflow_capture import UdpCollector
from ingest.producer import NullSink, Sink
from ingest.recent import DUPLICATE, RecentIds
from ingest.schema import Event, encode_event
from ingest.tenants import RegistryWatcher, TenantRegistry

__all__ = [
    "FORMATS",
    "FORMAT_NAMES",
    "MAX_AHEAD_MS",
    "CountingOutput",
    "IngestProgress",
    "IngestSummary",
    "open_parser",
    "run_ingest",
]

# How far ahead of the ingest clock an event time may be; later ones go to the DLQ. The job's
# watermark follows the newest event time of each Kafka partition, so one event stamped hours
# ahead (a wrong clock or zone, or a hostile source) would move the watermark of its partition,
# shared by every tenant in it, as far ahead. NTP-synced sources are within a second; 60 s is
# the drift the job already allows between partitions (Settings.watermark_max_drift_ms).
MAX_AHEAD_MS: Final = 60_000
_event_time: Final = operator.attrgetter("ts")


@dataclass(frozen=True)
class IngestProgress:
    parsed: int
    dlq: int
    skipped: int
    elapsed: float
    events_per_s: float


@dataclass(frozen=True)
class IngestSummary:
    parsed: int
    dlq: int
    skipped: int
    by_kind: dict[str, int]
    elapsed: float
    fmt: str = ""
    source: str = ""
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    # Records whose format gave them no time (an NF-*-v2 layout): stamped with the time they were read.
    undated: int = 0

    @property
    def events_per_s(self) -> float:
        return self.parsed / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """One line for the terminal; says what "skipped" means so nobody reads it as loss."""
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items())) or "none"
        text = (
            f"{self.source}: {self.parsed} events ({kinds}), {self.dlq} to DLQ, {self.skipped} skipped "
            f"(well-formed input that is not {self.fmt} telemetry) in {self.elapsed:.2f} s "
            f"({self.events_per_s:,.0f} events/s)"
        )
        if self.dlq_reasons:
            top = max(self.dlq_reasons.items(), key=lambda kv: kv[1])
            text += f"; most common DLQ reason: {top[0]} ({top[1]})"
        if self.undated:
            text += f"; {self.undated_note}"
        return text

    @property
    def undated_note(self) -> str:
        """What the records without a time became, or "" when there were none."""
        if not self.undated:
            return ""
        return (
            f"{self.undated:,} records carried no time and were stamped with the time they were read "
            "(a file read so is one burst to the detectors)"
        )


class _Counting:
    """The parsers' ``Output``: counts, forwards to the sink, reports progress now and then."""

    def __init__(
        self,
        sink: Sink,
        progress: Callable[[IngestProgress], None] | None,
        every_s: float,
        max_ahead_ms: int = MAX_AHEAD_MS,
        file: str | None = None,
        recent: RecentIds | None = None,
    ) -> None:
        self.sink = sink
        self.max_ahead_ms = max_ahead_ms
        self.file = file
        # The ids produced lately (``ingest.recent``): a copy of one is skipped. The parse stage's,
        # where shippers deliver at least once; a file read once has no copies.
        self.recent = recent
        # A lower bound of the latest event time accepted (the clock only moves on): an event past
        # it costs one comparison; only then is the clock read again (``_ahead``).
        self.latest_ms = _now_ms() + max_ahead_ms
        self.send_event = sink.send_event
        # A sink may take a read's worth of events in one call (``send_events``, optional).
        self.send_events: Callable[[list[Event]], None] = (
            getattr(sink, "send_events", None) or self._send_each
        )
        # Events counted by class: the kind (the class's tag) is looked up once, in ``by_kind``.
        self.by_type: Counter[type[Event]] = Counter()
        self.dlq_reasons: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.parsed = 0
        self.dlqs = 0
        self.progress = progress
        self.every_s = every_s
        self.start = time.monotonic()
        self.next_report = self.start + every_s

    def event(self, event: Event) -> None:
        if event.ts > self.latest_ms and self._ahead(event):
            return
        if self.recent is not None and self.recent.seen(event.id):
            self.skipped[DUPLICATE] += 1
            return
        self.send_event(event)
        self.by_type[event.__class__] += 1
        self.parsed = parsed = self.parsed + 1
        if not parsed & 4095 and self.progress is not None:
            self._maybe_report()

    def event_batch(self, events: list[Event]) -> None:
        """``event`` for each of ``events``, in order: the fast paths hand over one read's events at
        once, which saves three Python calls per event on the way to the sink."""
        if events and max(map(_event_time, events)) > self.latest_ms:
            events = [ev for ev in events if not (ev.ts > self.latest_ms and self._ahead(ev))]
        if self.recent is not None:
            before = len(events)
            events = self.recent.fresh(events)
            if len(events) < before:
                self.skipped[DUPLICATE] += before - len(events)
        self.send_events(events)
        self.by_type.update(map(type, events))  # counted in C
        self.parsed += len(events)
        if self.progress is not None:
            self._maybe_report()

    def _ahead(self, event: Event) -> bool:
        """Whether ``event`` is too far ahead of the clock; if so it went to the DLQ."""
        now_ms = _now_ms()
        self.latest_ms = now_ms + self.max_ahead_ms
        if event.ts <= self.latest_ms:
            return False
        ahead_ms = event.ts - now_ms
        self.dlq(
            make_dlq(
                event.source,
                f"event time ahead of the ingest clock: by {ahead_ms / 1000:,.0f} s, more than the "
                f"{self.max_ahead_ms / 1000:,.0f} s allowed (event {event.id}). The source's clock or "
                "time zone is wrong (RFC 3164 syslog is the sender's local time: give --tz)",
                encode_event(event),
                file=self.file,
            )
        )
        return True

    def _send_each(self, events: list[Event]) -> None:
        send = self.send_event
        for event in events:
            send(event)

    @property
    def by_kind(self) -> Counter[str]:
        kinds: Counter[str] = Counter()
        for cls, count in self.by_type.items():
            kinds[cls.__struct_config__.tag] += count  # type: ignore[index]
        return kinds

    def dlq(self, record: DlqRecord) -> None:
        self.sink.send_dlq(record)
        self.dlqs += 1
        self.dlq_reasons[_reason_class(record.reason)] += 1

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def snapshot(self) -> IngestProgress:
        elapsed = time.monotonic() - self.start
        rate = self.parsed / elapsed if elapsed > 0 else 0.0
        return IngestProgress(self.parsed, self.dlqs, sum(self.skipped.values()), elapsed, rate)

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now >= self.next_report and self.progress is not None:
            self.next_report = now + self.every_s
            self.progress(self.snapshot())


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# A parenthesised aside (a hint, the columns looked for): no part of the class.
_ASIDE: Final = re.compile(r"\s*\([^)]*\)?")


def _reason_class(reason: str) -> str:
    """DLQ reasons carry specifics (byte positions, values); group them by their leading words."""
    head = _ASIDE.sub("", reason.split(":", 1)[0])
    words = [w for w in head.split() if not w.lstrip("-").isdigit() and w[:1] not in "'\""]
    return " ".join(words[:10]) or head[:40]


def _open_input(path_or_stdin: str | Path | IO[bytes]) -> tuple[IO[bytes], str, bool]:
    """(binary stream, display name, whether we opened it and must close it). Gzip is unwrapped."""
    if isinstance(path_or_stdin, str | Path):
        name = str(path_or_stdin)
        if name == "-":
            stream: IO[bytes] = sys.stdin.buffer
            owned = False
        else:
            stream = open(name, "rb")  # noqa: SIM115 - closed by run_ingest
            owned = True
    else:
        stream, name, owned = path_or_stdin, getattr(path_or_stdin, "name", "<stream>"), False
    peek = getattr(stream, "peek", None)
    head = peek(2)[:2] if peek is not None else b""
    if peek is None and stream.seekable():
        head = stream.read(2)
        stream.seek(-len(head), io.SEEK_CUR)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream), name, owned  # type: ignore[return-value]
    return stream, name, owned


CountingOutput = _Counting
"""The output ``ssa ingest`` gives its parsers (counts, the ahead-of-clock check, the sink);
``streams.parse_stage`` and ``ingest.follow`` use the same."""


def open_parser(
    fmt: str,
    out: Output,
    *,
    tenant: str | None = None,
    registry: TenantRegistry | RegistryWatcher | None = None,
    file: str | None = None,
    year: int | None = None,
    reference_ms: int | None = None,
    max_line_bytes: int | None = None,
    cic_features: bool = False,
    timezone: str | None = None,
    vpc_fields: tuple[str, ...] | None = None,
) -> Parser:
    """The parser ``run_ingest`` would use for ``fmt``, writing to ``out``: the one place its
    context is built, so the parse stage and ``--follow`` parse exactly as ``ssa ingest`` does."""
    reg = registry.current() if isinstance(registry, RegistryWatcher) else registry
    ctx = ParseContext(
        registry=reg,
        tenant=tenant,
        file=file,
        year=year,
        reference_ms=reference_ms,
        max_line_bytes=max_line_bytes,
        cic_features=cic_features,
        timezone=timezone,
        vpc_fields=vpc_fields,
    )
    return get_format(fmt).factory(out, ctx)


def run_ingest(
    path_or_stdin: str | Path | IO[bytes],
    fmt: str,
    tenant: str | None = None,
    registry: TenantRegistry | RegistryWatcher | None = None,
    sink: Sink | None = None,
    progress: Callable[[IngestProgress], None] | None = None,
    *,
    year: int | None = None,
    reference_ms: int | None = None,
    max_line_bytes: int | None = None,
    cic_features: bool = False,
    timezone: str | None = None,
    vpc_fields: tuple[str, ...] | None = None,
    max_ahead_ms: int = MAX_AHEAD_MS,
    progress_every_s: float = 0.5,
    stop: threading.Event | None = None,
) -> IngestSummary:
    """Parse ``path_or_stdin`` (a path, ``-`` for stdin, an open binary stream, or
    ``udp://HOST:PORT`` for NetFlow/IPFIX) as ``fmt`` (one of ``FORMAT_NAMES`` or an alias) and send
    events and DLQ records to ``sink`` (default: count only). The sink is flushed, not closed.
    An event whose time is more than ``max_ahead_ms`` ahead of the clock goes to the DLQ instead
    (``MAX_AHEAD_MS``); ``timezone`` is the zone of local times without an offset (default UTC);
    ``vpc_fields`` the layout of VPC flow log records without a header line (``ParseContext``)."""
    spec = get_format(fmt)
    sink = sink if sink is not None else NullSink()
    name = str(path_or_stdin) if isinstance(path_or_stdin, str | Path) else getattr(path_or_stdin, "name", "")
    counting = _Counting(sink, progress, progress_every_s, max_ahead_ms, name or None)
    parser = open_parser(spec.name, counting, tenant=tenant, registry=registry, file=name or None,
                         year=year, reference_ms=reference_ms, max_line_bytes=max_line_bytes,
                         cic_features=cic_features, timezone=timezone, vpc_fields=vpc_fields)  # fmt: skip
    if isinstance(path_or_stdin, str) and path_or_stdin.startswith("udp://"):
        if not isinstance(parser, NetflowParser):
            raise ValueError(f"udp:// input needs --format netflow, not {spec.name}")
        host, _, port = path_or_stdin[len("udp://") :].rpartition(":")
        collector = UdpCollector(parser, host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104
        collector.open()
        try:
            collector.serve(stop or threading.Event())
        except KeyboardInterrupt:
            pass
        finally:
            collector.close()
    else:
        stream, name, owned = _open_input(path_or_stdin)
        try:
            parser.feed_stream(stream, max_line_bytes)
        finally:
            if owned:
                stream.close()
    sink.flush()
    snap = counting.snapshot()
    if progress is not None:
        progress(snap)
    return IngestSummary(
        parsed=counting.parsed,
        dlq=counting.dlqs,
        skipped=snap.skipped,
        by_kind=dict(counting.by_kind),
        elapsed=snap.elapsed,
        fmt=spec.name,
        source=name,
        dlq_reasons=dict(counting.dlq_reasons),
        skip_reasons=dict(counting.skipped),
        undated=int(getattr(parser, "undated", 0)),
    )
