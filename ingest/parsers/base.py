"""What every parser shares: the context it runs in, where its output goes, and tenant resolution.

A parser is a class built with an ``Output`` and a ``ParseContext``. Text formats implement
``feed(line, lineno, offset)`` for one line (bytes, without the newline) and may buffer (auditd
joins records, Zeek and CSV read a header) until ``close()``. ``feed_stream`` reads a whole binary
stream through the bounded reader and hands each read's lines to ``feed_batch`` (formats with a
fast path override it); binary formats (NetFlow) override ``feed_stream``. Every input record ends
up as exactly one of: events, a DLQ record (``reject``), or a counted skip (``skip``) for input
that is valid but not telemetry (a cron line in syslog, a comment, a NODATA flow-log record).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any, ClassVar, Final, Protocol

from ingest.bounds import violations as bound_violations
from ingest.dlq import DlqRecord, make_dlq
from ingest.parsers.flowutil import BadField, unexpected, valid_ip
from ingest.reader import MAX_LINE_BYTES, JsonRejected, LineItem, iter_line_batches, load_json
from ingest.schema import Event, FlowEvent, encode_event
from ingest.tenants import TenantRegistry

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MISS: Final = object()
_OWNER_CACHE_MAX: Final = 65536
_EMIT_EVERY: Final = 128  # lines per list of events that fast paths hand over (see feed_batch)

Owner = tuple[str | None, str | None, str | None]
"""(tenant, vm, host)."""

__all__ = [
    "BoundedOutput",
    "ListOutput",
    "Output",
    "ParseContext",
    "Parser",
    "ms_from_iso",
]


class Output(Protocol):
    """Receives what a parser produces. An output may also offer ``event_batch(events)``, taking a
    list of events at once (in order, before anything emitted after them); the fast paths use it."""

    def event(self, event: Event) -> None: ...

    def dlq(self, record: DlqRecord) -> None: ...

    def skip(self, reason: str) -> None: ...


class BoundedOutput:
    """What every parser writes to: events that break the canonical schema's bounds or types
    (``ingest.schema``) go to the DLQ with the field and its value, the rest to ``out``, in order.
    The event as the parser built it is the DLQ record's raw bytes."""

    def __init__(self, out: Output, file: str | None = None) -> None:
        self.out = out
        self.file = file
        self.dlq = out.dlq
        self.skip = out.skip
        self._batch = getattr(out, "event_batch", None) or self._each

    def event(self, event: Event) -> None:
        if bound_violations([event]):
            self._reject([event])
        else:
            self.out.event(event)

    def event_batch(self, events: list[Event]) -> None:
        if bound_violations(events):
            events = self._reject(events)
        if events:
            self._batch(events)

    def _reject(self, events: list[Event]) -> list[Event]:
        bad = dict(bound_violations(events))
        for i, reason in bad.items():
            self.out.dlq(make_dlq(events[i].source, reason, _raw_of(events[i]), file=self.file))
        return [ev for i, ev in enumerate(events) if i not in bad]

    def _each(self, events: list[Event]) -> None:
        for event in events:
            self.out.event(event)


def _raw_of(event: Event) -> bytes:
    try:
        return encode_event(event)
    except (TypeError, ValueError, OverflowError):  # a value JSON cannot hold: keep its text
        return repr(event).encode("utf-8", "backslashreplace")


@dataclass
class ListOutput:
    """Collects everything in memory (tests, small files, ``parse_bytes``)."""

    events: list[Event] = field(default_factory=list)
    dlqs: list[DlqRecord] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def event(self, event: Event) -> None:
        self.events.append(event)

    def event_batch(self, events: list[Event]) -> None:
        self.events.extend(events)

    def dlq(self, record: DlqRecord) -> None:
        self.dlqs.append(record)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1


@dataclass
class ParseContext:
    """How to interpret input. ``tenant`` forces the tenant of every event (``--tenant``);
    ``year`` completes RFC 3164 syslog dates (default: the year of ``reference_ms``, or now);
    ``cic_features`` keeps every CICFlowMeter statistical column in ``extra`` (``--cic-features``;
    by default only ``Flow ID`` and ``Label``); ``timezone`` is the IANA zone of times written in
    local time without an offset, RFC 3164 syslog's, CICFlowMeter's, Argus's and nfdump's
    (``--tz``; default UTC);
    ``vpc_fields`` is the field layout of VPC flow log records that come without a header line, as
    CloudWatch Logs delivers them (``--vpc-format``; default: AWS's default format)."""

    registry: TenantRegistry | None = None
    tenant: str | None = None
    file: str | None = None
    year: int | None = None
    reference_ms: int | None = None
    max_line_bytes: int | None = None  # None: the parser's own default
    cic_features: bool = False
    timezone: str | None = None
    vpc_fields: tuple[str, ...] | None = None

    def now_ms(self) -> int:
        return self.reference_ms if self.reference_ms is not None else time.time_ns() // 1_000_000


