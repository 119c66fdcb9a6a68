"""NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) export packets -> flow events.

``NetflowParser.feed_packet(data, exporter)`` decodes one UDP payload. v9 and IPFIX templates are
cached per (exporter, observation domain / source id, template id), as the RFCs require: two
exporters may reuse template ids. A data set that arrives before its template cannot be decoded
and goes to the DLQ (nothing is guessed). Options templates are learnt and their data records
(sampling and interface tables, not flows) are counted as skipped.

Direction: a NetFlow record is one direction, source to destination, so ``IN_BYTES``/``IN_PKTS``
(1/2) are the source's ``bytes_out``/``packets_out``. nProbe's bidirectional ``OUT_BYTES``/
``OUT_PKTS`` (23/24) and the RFC 5103 reverse counters (enterprise 29305) are ``bytes_in``/
``packets_in``. Reading capture files and the UDP collector are in ``netflow_capture``.
"""

from __future__ import annotations

import socket
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, ClassVar, Final, NamedTuple

from msgspec.structs import replace

from ingest.parsers.base import Output, ParseContext, Parser
from ingest.parsers.flowutil import ip_from_int, picker, proto_name
from ingest.schema import FlowEvent, event_id_hasher

__all__ = ["FIELD_NAMES", "NetflowParser", "Template", "TemplateCache"]

REVERSE_PEN: Final = 29305
_V5_HEADER: Final = struct.Struct("!HHIIIIBBH")
_V5_RECORD: Final = struct.Struct("!4s4s4sHHIIIIHHBBBBHHBBH")  # addresses as bytes for inet_ntoa
_V9_HEADER: Final = struct.Struct("!HHIIII")
_IPFIX_HEADER: Final = struct.Struct("!HHIII")
_SET_HEADER: Final = struct.Struct("!HH")
_NTP_EPOCH_OFFSET: Final = 2208988800

FIELD_NAMES: Final = {
    1: "in_bytes", 2: "in_pkts", 4: "protocol", 5: "tos", 6: "tcp_flags", 7: "src_port", 8: "src_ip",
    9: "src_mask", 10: "input_snmp", 11: "dst_port", 12: "dst_ip", 13: "dst_mask", 14: "output_snmp",
    15: "next_hop", 16: "src_as", 17: "dst_as", 21: "last_switched", 22: "first_switched",
    23: "out_bytes", 24: "out_pkts", 27: "src_ip6", 28: "dst_ip6", 32: "icmp_type", 58: "vlan",
    61: "direction", 82: "interface_name", 83: "interface_description", 85: "octet_total", 86: "packet_total", 89: "forwarding_status",
    136: "flow_end_reason", 150: "start_s", 151: "end_s", 152: "start_ms", 153: "end_ms",
    154: "start_us", 155: "end_us", 156: "start_ns", 157: "end_ns", 160: "system_init_ms", 96: "application_name",
}  # fmt: skip
_CORE_IDS: Final = frozenset({1, 2, 4, 7, 8, 11, 12, 21, 22, 23, 24, 27, 28, 85, 86, 150, 151, 152, 153,
                              154, 155, 156, 157, 160})  # fmt: skip
_IP4_IDS: Final = frozenset({8, 12, 15, 18, 130, 225, 226})
_IP6_IDS: Final = frozenset({27, 28, 62, 63})
_PROTO: Final = [proto_name(n) for n in range(256)]
_ntoa: Final = socket.inet_ntoa
_IP_CACHE_MAX: Final = 65536


class Template(NamedTuple):
    fields: tuple[tuple[int, int, int], ...]  # (type id, length, enterprise number or 0)
    scope_count: int  # options templates: number of scope fields; -1 for a data template
    record_len: int  # fixed length, or -1 when a field is variable-length (IPFIX 65535)
    unpacker: struct.Struct | None
    plan: _Plan | None = None  # data templates: how a record's values become a flow


class _Plan(NamedTuple):
    """A data template compiled once, so that a record needs no per-field decisions. Values are
    picked by position from the record with a zero appended (``missing`` points at it); a field
    that appears twice counts with its last occurrence, as in a field-by-field walk."""

    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (record position, converter)
    missing: int  # position of the appended zero
    addresses: int  # 4: IPv4 source/destination, 6: IPv6, 0: none (the record is rejected)
    canonical: Callable[[Any], tuple[Any, ...]]  # src, dst, ports, protocol, counters (see _CANONICAL)
    clock: _Clock  # where the flow's times are, for ``_times``
    extra_names: tuple[str, ...]  # exporter, domain, sequence, then the other fields
    extra_values: Callable[[Any], tuple[Any, ...]]


