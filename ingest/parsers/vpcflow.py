"""AWS VPC Flow Logs (text): the default version 2 format and custom field lists.

Records are space-separated, one per line, ``-`` for "no value". The default format is
``version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end
action log-status``. Files delivered to S3 begin with a header line naming the fields in order;
that header switches the parser to the custom layout (any of the v2-v8 fields). ``start``/``end``
are Unix seconds, the capture window's: the event's ``ts`` is ``end`` (``start`` when ``end`` is
absent or earlier), ``duration_ms`` the window's length. ``NODATA`` (no traffic in the window) and
``SKIPDATA`` (records lost at the source) records carry no flow: they are counted as skipped, not
rejected. Numbers are read strictly (ASCII digits within the canonical bounds, ``start`` and
``end`` within the plausible event times): anything else sends the record to the DLQ with the
field and its value.

Each record describes traffic from ``srcaddr`` to ``dstaddr`` seen at one interface, so its bytes
and packets are ``bytes_out``/``packets_out`` of the source. Fields that are not part of the
canonical flow (``account-id``, ``interface-id``, ``vpc-id``, ``tcp-flags``, ...) go to ``extra``
under their AWS names.
"""

from __future__ import annotations

import re
from typing import ClassVar, Final

from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Output, ParseContext
from ingest.parsers.flowutil import (
    COUNT_MAX,
    BadField,
    clip,
    count_cell,
    event_time,
    picker,
    proto_name,
    valid_ip,
)
from ingest.schema import TENANT_ID_PATTERN, TS_MAX_MS, TS_MIN_MS, FlowEvent, event_id, event_id_of

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
_INT_EXTRA: Final = frozenset({"version", "tcp-flags", "traffic-path"})  # "type" is IPv4, IPv6, EFA
_ACTIONS: Final = {"ACCEPT": "accept", "REJECT": "reject"}
_PROTO: Final = [proto_name(n) for n in range(256)]
_NUMBERS: Final = ("srcport", "dstport", "protocol", "packets", "bytes", "start", "end")
_MISS: Final = object()
_START_MIN: Final = TS_MIN_MS // 1000  # plausible start and end times, in the format's seconds
_END_MAX: Final = TS_MAX_MS // 1000
_ACCOUNT: Final = re.compile(TENANT_ID_PATTERN)  # an unmapped account id becomes the tenant
_event_id: Final = event_id_of("vpcflow")


