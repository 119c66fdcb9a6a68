"""The raw record contract: what a feeder writes to a raw topic, and what the parse stage reads.

Feeders (the shippers users already run: rsyslog ``omkafka``, Vector, Fluent Bit, Filebeat, our
syslog receiver ``ingest.syslog_receiver``, a NetFlow relay) write raw input records to Kafka and
``streams.parse_stage`` turns them into canonical events with the same parsers, bounds, DLQ
reasons and event ids as ``ssa ingest``. The contract:

- **Topic**: one per input format, ``<prefix><format>`` with the prefix the setting
  ``topic_raw_prefix`` (``ssa.raw.``) and ``format`` an ``ssa ingest --format`` name, aliases
  resolved (``ssa.raw.syslog``, ``ssa.raw.auditd``, ``ssa.raw.vpcflow``, ``ssa.raw.zeek``,
  ``ssa.raw.netflow``, ``ssa.raw.cloudaudit``, ...): ``raw_topic(prefix, format)``. The topic
  names the format; a topic whose suffix is not a format sends its records to the DLQ. In secure
  mode (``tenant_topics``) the topics are per tenant, ``ssa.<tenant>.raw.<format>``, each written
  only by that tenant's feeder principal (``ssa.provider.raw.{auditd,syslog}``: the provider's),
  and the parse stage takes the tenant from the topic (``streams.parse_stage.tenant_raw_format``).
- **Value**: the raw bytes of ONE input record, exactly as the source wrote it: a log line without
  its newline (a trailing ``\\n`` or ``\\r\\n`` is tolerated and removed; a value holding several
  lines is read as those lines, in order), one JSON document (CloudTrail: a record, or a whole
  ``{"Records": [...]}`` file, pretty-printed or not), one NetFlow/IPFIX export datagram.
  Bytes are hashed as they are: a shipper must not rewrite the line (rsyslog: template
  ``%rawmsg%`` or ``%msg%`` of ``imfile``, control-character escaping off) or the event id differs
  from ``ssa ingest`` of the same file.
- **Key**: the feeder's source name as bytes (``hostname:/var/log/auth.log``): Kafka puts one
  source on one partition, so its records stay in order (auditd joins the lines of an event,
  Zeek TSV needs its ``#fields`` header before its rows).
- **Headers** (all optional, so a shipper that cannot set headers, such as rsyslog's ``omkafka``,
  still feeds; a header given must be valid, else the record goes to the DLQ with the reason):

  ==================  ==============================================================================
  ``ssa-format``      the format name; when present it must name the topic's format (aliases allowed)
  ``ssa-source``      the source name (default: the key, else the topic); at most 512 bytes
  ``ssa-tenant``      the tenant owning the source (``--tenant`` of ``ssa ingest``): a tenant id of the
                      registry's shape, at most 128 bytes. Plain mode: the feeder's word. Secure
                      mode: it may only name the raw topic's tenant (else the record goes to the
                      DLQ), and none on the provider's topics
  ``ssa-received-ms`` when the feeder received the record, epoch ms (decimal, at most 15 digits)
  ==================  ==============================================================================

  Other headers (a shipper's own) are ignored; at most ``MAX_HEADERS`` headers of at most
  ``MAX_HEADER_BYTES`` each are accepted, so a hostile record cannot make the stage hold much.

**Event ids.** An event's id is ``ingest.schema.event_id(parser source, raw bytes)``: the parser's
source name (``sshd``, ``auditd``, ``vpcflow``, ``netflow``...) and the record's bytes, as for a
file. The feeder's source name is not hashed (``ssa ingest`` does not hash the file name either),
so the same line gives the same event id whether it came through a raw topic or ``ssa ingest``,
and a replay gives the ids again. For ``netflow`` the source name is the exporter's address
(``ssa ingest udp://`` uses the datagram's source address): a relay must set ``ssa-source`` (or the
key) to the exporter's IP address for its event ids to equal the collector's.

``make_headers`` builds the headers a feeder sends; ``read_headers`` reads and checks them
(``RawRejected``'s message is the DLQ reason).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ingest.parsers import FORMAT_NAMES, get_format
from ingest.schema import TENANT_ID_PATTERN

__all__ = [
    "HEADER_FORMAT",
    "HEADER_RECEIVED_MS",
    "HEADER_SOURCE",
    "HEADER_TENANT",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_SOURCE_BYTES",
    "RawHeaders",
    "RawRejected",
    "format_of_topic",
    "header_value",
    "make_headers",
    "raw_topic",
    "raw_topic_pattern",
    "read_headers",
]

HEADER_FORMAT: Final = "ssa-format"
HEADER_SOURCE: Final = "ssa-source"
HEADER_TENANT: Final = "ssa-tenant"
HEADER_RECEIVED_MS: Final = "ssa-received-ms"
MAX_HEADERS: Final = 64
MAX_HEADER_BYTES: Final = 4096
MAX_SOURCE_BYTES: Final = 512
_MAX_TENANT_BYTES: Final = 128
_TENANT: Final = re.compile(TENANT_ID_PATTERN)

Headers = Sequence[tuple[str, bytes | str | None]]


class RawRejected(ValueError):
    """A raw record the stage cannot read (bad topic or header); the message is the DLQ reason."""


@dataclass(frozen=True, slots=True)
class RawHeaders:
    """What a raw record's topic, key and headers say about it."""

    format: str
    source: str
    tenant: str | None = None
    received_ms: int | None = None