class _Clock(NamedTuple):
    """A template's timestamps, chosen once: ``unit`` says what they count (``ms``, ``s`` and
    ``ntp``: absolute; ``uptime``: ms since the exporter booted; ``export``: no usable field, the
    packet's export time) and ``start``/``end``/``init`` are record positions (the end falls back
    to the start, ``init`` is systemInitTimeMilliseconds or -1)."""

    unit: str
    start: int = 0
    end: int = 0
    init: int = -1


_CANONICAL: Final = (
    (8, 27), (12, 28), (7,), (11,), (4,), (1, 85), (2, 86), (23,), (24,)
)  # fmt: skip


def _numeric(length: int) -> bool:
    """Whether a field of this length decodes as an integer (else it stays bytes)."""
    return length in (1, 2, 4, 8)


def _plan(fields: list[tuple[int, int, int]]) -> _Plan:
    last: dict[int, int] = {}  # canonical field id -> position of its last occurrence
    convert: list[tuple[int, Callable[[Any], Any]]] = []
    extra_names: list[str] = []
    extra_idx: list[int] = []
    for i, (ftype, flen, pen) in enumerate(fields):
        if pen == REVERSE_PEN and ftype in (1, 2):
            last[23 if ftype == 1 else 24] = i
        elif pen:
            if not _numeric(flen):
                convert.append((i, bytes.hex))
            extra_names.append(f"e{pen}.{ftype}")
            extra_idx.append(i)
        elif ftype in _CORE_IDS:
            if flen <= 8 and not _numeric(flen):
                convert.append((i, _as_int))
            last[ftype] = i
        else:
            if not _numeric(flen):
                convert.append((i, partial(_bytes_value, ftype)))
            elif ftype in _IP4_IDS and flen == 4:
                convert.append((i, ip_from_int))
            extra_names.append(FIELD_NAMES.get(ftype, f"f{ftype}"))
            extra_idx.append(i)
    missing = len(fields)
    addresses = 4 if 8 in last and 12 in last else 6 if 27 in last and 28 in last else 0
    if addresses == 6:
        last[8], last[12] = last[27], last[28]
    canonical = [next((last[k] for k in keys if k in last), missing) for keys in _CANONICAL]
    return _Plan(
        convert=tuple(convert),
        missing=missing,
        addresses=addresses,
        canonical=picker(canonical),
        clock=_clock(last),
        extra_names=("exporter", "domain", "sequence", *extra_names),
        extra_values=picker(extra_idx),
    )


def _clock(last: dict[int, int]) -> _Clock:
    """The first of these a template carries: flowStart/End milli- or plain seconds (152/153,
    150/151), micro- or nanoseconds as NTP timestamps (154-157), switched times (22/21)."""

    def span(start_id: int, end_id: int) -> tuple[int, int]:
        return last[start_id], last.get(end_id, last[start_id])

    if 152 in last:
        return _Clock("ms", *span(152, 153))
    if 150 in last:
        return _Clock("s", *span(150, 151))
    if 154 in last or 156 in last:
        start = last[154] if 154 in last else last[156]
        return _Clock("ntp", start, last.get(155, last.get(157, start)))
    if 22 in last:
        return _Clock("uptime", *span(22, 21), last.get(160, -1))
    return _Clock("export")


def _make_template(fields: list[tuple[int, int, int]], scope_count: int) -> Template:
    plan = _plan(fields) if scope_count < 0 else None
    if any(length == 0xFFFF for _, length, _ in fields):
        return Template(tuple(fields), scope_count, -1, None, plan)
    codes = {1: "B", 2: "H", 4: "I", 8: "Q"}
    fmt = "!" + "".join(codes.get(length, f"{length}s") for _, length, _ in fields)
    unpacker = struct.Struct(fmt)
    return Template(tuple(fields), scope_count, unpacker.size, unpacker, plan)


class TemplateCache:
    """Templates keyed by (exporter, domain, template id), least recently learnt evicted first."""

    def __init__(self, max_templates: int = 65536) -> None:
        self.max_templates = max_templates
        self._items: OrderedDict[tuple[str, int, int], Template] = OrderedDict()

    def get(self, exporter: str, domain: int, template_id: int) -> Template | None:
        return self._items.get((exporter, domain, template_id))

    def put(self, exporter: str, domain: int, template_id: int, template: Template) -> None:
        key = (exporter, domain, template_id)
        self._items[key] = template
        self._items.move_to_end(key)
        while len(self._items) > self.max_templates:
            self._items.popitem(last=False)

    def withdraw(self, exporter: str, domain: int, template_id: int) -> None:
        self._items.pop((exporter, domain, template_id), None)

    def __len__(self) -> int:
        return len(self._items)