class VpcFlowParser(FastPathParser):
    source: ClassVar[str] = "vpcflow"
    record_name = "VPC flow log"

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
        try:  # anything unforeseen too: the checked path reads the record again
            parts = line.decode("utf-8").split()
            if len(parts) != self.fast_nfields or (
                self.status_i is not None and parts[self.status_i] != "OK"
            ):
                return None
            action = _ACTIONS.get(parts[self.action_i])
            src, dst = parts[self.src_i], parts[self.dst_i]
            owner = self.checked_flow_owner(src, dst)
            if action is None or owner is None:
                return None
            numbers = self.numbers(parts)
            digits = "".join(numbers)  # int() would also take "+5", "1_000" and non-ASCII digits
            if not (digits.isdigit() and digits.isascii()):
                return None
            sport, dport, proto, pkts, nbytes, start, end = map(int, numbers)
            if (
                sport > 65535
                or dport > 65535
                or proto > 255
                or (pkts | nbytes) > COUNT_MAX  # both non-negative: the OR exceeds iff one does
                or not _START_MIN <= start < _END_MAX
                or end >= _END_MAX
            ):
                return None
            # The extra fields (version, account, interface, ...) repeat from record to record:
            # a copy of the dict built for the same values costs a fifth of building it.
            values = self.extra_values(parts)
            extra = self._extras.get(values)
            if extra is None:
                extra = self._extra(values)
            extra = extra.copy()
            if self.forced_tenant is None and self.account_i is not None:
                tenant = owner[0]
                account = parts[self.account_i]
                mapped = self._accounts.get(account, _MISS)
                if mapped is _MISS:
                    mapped = self._account_tenant(account)
                tenant = mapped or tenant or (account if account != "-" else None)  # type: ignore[assignment]
                if tenant is not owner[0]:
                    owner = (tenant, owner[1], owner[2])
            duration = (end - start) * 1000 if end > start else 0
            return replace(
                self.flow_base(owner), id=_event_id(line), ts=start * 1000 + duration, src_ip=src, dst_ip=dst,
                src_port=sport, dst_port=dport, proto=_PROTO[proto], bytes_out=nbytes, packets_out=pkts,
                duration_ms=duration, action=action, extra=extra,
            )  # fmt: skip
        except Exception:
            return None

    def _extra(self, values: tuple[str, ...]) -> dict[str, object]:
        """The ``extra`` dict of the fast path for the extra fields' ``values``, remembered."""
        extra: dict[str, object]
        if "-" in values:  # "-" is "no value": leave the field out
            extra = {n: v for n, v in zip(self.extra_names, values, strict=True) if v != "-"}
            for name in self.int_extra:
                if name in extra:
                    extra[name] = count_cell(name, extra[name])  # type: ignore[arg-type]
        else:
            extra = dict(zip(self.extra_names, values, strict=True))
            for name in self.int_extra:
                extra[name] = count_cell(name, extra[name])  # type: ignore[arg-type]
        if "account-id" in extra:
            _check_account(extra["account-id"])  # type: ignore[arg-type]
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

    def _checked_event(self, line: bytes, lineno: int, offset: int) -> FlowEvent | None:
        """The event of one record, or None when it was skipped or rejected here."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.reject(f"invalid UTF-8 at byte {exc.start}", line, lineno, offset)
            return None
        parts = text.split()
        status_i = self.status_i
        if not parts:
            self.skip("blank line")
            return None
        if not parts[0][:1].isdigit() and parts[0] in KNOWN_FIELDS:
            unknown = [p for p in parts if p not in KNOWN_FIELDS]
            if unknown or len(set(parts)) != len(parts):
                self.reject(
                    f"header names unknown or repeated fields {clip(unknown[:5], 120)}", line, lineno, offset
                )
                return None
            self._set_fields(parts)
            self.keep_header("columns", line)
            self.skip("header line")
            return None
        if len(parts) != self.nfields:
            self.reject(f"expected {self.nfields} fields, got {len(parts)}", line, lineno, offset)
            return None
        if self.missing:
            self.reject(f"format has no {'/'.join(self.missing)} field", line, lineno, offset)
            return None
        if status_i is not None and parts[status_i] != "OK":
            status = parts[status_i]
            if status in ("NODATA", "SKIPDATA"):
                self.skip(f"vpcflow {status}")
            else:
                self.reject(f"unknown log-status {clip(status)}", line, lineno, offset)
            return None
        return self._event(parts, line)

    def _event(self, parts: list[str], line: bytes) -> FlowEvent:
        pos = self.pos
        src = parts[pos["srcaddr"]]
        dst = parts[pos["dstaddr"]]
        if not valid_ip(src) or not valid_ip(dst):
            raise BadField(f"bad address {clip(src, 60)} -> {clip(dst, 60)}")
        if pos.get("start") is None or parts[pos["start"]] == "-":
            raise BadField("record has no start time")
        start = _int(parts, pos, "start")
        event_time("start", start * 1000, parts[pos["start"]])
        end = _int(parts, pos, "end", _END_MAX - 1)
        sport = _int(parts, pos, "srcport", 65535)
        dport = _int(parts, pos, "dstport", 65535)
        proto = proto_name(_int(parts, pos, "protocol", 255))  # absent or "-": "0"
        action_i = pos.get("action")
        action = "accept"
        if action_i is not None:
            raw_action = parts[action_i]
            mapped = _ACTIONS.get(raw_action)
            if mapped is None:
                raise BadField(f"unknown action {clip(raw_action)}")
            action = mapped
        extra: dict[str, object] = {}
        for name, i in self.extra_pos:
            value = parts[i]
            if value != "-":
                extra[name] = count_cell(name, value) if name in _INT_EXTRA else value
        if "account-id" in extra:
            _check_account(extra["account-id"])  # type: ignore[arg-type]
        account = extra.get("account-id")
        tenant, vm, host = self.flow_owner(src, dst)
        if self.forced_tenant is None and isinstance(account, str):
            reg = self.registry
            mapped_tenant = reg.tenant_of_account(account) if reg is not None else None
            tenant = mapped_tenant or tenant or account
        duration = max(0, end - start) * 1000 if end else 0
        return FlowEvent(
            id=event_id("vpcflow", line),
            ts=start * 1000 + duration,  # the end: ingest.schema.FlowEvent
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
            duration_ms=duration,
            action=action,  # type: ignore[arg-type]
            extra=extra,
        )


def _check_account(account: str) -> None:
    if _ACCOUNT.fullmatch(account) is None:
        raise BadField(f"bad account-id {clip(account)}")


def _int(parts: list[str], pos: dict[str, int], name: str, high: int = COUNT_MAX) -> int:
    """The integer field ``name`` (0 to ``high``; absent or ``-``: 0), or BadField."""
    i = pos.get(name)
    if i is None:
        return 0
    value = parts[i]
    if value == "-":
        return 0
    return count_cell(name, value, high)
