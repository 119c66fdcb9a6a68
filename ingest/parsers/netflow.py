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

Time: the event's ``ts`` is the flow's end (``last_switched``, ``flowEnd*``; the start when there is
no end field), ``duration_ms`` its length. v5/v9 switched times are 32-bit sysUptime milliseconds:
the end is placed by its distance to the header's uptime at export, across a wrap of the counter,
and the start is the end minus the duration.
"""

from __future__ import annotations

import socket
import struct
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, Final, NamedTuple

from msgspec.structs import replace

from ingest.parsers.base import Output, ParseContext, Parser
from ingest.parsers.flowutil import ip_from_int, picker, proto_name
from ingest.schema import TS_MAX_MS, TS_MIN_MS, FlowEvent, event_id_hasher

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
_UPTIME_MASK: Final = 0xFFFFFFFF


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
    invalid: str | None = None  # why no record of this template can be a flow (every one is rejected)
    wide: bool = False  # a port or the protocol is wider than its range: each record is checked


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


_ADDRESS_LENGTHS: Final = {8: 4, 12: 4, 27: 16, 28: 16}
_NARROW: Final = {7: 2, 11: 2, 4: 1}  # ports and protocol: wider fields are checked record by record


def _numeric(length: int) -> bool:
    """Whether a field of this length decodes as an integer (else it stays bytes)."""
    return length in (1, 2, 4, 8)


def _field_problem(ftype: int, flen: int, pen: int) -> str | None:
    """Why a template field cannot fill its canonical field, or None. Addresses have one length;
    numbers may be shorter than their type (RFC 7011 reduced-size encoding) but never over 8 bytes,
    so that no counter or time is ever kept as a byte string."""
    if (pen == REVERSE_PEN and ftype in (1, 2)) or (not pen and ftype in _CORE_IDS):
        name = FIELD_NAMES.get(ftype, f"f{ftype}") if not pen else f"e{pen}.{ftype}"
        want = _ADDRESS_LENGTHS.get(ftype) if not pen else None
        if want is not None and flen != want:
            return f"template field {name} of {flen} bytes (an address of {want})"
        if want is None and flen > 8:
            return f"template field {name} of {flen} bytes (a number of at most 8)"
    return None


def _plan(fields: list[tuple[int, int, int]]) -> _Plan:
    last: dict[int, int] = {}  # canonical field id -> position of its last occurrence
    convert: list[tuple[int, Callable[[Any], Any]]] = []
    extra_names: list[str] = []
    extra_idx: list[int] = []
    invalid = next(filter(None, (_field_problem(*f) for f in fields)), None)
    wide = any(not pen and ftype in _NARROW and flen > _NARROW[ftype] for ftype, flen, pen in fields)
    for i, (ftype, flen, pen) in enumerate(fields):
        if pen == REVERSE_PEN and ftype in (1, 2):
            if flen <= 8 and not _numeric(flen):
                convert.append((i, _as_int))
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
    elif addresses == 0 and invalid is None:
        invalid = "no source and destination address fields in its template"
    canonical = [next((last[k] for k in keys if k in last), missing) for keys in _CANONICAL]
    return _Plan(
        convert=tuple(convert),
        missing=missing,
        addresses=addresses,
        canonical=picker(canonical),
        clock=_clock(last),
        extra_names=("exporter", "domain", "sequence", *extra_names),
        extra_values=picker(extra_idx),
        invalid=invalid,
        wide=wide,
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
    """Raised with a reason in our words; the caller rejects the bytes it could not read."""


class NetflowParser(Parser):
    """Every flow record ends as an event or a DLQ record; every template record (data, options,
    withdrawal) and options data record as a counted skip; bytes that cannot be read as records
    (a bad header, a set with no template, a set or trailing run too short for a record) as one DLQ
    record per run. A packet never raises: the unexpected is rejected in our words."""

    source: ClassVar[str] = "netflow"

    def __init__(
        self, out: Output, ctx: ParseContext | None = None, cache: TemplateCache | None = None
    ) -> None:
        super().__init__(out, ctx)
        self.templates = cache if cache is not None else TemplateCache()
        self._ip4_names: dict[int, str] = {}
        # one bounds check per set or packet, not per event (``BoundedOutput.event_batch``)
        self._emit: Callable[[list[FlowEvent]], None] = getattr(self.out, "event_batch", self._emit_each)

    def feed(self, line: bytes, lineno: int, offset: int) -> None:  # pragma: no cover - binary format
        raise TypeError("NetFlow is binary: use feed_packet or feed_stream")

    def feed_stream(self, stream: Any, max_line_bytes: int | None = None) -> None:
        from ingest.parsers.netflow_capture import read_capture

        read_capture(stream, self)
        self.close()

    def _emit_each(self, events: list[FlowEvent]) -> None:
        for event in events:
            self.out.event(event)

    # --- packets -------------------------------------------------------------------------------
    def feed_packet(self, data: bytes, exporter: str = "0.0.0.0", offset: int | None = None) -> None:  # noqa: S104
        """Decode one export packet; what cannot be read goes to the DLQ, and nothing raises."""
        if len(data) < 4:
            self.reject("packet shorter than a NetFlow header", data, offset=offset)
            return
        version = int.from_bytes(data[:2], "big")
        try:
            if version == 5:
                self._v5(data, exporter, offset)
            elif version in (9, 10):
                self._v9_ipfix(data, exporter, offset, ipfix=version == 10)
            else:
                self.reject(f"unsupported NetFlow version {version}", data, offset=offset)
        except _Malformed as exc:  # a header that cannot be read: nothing of the packet was emitted
            self.reject(f"malformed NetFlow v{version} packet: {exc}", data, offset=offset)
        except Exception as exc:  # a bug outside any record's own guard: the packet, in our words
            self.reject(f"unexpected {type(exc).__name__} while reading a NetFlow v{version} packet", data,
                        offset=offset)  # fmt: skip

    def _v5(self, data: bytes, exporter: str, offset: int | None) -> None:
        if len(data) < _V5_HEADER.size:
            raise _Malformed(f"{len(data)} bytes, shorter than its {_V5_HEADER.size} byte header")
        _v, count, uptime, secs, nsecs, seq, engine_type, engine_id, sampling = _V5_HEADER.unpack_from(data)
        end = _V5_HEADER.size + count * _V5_RECORD.size
        if count == 0 or len(data) < end:
            raise _Malformed(f"header says {count} records, packet has {len(data)} bytes")
        # event_id("netflow", exporter + header + record), the shared prefix hashed once per packet
        seed = event_id_hasher("netflow", exporter.encode() + data[: _V5_HEADER.size]).copy
        export_ms = secs * 1000 + nsecs // 1_000_000
        pos = _V5_HEADER.size
        owner_of, ntoa = self.flow_owner, _ntoa
        events: list[FlowEvent] = []
        for rec in _V5_RECORD.iter_unpack(data[_V5_HEADER.size : end]):
            try:
                src, dst, nexthop, inp, outp, pkts, octets, first, last, sport, dport = rec[:11]
                flags, prot, tos, src_as, dst_as, src_mask, dst_mask = rec[12:19]
                duration = (last - first) & _UPTIME_MASK
                ts = export_ms - _before_export(uptime, last)  # the flow's end (ingest.schema.FlowEvent)
                if ts - duration < TS_MIN_MS:
                    raise _Malformed(_bad_time(ts - duration, "start"))
                if ts >= TS_MAX_MS:
                    raise _Malformed(_bad_time(ts, "end"))
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
                events.append(
                    FlowEvent(
                        id=ident.hexdigest(), ts=ts, source="netflow", tenant=tenant, host=host, vm=vm,
                        src_ip=src_ip, dst_ip=dst_ip, src_port=sport, dst_port=dport, proto=_PROTO[prot],
                        bytes_out=octets, packets_out=pkts, duration_ms=duration,
                        extra=extra,
                    )
                )  # fmt: skip
            except Exception as exc:  # one record never ends the packet
                self._reject_record("v5 record", exc, data[pos : pos + 48], _at(offset, pos))
            pos += 48
        if events:
            self._emit(events)
        self._trailing(data, end, offset, "the last record of a v5 packet")

    def _v9_ipfix(self, data: bytes, exporter: str, offset: int | None, ipfix: bool) -> None:
        if ipfix:
            if len(data) < _IPFIX_HEADER.size:
                raise _Malformed(f"{len(data)} bytes, shorter than its {_IPFIX_HEADER.size} byte header")
            _v, length, export_s, seq, domain = _IPFIX_HEADER.unpack_from(data)
            if length > len(data) or length < _IPFIX_HEADER.size:
                raise _Malformed(f"message length {length}, packet has {len(data)} bytes")
            pos = _IPFIX_HEADER.size
            uptime = None
        else:
            if len(data) < _V9_HEADER.size:
                raise _Malformed(f"{len(data)} bytes, shorter than its {_V9_HEADER.size} byte header")
            _v, _count, uptime, export_s, seq, domain = _V9_HEADER.unpack_from(data)
            pos, length = _V9_HEADER.size, len(data)
        header = data[:pos]
        ctx = _PacketCtx(exporter, domain, export_s * 1000, uptime, seq, header, ipfix)
        tmpl_id, opt_id = (2, 3) if ipfix else (0, 1)
        if pos + 4 > length and not any(data[pos:length]):
            self.skip("netflow packet without sets")  # valid, and nothing to read: still counted
            return
        while pos + 4 <= length:
            set_id, set_len = _SET_HEADER.unpack_from(data, pos)
            if set_len < 4 or pos + set_len > length:
                self.reject(
                    f"set {set_id} at byte {pos} of a NetFlow v{10 if ipfix else 9} packet has bad length"
                    f" {set_len}: the {length - pos} bytes from there are unreadable",
                    data[pos:length],
                    offset=_at(offset, pos),
                )
                return
            body = data[pos + 4 : pos + set_len]
            set_offset = _at(offset, pos)
            if set_id in (tmpl_id, opt_id):
                self._templates(body, ctx, set_id == opt_id, _at(offset, pos + 4))
            elif set_id >= 256:
                self._data_set(set_id, body, ctx, data[pos : pos + set_len], set_offset)
            else:
                self.reject(f"reserved set id {set_id}", data[pos : pos + set_len], offset=set_offset)
            pos += set_len
        self._trailing(data, pos, offset, "the last set of a packet")  # IPFIX: also after its length

    def _trailing(self, data: bytes, end: int, offset: int | None, after: str) -> None:
        """Bytes after a packet's last record or set: zero padding, else a DLQ record."""
        rest = data[end:]
        if any(rest):
            self.reject(f"{len(rest)} bytes after {after}", rest, offset=_at(offset, end))

    def _reject_record(self, what: str, exc: Exception, raw: bytes, offset: int | None) -> None:
        """``what``: the record, as in "v5 record" or "flow record in set 256"."""
        if isinstance(exc, _Malformed):
            reason = f"bad NetFlow {what}: {exc}"
        else:  # a bug, never a Python message in the DLQ
            reason = f"unexpected {type(exc).__name__} while reading a NetFlow {what}"
        self.reject(reason, raw, offset=offset)

    # --- templates -----------------------------------------------------------------------------
    def _templates(self, body: bytes, ctx: _PacketCtx, options: bool, offset: int | None) -> None:
        """Learn each template record (a counted skip); from a record that cannot be read, the rest
        of the set goes to the DLQ (its records' boundaries are lost)."""
        pos = 0
        kind = "options template" if options else "template"
        if not any(body):
            self.skip(f"netflow {kind} set without records")
            return
        while pos + 4 <= len(body) and any(body[pos:]):  # zeros after the last record: padding
            start = pos
            try:
                pos = self._template(body, pos, ctx, options)
            except Exception as exc:  # the rest of the set is unreadable
                self._reject_record(f"{kind} record", exc, body[start:], _at(offset, start))
                return
        if any(body[pos:]):
            self.reject(
                f"{len(body) - pos} bytes after the last {kind} record", body[pos:], offset=_at(offset, pos)
            )

    def _template(self, body: bytes, pos: int, ctx: _PacketCtx, options: bool) -> int:
        """Read one template record at ``pos``; returns where the next one starts."""
        template_id, count = _SET_HEADER.unpack_from(body, pos)
        pos += 4
        if template_id < 256:
            raise _Malformed(f"template id {template_id} below 256")
        if count == 0 and ctx.ipfix:  # RFC 7011 8.1: a withdrawal
            self.templates.withdraw(ctx.exporter, ctx.domain, template_id)
            self.skip("netflow template withdrawal")
            return pos
        scope = -1
        if options:
            if pos + 2 > len(body):
                raise _Malformed(f"options template {template_id} cut short")
            second = int.from_bytes(body[pos : pos + 2], "big")
            pos += 2
            if ctx.ipfix:
                scope = second
            else:  # v9: scope and option lengths are in bytes (4 per field)
                if count % 4 or second % 4:
                    raise _Malformed(f"options template {template_id} lengths {count} and {second}")
                scope, count = count // 4, (count + second) // 4
            if not 0 < scope <= count:
                raise _Malformed(f"options template {template_id} with {scope} scope fields of {count}")
        if count == 0:
            raise _Malformed(f"template {template_id} has no fields")
        fields: list[tuple[int, int, int]] = []
        for _ in range(count):
            if pos + 4 > len(body):
                raise _Malformed(f"template {template_id} cut short")
            ftype, flen = _SET_HEADER.unpack_from(body, pos)
            pos += 4
            pen = 0
            if ctx.ipfix and ftype & 0x8000:
                if pos + 4 > len(body):
                    raise _Malformed(f"template {template_id} cut short")
                pen = int.from_bytes(body[pos : pos + 4], "big")
                ftype &= 0x7FFF
                pos += 4
            if flen == 0 or (flen == 0xFFFF and not ctx.ipfix):
                raise _Malformed(f"template {template_id} field {ftype} has length {flen}")
            fields.append((ftype, flen, pen))
        self.templates.put(ctx.exporter, ctx.domain, template_id, _make_template(fields, scope))
        self.skip("netflow options template record" if options else "netflow template record")
        return pos

    # --- data ----------------------------------------------------------------------------------
    def _data_set(self, set_id: int, body: bytes, ctx: _PacketCtx, raw: bytes, offset: int | None) -> None:
        template = self.templates.get(ctx.exporter, ctx.domain, set_id)
        if template is None:
            self.reject(
                f"no template {set_id} from exporter {ctx.exporter} domain {ctx.domain} (yet)",
                raw,
                offset=offset,
            )
            return
        records, rest = _records(template, body)
        body_offset = _at(offset, 4)
        if not records:
            self.reject(
                f"data set {set_id} of {len(body)} bytes holds no whole record of its template",
                raw,
                offset=offset,
            )
            return
        if rest < len(body) and any(body[rest:]):  # not zero padding: a record cut short, or garbage
            self.reject(
                f"{len(body) - rest} bytes after the last whole record of data set {set_id}",
                body[rest:],
                offset=_at(body_offset, rest),
            )
        plan = template.plan
        if plan is None:  # options template: sampling and interface tables, not flows
            for _ in records:
                self.skip("netflow options record")
            return
        if plan.invalid is not None:
            for start, rec_raw, _values in records:
                self.reject(f"bad NetFlow flow record in set {set_id}: {plan.invalid}", rec_raw,
                            offset=_at(body_offset, start))  # fmt: skip
            return
        seed = event_id_hasher("netflow", ctx.exporter.encode() + ctx.header).copy
        head = (ctx.exporter, ctx.domain, ctx.seq)
        events: list[FlowEvent] = []
        for start, rec_raw, values in records:
            try:
                events.append(self._flow(plan, values, rec_raw, ctx, head, seed))
            except Exception as exc:  # one record never ends the set
                self._reject_record(f"flow record in set {set_id}", exc, rec_raw, _at(body_offset, start))
        if events:
            self._emit(events)

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
        if plan.wide:
            _check_narrow(sport, dport, proto)
        if plan.addresses == 4:
            names = self._ip4_names  # flows repeat addresses: their text is cached
            src, dst = names.get(src) or self._ip4_name(src), names.get(dst) or self._ip4_name(dst)
        else:
            src, dst = _ip6(src), _ip6(dst)
        start, end = _times(plan.clock, row, ctx)
        if not TS_MIN_MS <= start < TS_MAX_MS:
            raise _Malformed(_bad_time(start, "start"))
        if not start <= end < TS_MAX_MS:
            raise _Malformed(
                f"flow ends at {end} ms, before it starts at {start}"
                if end < start
                else _bad_time(end, "end")
            )
        # Same lengths by construction; ``strict=`` would cost a keyword call per record.
        extra: dict[str, Any] = dict(zip(plan.extra_names, head + plan.extra_values(row)))  # noqa: B905
        status = extra.get("forwarding_status")
        action = "reject" if isinstance(status, int) and status >> 6 == 2 else "accept"
        ident = seed()
        ident.update(rec_raw)
        return replace(
            self.flow_base(self.flow_owner(src, dst)), id=ident.hexdigest(), ts=end, src_ip=src, dst_ip=dst,
            src_port=sport, dst_port=dport, proto=_PROTO[proto], bytes_out=bytes_out, packets_out=packets_out,
            bytes_in=bytes_in, packets_in=packets_in, duration_ms=end - start, action=action, extra=extra,
        )  # fmt: skip

    def _ip4_name(self, value: int) -> str:
        name = _ntoa(value.to_bytes(4, "big"))  # a 4-byte field: the template was checked
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