class _Malformed(ValueError):
    pass


class NetflowParser(Parser):
    source: ClassVar[str] = "netflow"

    def __init__(
        self, out: Output, ctx: ParseContext | None = None, cache: TemplateCache | None = None
    ) -> None:
        super().__init__(out, ctx)
        self.templates = cache if cache is not None else TemplateCache()
        self._ip4_names: dict[int, str] = {}

    def feed(self, line: bytes, lineno: int, offset: int) -> None:  # pragma: no cover - binary format
        raise TypeError("NetFlow is binary: use feed_packet or feed_stream")

    def feed_stream(self, stream: Any, max_line_bytes: int | None = None) -> None:
        from ingest.parsers.netflow_capture import read_capture

        read_capture(stream, self)
        self.close()

    # --- packets -------------------------------------------------------------------------------
    def feed_packet(self, data: bytes, exporter: str = "0.0.0.0", offset: int | None = None) -> None:  # noqa: S104
        """Decode one export packet; malformed packets and undecodable sets go to the DLQ."""
        if len(data) < 4:
            self.reject("packet shorter than a NetFlow header", data, offset=offset)
            return
        version = int.from_bytes(data[:2], "big")
        try:
            if version == 5:
                self._v5(data, exporter)
            elif version == 9:
                self._v9_ipfix(data, exporter, offset, ipfix=False)
            elif version == 10:
                self._v9_ipfix(data, exporter, offset, ipfix=True)
            else:
                self.reject(f"unsupported NetFlow version {version}", data, offset=offset)
        except (_Malformed, struct.error, ValueError) as exc:
            self.reject(f"malformed NetFlow v{version} packet: {exc}", data, offset=offset)

    def _v5(self, data: bytes, exporter: str) -> None:
        _v, count, uptime, secs, nsecs, seq, engine_type, engine_id, sampling = _V5_HEADER.unpack_from(data)
        end = _V5_HEADER.size + count * _V5_RECORD.size
        if count == 0 or len(data) < end:
            raise _Malformed(f"header says {count} records, packet has {len(data)} bytes")
        # event_id("netflow", exporter + header + record), the shared prefix hashed once per packet
        seed = event_id_hasher("netflow", exporter.encode() + data[: _V5_HEADER.size]).copy
        base_ms = secs * 1000 + nsecs // 1_000_000 - uptime
        pos = _V5_HEADER.size
        emit, owner_of, ntoa = self.out.event, self.flow_owner, _ntoa
        for rec in _V5_RECORD.iter_unpack(data[_V5_HEADER.size : end]):
            src, dst, nexthop, inp, outp, pkts, octets, first, last, sport, dport = rec[:11]
            flags, prot, tos, src_as, dst_as, src_mask, dst_mask = rec[12:19]
            extra = {"exporter": exporter, "flow_sequence": seq, "engine_type": engine_type,
                     "engine_id": engine_id, "next_hop": ntoa(nexthop), "input_snmp": inp,
                     "output_snmp": outp, "tcp_flags": flags, "tos": tos, "src_as": src_as,
                     "dst_as": dst_as, "src_mask": src_mask, "dst_mask": dst_mask}  # fmt: skip
            if sampling:
                extra["sampling_interval"] = sampling & 0x3FFF
            src_ip, dst_ip = ntoa(src), ntoa(dst)
            tenant, vm, host = owner_of(src_ip, dst_ip)
            ident = seed()
            ident.update(data[pos : pos + 48])
            emit(
                FlowEvent(
                    id=ident.hexdigest(), ts=base_ms + first, source="netflow", tenant=tenant, host=host,
                    vm=vm, src_ip=src_ip, dst_ip=dst_ip, src_port=sport, dst_port=dport, proto=_PROTO[prot],
                    bytes_out=octets, packets_out=pkts, duration_ms=max(0, last - first), extra=extra,
                )
            )  # fmt: skip
            pos += 48

    def _v9_ipfix(self, data: bytes, exporter: str, offset: int | None, ipfix: bool) -> None:
        if ipfix:
            _v, length, export_s, seq, domain = _IPFIX_HEADER.unpack_from(data)
            if length > len(data) or length < _IPFIX_HEADER.size:
                raise _Malformed(f"message length {length}, packet has {len(data)} bytes")
            data = data[:length]
            pos = _IPFIX_HEADER.size
            uptime = None
        else:
            _v, _count, uptime, export_s, seq, domain = _V9_HEADER.unpack_from(data)
            pos = _V9_HEADER.size
        header = data[:pos]
        ctx = _PacketCtx(exporter, domain, export_s * 1000, uptime, seq, header, ipfix)
        tmpl_id, opt_id = (2, 3) if ipfix else (0, 1)
        while pos + 4 <= len(data):
            set_id, set_len = _SET_HEADER.unpack_from(data, pos)
            if set_len < 4 or pos + set_len > len(data):
                raise _Malformed(f"set {set_id} at byte {pos} has bad length {set_len}")
            body = data[pos + 4 : pos + set_len]
            set_offset = None if offset is None else offset + pos
            if set_id == tmpl_id:
                self._templates(body, ctx, options=False)
            elif set_id == opt_id:
                self._templates(body, ctx, options=True)
            elif set_id >= 256:
                self._data_set(set_id, body, ctx, data[pos : pos + set_len], set_offset)
            else:
                self.reject(f"reserved set id {set_id}", data[pos : pos + set_len], offset=set_offset)
            pos += set_len

    def _templates(self, body: bytes, ctx: _PacketCtx, options: bool) -> None:
        pos = 0
        while pos + 4 <= len(body):
            template_id, count = _SET_HEADER.unpack_from(body, pos)
            pos += 4
            scope = -1
            if options and ctx.ipfix:
                scope = int.from_bytes(body[pos : pos + 2], "big")
                pos += 2
            elif options:  # v9: scope and option lengths are in bytes (4 per field)
                scope_len, opt_len = count, int.from_bytes(body[pos : pos + 2], "big")
                pos += 2
                scope, count = scope_len // 4, (scope_len + opt_len) // 4
            if template_id < 256:
                if template_id == 0 and count == 0:
                    break  # padding
                raise _Malformed(f"template id {template_id} below 256")
            if count == 0 and ctx.ipfix:
                self.templates.withdraw(ctx.exporter, ctx.domain, template_id)
                continue
            fields: list[tuple[int, int, int]] = []
            for _ in range(count):
                if pos + 4 > len(body):
                    raise _Malformed(f"template {template_id} cut short")
                ftype, flen = _SET_HEADER.unpack_from(body, pos)
                pos += 4
                pen = 0
                if ctx.ipfix and ftype & 0x8000:
                    pen = int.from_bytes(body[pos : pos + 4], "big")
                    ftype &= 0x7FFF
                    pos += 4
                if flen == 0 or (flen == 0xFFFF and not ctx.ipfix):
                    raise _Malformed(f"template {template_id} field {ftype} has length {flen}")
                fields.append((ftype, flen, pen))
            self.templates.put(ctx.exporter, ctx.domain, template_id, _make_template(fields, scope))

    def _data_set(self, set_id: int, body: bytes, ctx: _PacketCtx, raw: bytes, offset: int | None) -> None:
        template = self.templates.get(ctx.exporter, ctx.domain, set_id)
        if template is None:
            self.reject(
                f"no template {set_id} from exporter {ctx.exporter} domain {ctx.domain} (yet)",
                raw,
                offset=offset,
            )
            return
        plan = template.plan
        if plan is None:  # options template: sampling and interface tables, not flows
            for _ in _records(template, body):
                self.skip("netflow options record")
            return
        seed = event_id_hasher("netflow", ctx.exporter.encode() + ctx.header).copy
        head = (ctx.exporter, ctx.domain, ctx.seq)
        emit = self.out.event
        for rec_raw, values in _records(template, body):
            try:
                event = self._flow(plan, values, rec_raw, ctx, head, seed)
            except (ValueError, TypeError) as exc:  # TypeError: a time or counter field of odd length
                self.reject(f"bad flow record in set {set_id}: {exc}", rec_raw, offset=offset)
                continue
            emit(event)

    def _flow(
        self,
        plan: _Plan,
        values: tuple[Any, ...] | list[Any],
        rec_raw: bytes,
        ctx: _PacketCtx,
        head: tuple[str, int, int],
        seed: Callable[[], Any],
    ) -> FlowEvent:
        row = [*values, 0]
        for i, convert in plan.convert:
            row[i] = convert(row[i])
        src, dst, sport, dport, proto, bytes_out, packets_out, bytes_in, packets_in = plan.canonical(row)
        if plan.addresses == 4:
            names = self._ip4_names  # flows repeat addresses: their text is cached
            src, dst = names.get(src) or self._ip4_name(src), names.get(dst) or self._ip4_name(dst)
        elif plan.addresses == 6:
            src, dst = _ip6(src), _ip6(dst)
        else:
            raise ValueError("no source/destination address fields")
        start, end = _times(plan.clock, row, ctx)
        # Same lengths by construction; ``strict=`` would cost a keyword call per record.
        extra: dict[str, Any] = dict(zip(plan.extra_names, head + plan.extra_values(row)))  # noqa: B905
        status = extra.get("forwarding_status")
        action = "reject" if isinstance(status, int) and status >> 6 == 2 else "accept"
        ident = seed()
        ident.update(rec_raw)
        return replace(
            self.flow_base(self.flow_owner(src, dst)), id=ident.hexdigest(), ts=start, src_ip=src, dst_ip=dst,
            src_port=sport, dst_port=dport, proto=proto_name(proto), bytes_out=bytes_out, packets_out=packets_out,
            bytes_in=bytes_in, packets_in=packets_in, duration_ms=max(0, end - start), action=action, extra=extra,
        )  # fmt: skip

    def _ip4_name(self, value: Any) -> str:
        name = _ip4(value)
        if len(self._ip4_names) >= _IP_CACHE_MAX:
            self._ip4_names.clear()
        self._ip4_names[value] = name
        return name


