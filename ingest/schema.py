"""The canonical event of DESIGN.md: one definition shared by parsers, detectors, jobs and tests.

Decoding and validation happen in one step (msgspec) at the edge; nothing downstream re-validates.
Events are frozen: a detector cannot mutate what it is given. Use ``with_tenant`` (or
``msgspec.structs.replace``) to derive an enriched copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
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


class EventBase(msgspec.Struct, kw_only=True, frozen=True, tag_field="kind"):
    """Fields every event carries. Times are epoch milliseconds UTC."""

    id: str
    ts: int
    source: str
    tenant: str | None = None
    host: str | None = None
    vm: str | None = None
    schema: str = SCHEMA_VERSION
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


class FlowEvent(EventBase, kw_only=True, frozen=True, tag="flow"):
    src_ip: str
    dst_ip: str
    src_port: int = 0
    dst_port: int = 0
    proto: str = "tcp"
    bytes_out: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    packets_in: int = 0
    duration_ms: int = 0
    action: Literal["accept", "reject"] = "accept"


class ProcessEvent(EventBase, kw_only=True, frozen=True, tag="process"):
    exe: str
    syscall: str
    pid: int = 0
    ppid: int = 0
    parent_exe: str = ""
    cmdline: str = ""
    uid: int = 0
    path: str | None = None
    result: Result = "success"


class AuditEvent(EventBase, kw_only=True, frozen=True, tag="audit"):
    principal: str
    action: str
    resource: str
    principal_tenant: str | None = None
    resource_tenant: str | None = None
    src_ip: str | None = None
    result: Result = "success"


class AuthEvent(EventBase, kw_only=True, frozen=True, tag="auth"):
    user: str
    result: Result
    src_ip: str | None = None
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
