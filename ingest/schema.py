"""The canonical event of DESIGN.md: one definition shared by parsers, detectors, jobs and tests.

Decoding and validation happen in one step (msgspec) at the edge; nothing downstream re-validates.
The bounds of every field are part of its type here, in one place: ports 0-65535, counters and
durations 0 to 2^63-1, event times between ``TS_MIN_MS`` and ``TS_MAX_MS``, pids and uids
non-negative (an unset uid is None, never 0, which is root), protocols a name or a number 0-255,
addresses that look like IPv4 or IPv6, tenant ids of the registry's shape. ``decode_event``
enforces the types and numeric bounds on everything that reaches the job; the text shapes
(``SHAPES``: addresses, tenant ids, protocols) cost a regular expression per field in a decoder,
so they are checked where events are made instead. Parsers build events directly: every parser's
output goes through ``ingest.bounds``, which checks both before anything is sent.
Events are frozen: a detector cannot mutate what it is given. Use ``with_tenant`` (or
``msgspec.structs.replace``) to derive an enriched copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "SHAPES",
    "TENANT_ID_PATTERN",
    "TS_MAX_MS",
    "TS_MIN_MS",
    "AuditEvent",
    "AuthEvent",
    "Event",
    "FlowEvent",
    "ProcessEvent",
    "decode_event",
    "decode_events",
    "encode_event",
    "event_id",
    "event_id_hasher",
    "event_id_of",
    "to_dict",
    "with_tenant",
]

SCHEMA_VERSION: Final = "ssa/1"
KINDS: Final = ("flow", "process", "audit", "auth")

Result = Literal["success", "failure"]

TS_MIN_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z: no telemetry this system reads is older; epoch 0 or year 1 is a broken
clock or a hostile record, and would drag a watermark back by decades."""
TS_MAX_MS: Final = 4_102_444_800_000
"""2100-01-01T00:00:00Z. Events ahead of the ingest clock are refused earlier (ingest.pipeline)."""
TENANT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
"""A registry tenant id (``t-acme``) or, for an unmapped cloud account, the account id itself."""
# IPv4 dotted quad with each part 0-255, or IPv6 text (hex groups, ``::``, an IPv4 tail, a zone).
_IP_PATTERN: Final = (
    r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
    r"|^[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){1,7}(?::?(?:\d{1,3}\.){3}\d{1,3})?(?:%[\w.-]{1,32})?$"
)
_PROTO_PATTERN: Final = r"^(?:[a-z][a-z0-9.-]{0,15}|25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"

Port = Annotated[int, Meta(ge=0, le=65535)]
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Pid = Annotated[int, Meta(ge=0, le=2**32 - 1)]
Uid = Annotated[int, Meta(ge=0, le=2**32 - 2)]  # 2^32-1 is auditd's "unset": a parser makes it None
EventTime = Annotated[int, Meta(ge=TS_MIN_MS, lt=TS_MAX_MS)]
IpAddress = Annotated[str, Meta(max_length=64)]
Protocol = Annotated[str, Meta(max_length=16)]
TenantId = Annotated[str, Meta(max_length=128)]
SHAPES: Final = {
    "src_ip": _IP_PATTERN,
    "dst_ip": _IP_PATTERN,
    "proto": _PROTO_PATTERN,
    "tenant": TENANT_ID_PATTERN,
    "principal_tenant": TENANT_ID_PATTERN,
    "resource_tenant": TENANT_ID_PATTERN,
}
"""The text shape of these fields (where an event has them), checked by ``ingest.bounds``."""
EventId = Annotated[str, Meta(min_length=1, max_length=128)]


class EventBase(msgspec.Struct, kw_only=True, frozen=True, tag_field="kind", gc=False):
    """Fields every event carries. Times are epoch milliseconds UTC.

    ``gc=False``: the cyclic garbage collector does not track events. The detection job decodes
    every event it reads; tracked, each is linked into the collector's lists and out again, and
    the events of a step are most of the container allocations that set off its young
    collections. The job's steps without Flink (``tests/bench/bench_job_steps.py``, 5 minutes of
    the streams bench's backlog, 792k events), alternated: 16.9 and 17.2 us of CPU per event with
    tracked events, 16.0 and 16.7 without (the decoding alone 1.85-1.88 s against 1.68-1.70 s).
    An event cannot be part of a reference cycle: it is frozen, and its fields, ``extra`` too,
    hold only values decoded from its record."""

    id: EventId
    ts: EventTime
    source: str
    tenant: TenantId | None = None
    host: str | None = None
    vm: str | None = None
    schema: str = SCHEMA_VERSION
    extra: dict[str, Any] = msgspec.field(default_factory=dict)

    def kind_name(self) -> str:
        return str(self.__struct_config__.tag)