class _PacketCtx(NamedTuple):
    exporter: str
    domain: int
    export_ms: int
    uptime: int | None
    seq: int
    header: bytes
    ipfix: bool


def _records(template: Template, body: bytes) -> Iterable[tuple[bytes, tuple[Any, ...] | list[Any]]]:
    """Split a data set into (raw record, decoded values); trailing padding is ignored. A set with
    a malformed record raises ``_Malformed`` before any of its records is returned."""
    if template.unpacker is not None:
        return _fixed_records(template.unpacker, body)
    out: list[tuple[bytes, tuple[Any, ...] | list[Any]]] = []
    pos = 0
    while pos < len(body):
        start = pos
        values: list[Any] = []
        try:
            for _ftype, declared, _pen in template.fields:
                flen = declared
                if declared == 0xFFFF:
                    flen = body[pos]
                    pos += 1
                    if flen == 255:
                        flen = int.from_bytes(body[pos : pos + 2], "big")
                        pos += 2
                chunk = body[pos : pos + flen]
                if len(chunk) < flen:
                    raise IndexError
                values.append(int.from_bytes(chunk, "big") if _numeric(declared) else chunk)
                pos += flen
        except IndexError:
            if any(body[start:]):
                raise _Malformed("variable-length record cut short") from None
            break  # zero padding
        out.append((body[start:pos], values))
    return out


