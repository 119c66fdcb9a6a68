"""AWS VPC Flow Logs (text): the default version 2 format and custom field lists.

Records are space-separated, one per line, ``-`` for "no value". The default format is
``version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end
action log-status``. Files delivered to S3 begin with a header line naming the fields in order;
that header switches the parser to the custom layout (any of the v2-v8 fields). ``start``/``end``
are Unix seconds. ``NODATA`` (no traffic in the window) and ``SKIPDATA`` (records lost at the
source) records carry no flow: they are counted as skipped, not rejected.

Each record describes traffic from ``srcaddr`` to ``dstaddr`` seen at one interface, so its bytes
and packets are ``bytes_out``/``packets_out`` of the source. Fields that are not part of the
canonical flow (``account-id``, ``interface-id``, ``vpc-id``, ``tcp-flags``, ...) go to ``extra``
under their AWS names.
"""

from __future__ import annotations

from typing import ClassVar, Final

from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Output, ParseContext
from ingest.parsers.flowutil import picker, proto_name, valid_ip
from ingest.schema import FlowEvent, event_id, event_id_of

__all__ = ["DEFAULT_FIELDS", "VpcFlowParser"]

DEFAULT_FIELDS: Final = [
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
]
KNOWN_FIELDS: Final = frozenset(
    [
        *DEFAULT_FIELDS,
        "vpc-id",
        "subnet-id",
        "instance-id",
        "tcp-flags",
        "type",
        "pkt-srcaddr",
        "pkt-dstaddr",
        "region",
        "az-id",
        "sublocation-type",
        "sublocation-id",
        "pkt-src-aws-service",
        "pkt-dst-aws-service",
        "flow-direction",
        "traffic-path",
        "ecs-cluster-arn",
        "ecs-cluster-name",
        "ecs-container-instance-arn",
        "ecs-container-instance-id",
        "ecs-container-id",
        "ecs-second-container-id",
        "ecs-service-name",
        "ecs-task-definition-arn",
        "ecs-task-arn",
        "ecs-task-id",
        "reject-reason",
    ]
)
_CORE: Final = ("srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes", "start", "end")
_INT_EXTRA: Final = frozenset({"version", "tcp-flags", "type", "traffic-path"})
_ACTIONS: Final = {"ACCEPT": "accept", "REJECT": "reject"}
_PROTO: Final = [proto_name(n) for n in range(256)]
_NUMBERS: Final = ("srcport", "dstport", "protocol", "packets", "bytes", "start", "end")
_MISS: Final = object()
_event_id: Final = event_id_of("vpcflow")


