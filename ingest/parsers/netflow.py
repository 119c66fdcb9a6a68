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

import struct
from collections import OrderedDict
from typing import Any, ClassVar, Final, NamedTuple

from ingest.parsers.base import Output, ParseContext, Parser
from ingest.parsers.flowutil import ip_from_int, proto_name
from ingest.schema import FlowEvent, event_id

__all__ = ["FIELD_NAMES", "NetflowParser", "Template", "TemplateCache"]

REVERSE_PEN: Final = 29305
_V5_HEADER: Final = struct.Struct("!HHIIIIBBH")
_V5_RECORD: Final = struct.Struct("!IIIHHIIIIHHBBBBHHBBH")
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


class Template(NamedTuple):
    fields: tuple[tuple[int, int, int], ...]  # (type id, length, enterprise number or 0)
    scope_count: int  # options templates: number of scope fields; -1 for a data template
    record_len: int  # fixed length, or -1 when a field is variable-length (IPFIX 65535)
    unpacker: struct.Struct | None


def _make_template(fields: list[tuple[int, int, int]], scope_count: int) -> Template:
    if any(length == 0xFFFF for _, length, _ in fields):
        return Template(tuple(fields), scope_count, -1, None)
    codes = {1: "B", 2: "H", 4: "I", 8: "Q"}
    fmt = "!" + "".join(codes.get(length, f"{length}s") for _, length, _ in fields)
    unpacker = struct.Struct(fmt)
    return Template(tuple(fields), scope_count, unpacker.size, unpacker)


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
        header = data[: _V5_HEADER.size]
        base_ms = secs * 1000 + nsecs // 1_000_000 - uptime
        pos = _V5_HEADER.size
        for rec in _V5_RECORD.iter_unpack(data[_V5_HEADER.size : end]):
            src, dst, nexthop, inp, outp, pkts, octets, first, last, sport, dport = rec[:11]
            flags, prot, tos, src_as, dst_as, src_mask, dst_mask = rec[12:19]
            extra = {"exporter": exporter, "flow_sequence": seq, "engine_type": engine_type,
                     "engine_id": engine_id, "next_hop": ip_from_int(nexthop), "input_snmp": inp,
                     "output_snmp": outp, "tcp_flags": flags, "tos": tos, "src_as": src_as,
                     "dst_as": dst_as, "src_mask": src_mask, "dst_mask": dst_mask}  # fmt: skip
            if sampling:
                extra["sampling_interval"] = sampling & 0x3FFF
            src_ip, dst_ip = ip_from_int(src), ip_from_int(dst)
            tenant, vm, host = self.flow_owner(src_ip, dst_ip)
            self.out.event(
                FlowEvent(
                    id=event_id("netflow", exporter.encode() + header + data[pos : pos + 48]),
                    ts=base_ms + first, source="netflow", tenant=tenant, host=host, vm=vm,
                    src_ip=src_ip, dst_ip=dst_ip, src_port=sport, dst_port=dport, proto=proto_name(prot),
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
        for rec_raw, values in _records(template, body):
            if template.scope_count >= 0:
                self.skip("netflow options record")
                continue
            try:
                self.out.event(self._flow(template, values, rec_raw, ctx))
            except ValueError as exc:
                self.reject(f"bad flow record in set {set_id}: {exc}", rec_raw, offset=offset)

    def _flow(self, template: Template, values: list[Any], rec_raw: bytes, ctx: _PacketCtx) -> FlowEvent:
        got: dict[int, Any] = {}
        extra: dict[str, Any] = {"exporter": ctx.exporter, "domain": ctx.domain, "sequence": ctx.seq}
        for (ftype, flen, pen), value in zip(template.fields, values, strict=True):
            if pen == REVERSE_PEN and ftype in (1, 2):
                got[23 if ftype == 1 else 24] = value
            elif pen:
                extra[f"e{pen}.{ftype}"] = value.hex() if isinstance(value, bytes) else value
            elif ftype in _CORE_IDS:
                got[ftype] = _as_int(value) if flen <= 8 else value
            else:
                name = FIELD_NAMES.get(ftype, f"f{ftype}")
                if isinstance(value, bytes):
                    value = _bytes_value(ftype, value)
                elif ftype in _IP4_IDS and flen == 4:
                    value = ip_from_int(value)
                extra[name] = value
        if 8 in got and 12 in got:
            src, dst = ip_from_int(got[8]), ip_from_int(got[12])
        elif 27 in got and 28 in got:
            src, dst = _ip6(got[27]), _ip6(got[28])
        else:
            raise ValueError("no source/destination address fields")
        start, end = _times(got, ctx)
        status = extra.get("forwarding_status")
        action = "reject" if isinstance(status, int) and status >> 6 == 2 else "accept"
        tenant, vm, host = self.flow_owner(src, dst)
        return FlowEvent(
            id=event_id("netflow", ctx.exporter.encode() + ctx.header + rec_raw),
            ts=start, source="netflow", tenant=tenant, host=host, vm=vm, src_ip=src, dst_ip=dst,
            src_port=got.get(7, 0), dst_port=got.get(11, 0), proto=proto_name(got.get(4, 0)),
            bytes_out=got.get(1, got.get(85, 0)), packets_out=got.get(2, got.get(86, 0)),
            bytes_in=got.get(23, 0), packets_in=got.get(24, 0), duration_ms=max(0, end - start),
            action=action, extra=extra,  # type: ignore[arg-type]
        )  # fmt: skip


class _PacketCtx(NamedTuple):
    exporter: str
    domain: int
    export_ms: int
    uptime: int | None
    seq: int
    header: bytes
    ipfix: bool


def _records(template: Template, body: bytes) -> list[tuple[bytes, list[Any]]]:
    """Split a data set into (raw record, decoded values); trailing padding is ignored."""
    out: list[tuple[bytes, list[Any]]] = []
    size = template.record_len
    if template.unpacker is not None:
        usable = len(body) - len(body) % size
        for i, fixed in enumerate(template.unpacker.iter_unpack(body[:usable])):
            out.append((body[i * size : (i + 1) * size], list(fixed)))
        return out
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
                numeric = declared in (1, 2, 4, 8)
                values.append(int.from_bytes(chunk, "big") if numeric else chunk)
                pos += flen
        except IndexError:
            if any(body[start:]):
                raise _Malformed("variable-length record cut short") from None
            break  # zero padding
        out.append((body[start:pos], values))
    return out


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


def _times(got: dict[int, int], ctx: _PacketCtx) -> tuple[int, int]:
    """Absolute (start, end) ms from whichever timestamp fields the template carries."""
    if 152 in got:
        return got[152], got.get(153, got[152])
    if 150 in got:
        return got[150] * 1000, got.get(151, got[150]) * 1000
    if 154 in got or 156 in got:
        start = _ntp_ms(got.get(154, got.get(156, 0)))
        return start, _ntp_ms(got.get(155, got.get(157, 0))) if (155 in got or 157 in got) else start
    if 22 in got:
        first, last = got[22], got.get(21, got[22])
        if ctx.uptime is not None:  # v9: switched times are sysUptime ms
            boot = ctx.export_ms - ctx.uptime
        elif 160 in got:  # IPFIX: relative to systemInitTimeMilliseconds
            boot = got[160]
        else:
            return ctx.export_ms, ctx.export_ms + max(0, last - first)
        return boot + first, boot + last
    return ctx.export_ms, ctx.export_ms