def _fixed_records(unpacker: struct.Struct, body: bytes) -> Iterator[tuple[bytes, tuple[Any, ...]]]:
    size = unpacker.size
    pos = 0
    for values in unpacker.iter_unpack(body[: len(body) - len(body) % size]):
        yield body[pos : pos + size], values
        pos += size


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")


def _bytes_value(ftype: int, value: bytes) -> Any:
    if ftype in _IP6_IDS and len(value) == 16:
        return _ip6(value)
    try:
        return value.rstrip(b"\x00").decode("utf-8") if ftype in (82, 83, 84, 96, 100) else value.hex()
    except UnicodeDecodeError:
        return value.hex()


def _ip4(value: Any) -> str:
    if not isinstance(value, int) or value >> 32:
        raise ValueError(
            f"IPv4 address field of {len(value) if isinstance(value, bytes) else 'over 4'} bytes"
        )
    return _ntoa(value.to_bytes(4, "big"))


def _ip6(value: Any) -> str:
    return ip_from_int(_as_int(value), v6=True)


def _ntp_ms(value: int) -> int:
    return ((value >> 32) - _NTP_EPOCH_OFFSET) * 1000 + ((value & 0xFFFFFFFF) * 1000 >> 32)


def _times(clock: _Clock, row: list[Any], ctx: _PacketCtx) -> tuple[int, int]:
    """Absolute (start, end) ms of a record (``row``) from the template's ``clock``."""
    unit = clock.unit
    if unit == "ms":
        return row[clock.start], row[clock.end]
    if unit == "s":
        return row[clock.start] * 1000, row[clock.end] * 1000
    if unit == "ntp":
        return _ntp_ms(row[clock.start]), _ntp_ms(row[clock.end])
    if unit == "uptime":
        first, last = row[clock.start], row[clock.end]
        if ctx.uptime is not None:  # v9: switched times are sysUptime ms
            boot = ctx.export_ms - ctx.uptime
        elif clock.init >= 0:  # IPFIX: relative to systemInitTimeMilliseconds
            boot = row[clock.init]
        else:
            return ctx.export_ms, ctx.export_ms + max(0, last - first)
        return boot + first, boot + last
    return ctx.export_ms, ctx.export_ms