class VpcFlowParser(FastPathParser):
    source: ClassVar[str] = "vpcflow"

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)
        self._accounts: dict[str, str | None] = {}
        self._set_fields(DEFAULT_FIELDS)

    def _set_fields(self, names: list[str]) -> None:
        self._extras: dict[tuple[str, ...], dict[str, object]] = {}  # see _fast_event
        self.fields = names
        self.nfields = len(names)
        pos = {name: i for i, name in enumerate(names)}
        self.pos = pos
        self.extra_pos = [(n, i) for i, n in enumerate(names) if n not in _CORE and n not in ("action",)]
        self.missing = [n for n in ("srcaddr", "dstaddr") if n not in pos]
        self.status_i = pos.get("log-status")
        self.account_i = pos.get("account-id")
        self.int_extra = [n for n in names if n in _INT_EXTRA]
        need = (*_CORE, "action")
        fast = all(n in pos for n in need)
        self.fast_nfields = len(names) if fast else -1  # -1: no record takes the fast path
        if fast:
            self.src_i, self.dst_i, self.action_i = pos["srcaddr"], pos["dstaddr"], pos["action"]
            self.numbers = picker([pos[n] for n in _NUMBERS])
            self.extra_names = tuple(n for n, _ in self.extra_pos)
            self.extra_values = picker([i for _, i in self.extra_pos])

    def _fast_event(self, line: bytes) -> FlowEvent | None:
        """The common case (all core fields present and well-formed) without per-field checks;
        None sends the record down the checked path, which finds and names the problem."""
        try:
            parts = line.decode("utf-8").split()
        except UnicodeDecodeError:
            return None
        if len(parts) != self.fast_nfields or (self.status_i is not None and parts[self.status_i] != "OK"):
            return None
        action = _ACTIONS.get(parts[self.action_i])
        src, dst = parts[self.src_i], parts[self.dst_i]
        owner = self.checked_flow_owner(src, dst)
        if action is None or owner is None:
            return None
        try:
            sport, dport, proto, pkts, nbytes, start, end = map(int, self.numbers(parts))
            # The extra fields (version, account, interface, ...) repeat from record to record:
            # a copy of the dict built for the same values costs a fifth of building it.
            values = self.extra_values(parts)
            extra = self._extras.get(values)
            if extra is None:
                extra = self._extra(values)
            extra = extra.copy()
        except ValueError:
            return None
        if (
            (sport | dport | proto | pkts | nbytes | start | end) < 0
            or sport > 65535
            or dport > 65535
            or proto > 255
        ):
            return None
        if self.forced_tenant is None and self.account_i is not None:
            tenant = owner[0]
            account = parts[self.account_i]
            mapped = self._accounts.get(account, _MISS)
            if mapped is _MISS:
                mapped = self._account_tenant(account)
            tenant = mapped or tenant or (account if account != "-" else None)  # type: ignore[assignment]
            if tenant is not owner[0]:
                owner = (tenant, owner[1], owner[2])
        return replace(
            self.flow_base(owner), id=_event_id(line), ts=start * 1000, src_ip=src, dst_ip=dst, src_port=sport,
            dst_port=dport, proto=_PROTO[proto], bytes_out=nbytes, packets_out=pkts,
            duration_ms=(end - start) * 1000 if end > start else 0, action=action, extra=extra,
        )  # fmt: skip

    def _extra(self, values: tuple[str, ...]) -> dict[str, object]:
        """The ``extra`` dict of the fast path for the extra fields' ``values``, remembered."""
        extra: dict[str, object]
        if "-" in values:  # "-" is "no value": leave the field out
            extra = {n: v for n, v in zip(self.extra_names, values, strict=True) if v != "-"}
            for name in self.int_extra:
                if name in extra:
                    extra[name] = int(extra[name])  # type: ignore[call-overload]
        else:
            extra = dict(zip(self.extra_names, values, strict=True))
            for name in self.int_extra:
                extra[name] = int(extra[name])  # type: ignore[call-overload]
        if len(self._extras) >= 4096:
            self._extras.clear()
        self._extras[values] = extra
        return extra

    def _account_tenant(self, account: str) -> str | None:
        reg = self.registry
        mapped = reg.tenant_of_account(account) if reg is not None else None
        if len(self._accounts) >= 4096:
            self._accounts.clear()
        self._accounts[account] = mapped
        return mapped

    def _feed_checked(self, line: bytes, lineno: int, offset: int) -> None:
        """One record, every field checked: a DLQ reason, a skip, a header, or an event."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.reject(f"invalid UTF-8 at byte {exc.start}", line, lineno, offset)
            return
        parts = text.split()
        status_i = self.status_i
        if not parts:
            self.skip("blank line")
            return
        if not parts[0][:1].isdigit() and parts[0] in KNOWN_FIELDS:
            unknown = [p for p in parts if p not in KNOWN_FIELDS]
            if unknown or len(set(parts)) != len(parts):
                self.reject(f"header names unknown or repeated fields {unknown[:5]}", line, lineno, offset)
                return
            self._set_fields(parts)
            self.skip("header line")
            return
        if len(parts) != self.nfields:
            self.reject(f"expected {self.nfields} fields, got {len(parts)}", line, lineno, offset)
            return
        if self.missing:
            self.reject(f"format has no {'/'.join(self.missing)} field", line, lineno, offset)
            return
        if status_i is not None and parts[status_i] != "OK":
            status = parts[status_i]
            if status in ("NODATA", "SKIPDATA"):
                self.skip(f"vpcflow {status}")
            else:
                self.reject(f"unknown log-status {status!r}", line, lineno, offset)
            return
        try:
            event = self._event(parts, line)
        except ValueError as exc:
            self.reject(str(exc), line, lineno, offset)
            return
        self.out.event(event)

    def _event(self, parts: list[str], line: bytes) -> FlowEvent:
        pos = self.pos
        src = parts[pos["srcaddr"]]
        dst = parts[pos["dstaddr"]]
        if not valid_ip(src) or not valid_ip(dst):
            raise ValueError(f"bad address {src!r} -> {dst!r}")
        start = _int(parts, pos, "start")
        end = _int(parts, pos, "end")
        sport = _int(parts, pos, "srcport")
        dport = _int(parts, pos, "dstport")
        if sport > 65535 or dport > 65535:
            raise ValueError(f"port out of range: {sport} / {dport}")
        proto_i = pos.get("protocol")
        proto = proto_name(int(parts[proto_i])) if proto_i is not None and parts[proto_i] != "-" else "0"
        action_i = pos.get("action")
        action = "accept"
        if action_i is not None:
            raw_action = parts[action_i]
            mapped = _ACTIONS.get(raw_action)
            if mapped is None:
                raise ValueError(f"unknown action {raw_action!r}")
            action = mapped
        extra: dict[str, object] = {}
        for name, i in self.extra_pos:
            value = parts[i]
            if value != "-":
                extra[name] = int(value) if name in _INT_EXTRA and value.isdigit() else value
        account = extra.get("account-id")
        tenant, vm, host = self.flow_owner(src, dst)
        if self.forced_tenant is None and isinstance(account, str):
            reg = self.registry
            mapped_tenant = reg.tenant_of_account(account) if reg is not None else None
            tenant = mapped_tenant or tenant or account
        return FlowEvent(
            id=event_id("vpcflow", line),
            ts=start * 1000,
            source="vpcflow",
            tenant=tenant,
            host=host,
            vm=vm,
            src_ip=src,
            dst_ip=dst,
            src_port=sport,
            dst_port=dport,
            proto=proto,
            bytes_out=_int(parts, pos, "bytes"),
            packets_out=_int(parts, pos, "packets"),
            duration_ms=max(0, end - start) * 1000 if end else 0,
            action=action,  # type: ignore[arg-type]
            extra=extra,
        )


def _int(parts: list[str], pos: dict[str, int], name: str) -> int:
    i = pos.get(name)
    if i is None:
        return 0
    value = parts[i]
    if value == "-":
        return 0
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} is not an integer: {value[:40]!r}") from None
    if number < 0:
        raise ValueError(f"{name} is negative: {number}")
    return number