_Record = tuple[int, bytes, "tuple[Any, ...] | list[Any]"]  # (start in the set's body, raw, values)


def _at(offset: int | None, pos: int) -> int | None:
    return None if offset is None else offset + pos


def _bad_time(ms: int, which: str) -> str:
    return f"bad flow {which} {ms} (ms since 1970, outside the years 2000-2100)"


def _check_narrow(sport: int, dport: int, proto: int) -> None:
    """Ports and protocol from template fields wider than their range."""
    for name, value, top in (
        ("src_port", sport, 65535),
        ("dst_port", dport, 65535),
        ("protocol", proto, 255),
    ):
        if value > top:
            raise _Malformed(f"bad {name} {value}")


def _records(template: Template, body: bytes) -> tuple[list[_Record], int]:
    """The whole records of a data set, and where the bytes after them start (padding, or a record
    cut short)."""
    if template.unpacker is not None:
        size = template.unpacker.size
        whole = len(body) - len(body) % size
        records: list[_Record] = [
            (i * size, body[i * size : (i + 1) * size], values)
            for i, values in enumerate(template.unpacker.iter_unpack(body[:whole]))
        ]
        return records, whole
    out: list[_Record] = []
    pos = 0
    while pos < len(body):
        start = pos
        values: list[Any] = []
        for _ftype, declared, _pen in template.fields:
            flen = declared
            if declared == 0xFFFF:  # RFC 7011 7: one length byte, or 255 and two more
                if pos >= len(body):
                    return out, start
                flen = body[pos]
                pos += 1
                if flen == 255:
                    if pos + 2 > len(body):
                        return out, start
                    flen = int.from_bytes(body[pos : pos + 2], "big")
                    pos += 2
            if pos + flen > len(body):
                return out, start
            chunk = body[pos : pos + flen]
            values.append(int.from_bytes(chunk, "big") if _numeric(declared) else chunk)
            pos += flen
        out.append((start, body[start:pos], values))
    return out, pos


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")