class FlowEvent(EventBase, kw_only=True, frozen=True, tag="flow"):
    """One flow record, windowed by the time its exporter orders it by. For exporters that write a
    record when a flow ends or at their active timeout (Zeek, NetFlow/IPFIX, VPC Flow Logs, nProbe,
    CICFlowMeter) ``ts`` is the end of the span the record covers and its start is
    ``ts - duration_ms``; for Argus, whose status records and sorted ra files are ordered by
    their start, ``ts`` is the start (``ingest.parsers.argus``)."""

    src_ip: IpAddress
    dst_ip: IpAddress
    src_port: Port = 0
    dst_port: Port = 0
    proto: Protocol = "tcp"
    bytes_out: Count = 0
    bytes_in: Count = 0
    packets_out: Count = 0
    packets_in: Count = 0
    duration_ms: Count = 0
    action: Literal["accept", "reject"] = "accept"


class ProcessEvent(EventBase, kw_only=True, frozen=True, tag="process"):
    exe: str
    syscall: str
    pid: Pid = 0
    ppid: Pid = 0
    parent_exe: str = ""
    cmdline: str = ""
    uid: Uid | None = None
    path: str | None = None
    result: Result = "success"


class AuditEvent(EventBase, kw_only=True, frozen=True, tag="audit"):
    principal: str
    action: str
    resource: str
    principal_tenant: TenantId | None = None
    resource_tenant: TenantId | None = None
    src_ip: IpAddress | None = None
    result: Result = "success"


class AuthEvent(EventBase, kw_only=True, frozen=True, tag="auth"):
    user: str
    result: Result
    src_ip: IpAddress | None = None
    service: str = "sshd"
    method: str = "password"


Event = FlowEvent | ProcessEvent | AuditEvent | AuthEvent

_decoder: Final = msgspec.json.Decoder(Event)
_list_decoder: Final = msgspec.json.Decoder(list[Event])
# The encoder's own bound method: producers call it once per event, and a wrapping function
# would add a Python call to each.
encode_event: Final[Callable[[Event], bytes]] = msgspec.json.Encoder().encode


# Decode and validate one JSON event; raises ``msgspec.ValidationError``/``DecodeError``. The
# decoder's own bound method, like ``encode_event``: the detection job calls it once per event.
decode_event: Final[Callable[[bytes | str], Event]] = _decoder.decode


def decode_events(data: bytes | str) -> list[Event]:
    """Decode a JSON array of events."""
    return _list_decoder.decode(data)


def to_dict(event: Event) -> dict[str, Any]:
    """Plain dict with ``kind`` included (for pandas, Flink rows and Elasticsearch)."""
    out: dict[str, Any] = msgspec.to_builtins(event)
    return out


def with_tenant(event: Event, tenant: str | None) -> Event:
    return msgspec.structs.replace(event, tenant=tenant)


def event_id(source: str, raw: bytes | str) -> str:
    """Deterministic id of a source record: hash of its source and raw bytes."""
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    return event_id_hasher(source, data).hexdigest()


def event_id_hasher(source: str, first: bytes = b"") -> Any:
    """The hash state of ``event_id`` after the source and the ``first`` raw bytes: parsers that
    hash records in parts copy it and add the rest."""
    return hashlib.blake2b(source.encode() + b"\x00" + first, digest_size=16)


def event_id_of(source: str) -> Callable[[bytes], str]:
    """``event_id`` for one source, as a function of the raw bytes: the hash state of the source
    prefix is computed once and copied per record (parsers call it once per event)."""
    copy = event_id_hasher(source).copy

    def ident(raw: bytes) -> str:
        state = copy()
        state.update(raw)
        return state.hexdigest()

    return ident