def raw_topic(prefix: str, fmt: str) -> str:
    """The raw topic of ``fmt`` (a format name or alias): ``ssa.raw.syslog``."""
    return prefix + get_format(fmt).name


def raw_topic_pattern(prefix: str) -> str:
    """The regular expression subscription of every raw topic (librdkafka: a leading ``^``)."""
    return "^" + re.escape(prefix) + r"[A-Za-z0-9._-]+$"


def format_of_topic(prefix: str, topic: str) -> str:
    """The format a raw topic carries; ``RawRejected`` when it names none."""
    if not topic.startswith(prefix):
        raise RawRejected(f"topic {_clip(topic)} is not a raw topic (prefix {prefix})")
    name = topic[len(prefix) :]
    try:
        return get_format(name).name
    except KeyError:
        raise RawRejected(
            f"raw topic {_clip(topic)} names no input format; use one of {', '.join(FORMAT_NAMES)}"
        ) from None


def make_headers(
    fmt: str, source: str, tenant: str | None = None, received_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """The headers a feeder sends with a raw record (checked as ``read_headers`` will)."""
    headers = [(HEADER_FORMAT, get_format(fmt).name.encode()), (HEADER_SOURCE, source.encode())]
    if tenant is not None:
        headers.append((HEADER_TENANT, tenant.encode()))
    if received_ms is not None:
        headers.append((HEADER_RECEIVED_MS, str(received_ms).encode()))
    read_headers(headers, get_format(fmt).name)  # refuse now what the stage would refuse
    return headers


def read_headers(
    headers: Headers | None, topic_format: str, key: bytes | None = None, topic: str = ""
) -> RawHeaders:
    """The checked headers of a record on the raw topic of ``topic_format``; ``RawRejected``
    names the first problem."""
    fmt = topic_format
    source: str | None = None
    tenant: str | None = None
    received: int | None = None
    if headers:
        if len(headers) > MAX_HEADERS:
            raise RawRejected(f"{len(headers)} headers, more than the {MAX_HEADERS} accepted")
        for name, value in headers:
            if name not in (HEADER_FORMAT, HEADER_SOURCE, HEADER_TENANT, HEADER_RECEIVED_MS):
                continue  # a shipper's own header
            data = value.encode() if isinstance(value, str) else (value or b"")
            if len(data) > MAX_HEADER_BYTES:
                raise RawRejected(f"header {name} of {len(data)} bytes, over {MAX_HEADER_BYTES}")
            text = _text(name, data)
            if name == HEADER_FORMAT:
                fmt = _check_format(text, topic_format)
            elif name == HEADER_SOURCE:
                source = _check_source(text)
            elif name == HEADER_TENANT:
                tenant = _check_tenant(text)
            else:
                received = _check_ms(text)
    if source is None:
        source = _check_source(_text("key", key)) if key else topic or fmt
    return RawHeaders(fmt, source, tenant, received)


def header_value(headers: Iterable[tuple[str, bytes | str | None]] | None, name: str) -> bytes | None:
    """The first value of header ``name`` (tests, feeders)."""
    for key, value in headers or ():
        if key == name:
            return value.encode() if isinstance(value, str) else value
    return None


def _text(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RawRejected(f"header {name} is not UTF-8 (byte {exc.start})") from None


def _check_format(text: str, topic_format: str) -> str:
    try:
        named = get_format(text).name
    except KeyError:
        raise RawRejected(
            f"header ssa-format {_clip(text)} names no input format; use one of {', '.join(FORMAT_NAMES)}"
        ) from None
    if named != topic_format:
        raise RawRejected(f"header ssa-format {named} disagrees with the topic's format {topic_format}")
    return named


def _check_source(text: str) -> str:
    if not text or len(text.encode()) > MAX_SOURCE_BYTES:
        raise RawRejected(f"source name of {len(text.encode())} bytes: give 1 to {MAX_SOURCE_BYTES}")
    if not text.isprintable():
        raise RawRejected(f"source name {_clip(text)} has unprintable characters")
    return text


def _check_tenant(text: str) -> str:
    if len(text.encode()) > _MAX_TENANT_BYTES or not _TENANT.match(text):
        raise RawRejected(f"header ssa-tenant {_clip(text)} is not a tenant id")
    return text


def _check_ms(text: str) -> int:
    if not text.isdigit() or len(text) > 15:
        raise RawRejected(f"header ssa-received-ms {_clip(text)} is not epoch milliseconds")
    return int(text)


def _clip(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."