def _bytes_value(ftype: int, value: bytes) -> Any:
    if ftype in _IP6_IDS and len(value) == 16:
        return _ip6(value)
    try:
        return value.rstrip(b"\x00").decode("utf-8") if ftype in (82, 83, 84, 96, 100) else value.hex()
    except UnicodeDecodeError:
        return value.hex()


def _ip6(value: Any) -> str:
    return ip_from_int(_as_int(value), v6=True)


def _ntp_ms(value: int) -> int:
    return ((value >> 32) - _NTP_EPOCH_OFFSET) * 1000 + ((value & 0xFFFFFFFF) * 1000 >> 32)


def _times(clock: _Clock, row: list[Any], ctx: _PacketCtx) -> tuple[int, int]:
    """Absolute (start, end) ms of a record (``row``) from the template's ``clock``. Uptime
    counters are 32-bit milliseconds that wrap after 49.7 days: a flow's end below its start
    has wrapped."""
    unit = clock.unit
    if unit == "ms":
        return row[clock.start], row[clock.end]
    if unit == "s":
        return row[clock.start] * 1000, row[clock.end] * 1000
    if unit == "ntp":
        return _ntp_ms(row[clock.start]), _ntp_ms(row[clock.end])
    if unit == "uptime":
        first, last = row[clock.start], row[clock.end]
        duration = (last - first) & _UPTIME_MASK
        if ctx.uptime is not None:  # v9: switched times are sysUptime ms, placed as v5's are
            end = ctx.export_ms - _before_export(ctx.uptime, last)
            return end - duration, end
        if clock.init >= 0:  # IPFIX: relative to systemInitTimeMilliseconds
            start = row[clock.init] + first
            return start, start + duration
        return ctx.export_ms - duration, ctx.export_ms  # no base: it ended by its export
    return ctx.export_ms, ctx.export_ms


def _before_export(uptime: int, switched: int) -> int:
    """How many ms before the export (sysUptime ``uptime`` in the header) the sysUptime time
    ``switched`` was, across a wrap of the 32-bit counter; negative, for a time stamped after the
    header's, down to -2^31 ms (24.8 days: no flow record waits that long)."""
    since = (uptime - switched) & _UPTIME_MASK
    return since - (1 << 32) if since >= 1 << 31 else since