class Parser:
    """Base of all parsers; see the module docstring for the contract."""

    source: ClassVar[str] = ""
    max_line_bytes: ClassVar[int] = MAX_LINE_BYTES

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        self.ctx = ctx or ParseContext()
        self.out: Output = out if isinstance(out, BoundedOutput) else BoundedOutput(out, self.ctx.file)
        self.registry = self.ctx.registry
        self.forced_tenant = self.ctx.tenant
        self._owners: dict[str, Owner] = {}
        self._addresses: dict[str, Owner | None] = {}  # address -> owner, None: not an address
        self._flow_bases: dict[Owner, FlowEvent] = {}
        self.header_lines: dict[str, bytes] = {}  # column formats: the header lines in force, by kind
        self.header_seq = 0  # changes whenever header_lines does

    # --- input ---------------------------------------------------------------------------------
    def feed(self, line: bytes, lineno: int, offset: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """End of input: flush anything buffered."""

    def feed_lines(self, lines: Iterable[bytes]) -> None:
        """Convenience for tests: feed lines numbered from 1 (offsets are running byte counts)."""
        offset = 0
        for lineno, line in enumerate(lines, 1):
            self.feed(line, lineno, offset)
            offset += len(line) + 1

    def feed_stream(self, stream: IO[bytes], max_line_bytes: int | None = None) -> None:
        """Read a whole stream with the bounded reader, rejecting over-long lines; then ``close``."""
        cap = max_line_bytes or self.ctx.max_line_bytes or self.max_line_bytes
        for batch in iter_line_batches(stream, cap):
            self.feed_batch(batch, cap)
        self.close()

    def feed_batch(self, items: list[LineItem], max_line_bytes: int) -> None:
        """The lines of one read: ``feed`` each, rejecting those over ``max_line_bytes``."""
        feed = self.feed
        for lineno, offset, line, size in items:
            if size > max_line_bytes:
                self.reject_long(line, lineno, offset, size, max_line_bytes)
            else:
                feed(line, lineno, offset)

    # --- header state (column formats) -------------------------------------------------------
    def keep_header(self, kind: str, line: bytes) -> None:
        """Note ``line``, just read, as the header line ``kind`` in force (a Zeek directive, a CSV
        header): the parse stage saves ``header_lines`` so a later reader of the source can
        ``prime`` its parser with them. Bounded by the parser's own line cap and kinds."""
        if self.header_lines.get(kind) != line:
            self.header_lines[kind] = line
            self.header_seq += 1

    def forget_header(self) -> None:
        """A new header block begins (Zeek's ``#separator``): the lines kept so far no longer apply."""
        if self.header_lines:
            self.header_lines = {}
            self.header_seq += 1

    def prime(self, lines: Iterable[bytes]) -> None:
        """Read header lines saved from an earlier reader of this source (``header_lines``) so the
        rows that follow parse as they would have there. Nothing reaches the output and nothing is
        counted (they are not records of this read); event ids do not change (they hash the
        parser's source and each row's own bytes)."""
        out = self.out
        self.out = BoundedOutput(ListOutput())
        try:
            for line in lines:
                self.feed(line, 0, 0)
        finally:
            self.out = out

    # --- output helpers ------------------------------------------------------------------------
    def reject(
        self,
        reason: str,
        raw: bytes | str,
        lineno: int | None = None,
        offset: int | None = None,
        raw_len: int | None = None,
    ) -> None:
        self.out.dlq(
            make_dlq(
                self.source, reason, raw, line=lineno, offset=offset, file=self.ctx.file, raw_len=raw_len
            )
        )

    def json_object(self, body: bytes, line: bytes, lineno: int, offset: int) -> dict[str, Any] | None:
        """The JSON object ``body`` holds (a line, or the part of it after a prefix), decoded with the
        depth and number guards of ``load_json``; None once ``line`` went to the DLQ with why."""
        try:
            value = load_json(body)
        except JsonRejected as exc:
            self.reject(str(exc), line, lineno, offset)
            return None
        if not isinstance(value, dict):
            self.reject("JSON line is not an object", line, lineno, offset)
            return None
        return value

    def reject_long(self, prefix: bytes, lineno: int, offset: int, size: int, max_line_bytes: int) -> None:
        self.reject(
            f"line of {size} bytes is over the {max_line_bytes} byte limit", prefix, lineno, offset, size
        )

    def skip(self, reason: str) -> None:
        self.out.skip(reason)

    # --- tenant resolution ---------------------------------------------------------------------
    def flow_owner(self, src: str, dst: str) -> Owner:
        """(tenant, vm, host) of a flow: the owner of the source address, else of the destination."""
        if self.registry is None:
            return self.forced_tenant, None, None
        cache = self._owners
        owner = cache.get(src) or self._ip_owner(src)
        if owner[0] is None:
            owner = cache.get(dst) or self._ip_owner(dst)
        if self.forced_tenant is not None:
            return self.forced_tenant, owner[1], owner[2]
        return owner

    def checked_flow_owner(self, src: str, dst: str) -> Owner | None:
        """``flow_owner`` for the fast paths, which also validates both addresses: None when
        either is not an IP address. One cached lookup per address does both."""
        cache = self._addresses
        owner = cache.get(src, _MISS)
        if owner is _MISS:
            owner = self._learn_address(src)
        other = cache.get(dst, _MISS)
        if other is _MISS:
            other = self._learn_address(dst)
        if owner is None or other is None:
            return None
        if owner[0] is None:  # type: ignore[index]
            owner = other
        if self.forced_tenant is not None:
            return self.forced_tenant, owner[1], owner[2]  # type: ignore[index]
        return owner  # type: ignore[return-value]

    def flow_base(self, owner: Owner) -> FlowEvent:
        """An empty flow event of this source and ``owner`` (tenant, vm, host) that fast paths fill in
        with ``msgspec.structs.replace``. It saves passing four fields per event: CPython 3.11 sends a
        call with more than 15 keyword arguments through a dict, which costs more than the event."""
        base = self._flow_bases.get(owner)
        if base is None:
            tenant, vm, host = owner
            base = FlowEvent(
                id="", ts=0, source=self.source, tenant=tenant, host=host, vm=vm, src_ip="", dst_ip=""
            )
            if len(self._flow_bases) >= _OWNER_CACHE_MAX:
                self._flow_bases.clear()
            self._flow_bases[owner] = base
        return base

    def _learn_address(self, ip: str) -> Owner | None:
        owner: Owner | None = None
        if valid_ip(ip):
            owner = self._ip_owner(ip) if self.registry is not None else (None, None, None)
        if len(self._addresses) >= _OWNER_CACHE_MAX:
            self._addresses.clear()
        self._addresses[ip] = owner
        return owner

    def _ip_owner(self, ip: str) -> Owner:
        reg = self.registry
        assert reg is not None
        tenant = reg.tenant_of_ip(ip)
        vm = reg.vm_of_ip(ip) if tenant is not None else None
        owner = (tenant, vm, reg.vms[vm].host if vm is not None else None)
        if len(self._owners) >= _OWNER_CACHE_MAX:
            self._owners.clear()
        self._owners[ip] = owner
        return owner

    def node_owner(
        self, node: str | None, path: str | None = None
    ) -> tuple[str | None, str | None, str | None]:
        """(tenant, vm, host) for telemetry from machine ``node``: a VM id (its tenant) or a
        hypervisor host id; a process touching a VM's disk image belongs to that VM's tenant."""
        reg = self.registry
        tenant = vm = host = None
        if reg is not None:
            if node and node in reg.vms:
                info = reg.vms[node]
                vm, tenant, host = info.id, info.tenant, info.host
            elif node and node in reg.hosts:
                host = node
            elif node:
                vm = reg.vm_of_ip(node)
                tenant = reg.tenant_of_vm(vm) if vm else reg.tenant_of_ip(node)
            if path and vm is None:
                disk_vm = reg.vm_of_disk(path)
                if disk_vm is not None:
                    vm, tenant = disk_vm, reg.tenant_of_vm(disk_vm)
        if host is None and vm is None and node:
            host = node
        return self.forced_tenant or tenant, vm, host

    def account_tenant(self, account: str | None) -> str | None:
        """Tenant of a cloud account id: the registry's mapping, else the account id itself."""
        if not account:
            return None
        reg = self.registry
        if reg is not None:
            if account in reg.tenants:
                return account
            mapped = reg.tenant_of_account(account)
            if mapped is not None:
                return mapped
        return account


def ms_from_iso(text: str) -> int:
    """RFC 3339 / ISO 8601 to epoch ms, keeping sub-second digits beyond microseconds out of the
    way (Falco prints nanoseconds). Raises ``ValueError`` on anything else (a number, ``None``, a
    malformed or impossible date), its message in our words with the value, never datetime's."""
    if not isinstance(text, str):
        raise ValueError(f"not a time: {_clip(text)}")
    try:
        return _ms_from_iso(text)
    except (ValueError, OverflowError):
        raise ValueError(f"not a time: {_clip(text)}") from None


def _clip(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _ms_from_iso(text: str) -> int:
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dot = s.find(".")
    if dot >= 0:
        end = dot + 1
        while end < len(s) and s[end].isdigit():
            end += 1
        frac = s[dot + 1 : end]
        if not frac:
            raise ValueError("no digits after the dot")
        s = s[:dot] + "." + (frac[:6].ljust(6, "0")) + s[end:]
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


class FastPathParser(Parser):
    """A line format with a fast path: ``_fast_event`` turns a plain record into its event with no
    per-field checks, or returns None; ``_checked_event`` then checks every field, names what is
    wrong (DLQ), skips, or reads a header. Whatever goes wrong stays with its line: a ``BadField``
    is the line's DLQ reason, anything else is named by its type and ``record_name`` (its message
    is some library's wording), and the next line is read as usual."""

    record_name: ClassVar[str] = "record"

    def _fast_event(self, line: bytes) -> Event | None:
        raise NotImplementedError

    def _checked_event(self, line: bytes, lineno: int, offset: int) -> Event | None:
        """The event of one line, or None when it was skipped, rejected or was a header."""
        raise NotImplementedError

    def text_of(self, line: bytes, lineno: int, offset: int) -> str | None:
        """The line as text, or None once it went to the DLQ (not UTF-8) or was skipped (blank)."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.reject(f"invalid UTF-8 at byte {exc.start}", line, lineno, offset)
            return None
        if not text.strip():
            self.skip("blank line")
            return None
        return text

    def _feed_checked(self, line: bytes, lineno: int, offset: int) -> None:
        try:
            event = self._checked_event(line, lineno, offset)
        except BadField as exc:
            self.reject(str(exc), line, lineno, offset)
            return
        except Exception as exc:
            self.reject(unexpected(exc, self.record_name), line, lineno, offset)
            return
        if event is not None:
            self.out.event(event)

    def feed(self, line: bytes, lineno: int, offset: int) -> None:
        event = self._fast_event(line)
        if event is not None:
            self.out.event(event)
        else:
            self._feed_checked(line, lineno, offset)

    def feed_batch(self, items: list[LineItem], max_line_bytes: int) -> None:
        """``feed`` for each line, with the fast path tried in this loop (one call less per line).
        Fast-path events are handed over in lists (``event_batch``) when the output takes them,
        always before anything the checked path emits, so the output sees the same order."""
        fast = self._fast_event
        emit_batch = getattr(self.out, "event_batch", None) or self._emit_each
        events: list[Event] = []
        try:
            # Short lists: events that stay alive count towards the garbage collector's thresholds,
            # and holding a whole read's events (10,000 or so) made it run so often that parsing
            # got 30% slower.
            for start in range(0, len(items), _EMIT_EVERY):
                for lineno, offset, line, size in items[start : start + _EMIT_EVERY]:
                    event = fast(line) if size <= max_line_bytes else None
                    if event is not None:
                        events.append(event)
                        continue
                    if events:
                        emit_batch(events)
                        events = []
                    if size > max_line_bytes:
                        self.reject_long(line, lineno, offset, size, max_line_bytes)
                    else:
                        self._feed_checked(line, lineno, offset)
                if events:
                    emit_batch(events)
                    events = []
        finally:  # also when a parser raises: what was parsed before still reaches the output
            if events:
                emit_batch(events)

    def _emit_each(self, events: list[Event]) -> None:
        emit = self.out.event
        for event in events:
            emit(event)
