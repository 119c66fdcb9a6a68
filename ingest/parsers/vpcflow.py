"""AWS VPC Flow Logs (text): the default version 2 format and custom field lists, as files or as
CloudWatch Logs subscription deliveries.

Records are space-separated, one per line, ``-`` for "no value". The default format is
``version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end
action log-status``. Files delivered to S3 begin with a header line naming the fields in order;
that header switches the parser to the custom layout (any of the v2-v8 fields). Records published
to CloudWatch Logs carry no header anywhere: a custom layout there is given by
``ParseContext.vpc_fields`` (``ssa ingest --vpc-format``, which takes the flow log's ``LogFormat``
as ``aws ec2 describe-flow-logs`` prints it, ``${version} ${srcaddr} ...``, or the bare names:
``log_format_fields``); a header line in the input still switches the layout. ``start``/``end``
are Unix seconds, the capture window's: the event's ``ts`` is ``end`` (``start`` when ``end`` is
absent or earlier), ``duration_ms`` the window's length. ``NODATA`` (no traffic in the window) and
``SKIPDATA`` (records lost at the source) records carry no flow: they are counted as skipped, not
rejected. Numbers are read strictly (ASCII digits within the canonical bounds, ``start`` and
``end`` within the plausible event times): anything else sends the record to the DLQ with the
field and its value.

A line that opens a JSON object is a CloudWatch Logs subscription document, as a subscription
filter delivers it to a stream (one JSON object, decompressed by the forwarder, within the line
cap: ``messageType``, ``owner``, ``logGroup``, ``logStream``, ``subscriptionFilters``, ``logEvents``
of ``id``, ``timestamp``, ``message``;
https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html).
Each ``DATA_MESSAGE`` log event's ``message`` is one record, read exactly as a line is, its event
id hashing the message's bytes: a record gets the same id from an S3 file and from CloudWatch, and
one delivered twice the same id twice. A bad record goes to the DLQ alone, its message as the raw;
the log group and stream go to ``extra`` (``log_group``, ``log_stream``). A ``CONTROL_MESSAGE``
(CloudWatch checking that the destination is reachable) is skipped; an envelope that cannot be
read (not JSON, a JSON array, no ``logEvents`` list, another ``messageType``) goes to the DLQ
whole, with the reason, and a malformed log event (no ``message`` string, a ``timestamp`` that is
not epoch ms) alone. The envelope is read by ``cloudwatch_logs``, as CloudTrail's is.

Each record describes traffic from ``srcaddr`` to ``dstaddr`` seen at one interface, so its bytes
and packets are ``bytes_out``/``packets_out`` of the source. Fields that are not part of the
canonical flow (``account-id``, ``interface-id``, ``vpc-id``, ``tcp-flags``, ...) go to ``extra``
under their AWS names; the fields are those of
https://docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import ClassVar, Final

import msgspec
from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Output, ParseContext
from ingest.parsers.cloudwatch_logs import ENVELOPE, Delivery, DeliveryRefused, open_delivery, read_log_event
from ingest.parsers.flowutil import (
    COUNT_MAX,
    BadField,
    clip,
    count_cell,
    event_time,
    picker,
    proto_name,
    unexpected,
    valid_ip,
)
from ingest.reader import JsonRejected, load_json
from ingest.schema import TENANT_ID_PATTERN, TS_MAX_MS, TS_MIN_MS, Event, FlowEvent, event_id, event_id_of

__all__ = ["DEFAULT_FIELDS", "KNOWN_FIELDS", "VpcFlowParser", "check_field_names", "log_format_fields"]

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
_LOG_FORMAT_ITEM: Final = re.compile(r"\$\{([^{}]*)\}|[^${}]+")  # ${name} as AWS prints it, or a bare name
_FIELDS_PAGE: Final = "https://docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html"


class VpcFlowParser(FastPathParser):
    source: ClassVar[str] = "vpcflow"
    record_name = "VPC flow log"

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)
        self._accounts: dict[str, str | None] = {}
        given = self.ctx.vpc_fields
        if given is not None:
            check_field_names(given)
        self._set_fields(list(given) if given is not None else DEFAULT_FIELDS)

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

    # --- CloudWatch Logs subscription documents -------------------------------------------------
    def _feed_checked(self, line: bytes, lineno: int, offset: int) -> None:
        # A document never passes the fast path (its tokens make no record), so it arrives here. No
        # record starts with a bracket: a JSON array is a document too, refused as not an object.
        if line.lstrip()[:1] in (b"{", b"["):
            self._feed_envelope(line, lineno, offset)
        else:
            super()._feed_checked(line, lineno, offset)

    def _feed_envelope(self, line: bytes, lineno: int, offset: int) -> None:
        """The records of one subscription document, each read as a line is (see the docstring)."""
        try:
            delivery = _delivery(line)
        except DeliveryRefused as exc:
            self.reject(str(exc), line, lineno, offset)
            return
        except Exception as exc:  # the document never ends the input
            self.reject(unexpected(exc, ENVELOPE), line, lineno, offset)
            return
        if delivery.control:
            self.skip("CloudWatch Logs CONTROL_MESSAGE")
        elif not delivery.entries:
            self.skip("CloudWatch Logs DATA_MESSAGE without log events")
        else:
            self._feed_messages(delivery, lineno, offset)

    def _feed_messages(self, delivery: Delivery, lineno: int, offset: int) -> None:
        """As ``feed_batch`` does for lines: fast-path events in lists, handed over before whatever
        a checked record emits, so the output sees the records' order. A malformed log event goes
        to the DLQ alone; the others are read."""
        emit = getattr(self.out, "event_batch", None) or self._emit_each
        fast = self._fast_event
        origin = _origin(delivery)
        events: list[Event] = []
        for index, entry in enumerate(delivery.entries):
            try:
                record = read_log_event(entry, index).message.encode("utf-8")  # a line's bytes: its id
            except DeliveryRefused as exc:
                if events:
                    emit(events)
                    events = []
                self.reject(str(exc), msgspec.json.encode(entry), lineno, offset)
                continue
            event = fast(record)
            if event is None:
                if events:
                    emit(events)
                    events = []
                event = self._checked_message(record, lineno, offset)
                if event is None:
                    continue
            if origin:
                event.extra.update(origin)  # each event's own dict: the fast path copies it
            events.append(event)
        if events:
            emit(events)

    def _checked_message(self, record: bytes, lineno: int, offset: int) -> FlowEvent | None:
        """``_feed_checked`` for one log event's message: its event, or None once it went to the DLQ
        (its own bytes the raw, the document's line and offset) or was skipped."""
        if not record.strip():  # not a "blank line" to skip: a log event always has a record
            self.reject("log event with an empty message", record, lineno, offset)
            return None
        try:
            return self._checked_event(record, lineno, offset)
        except BadField as exc:
            self.reject(str(exc), record, lineno, offset)
        except Exception as exc:
            self.reject(unexpected(exc, self.record_name), record, lineno, offset)
        return None

    # --- one record ----------------------------------------------------------------------------
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


def log_format_fields(text: str) -> tuple[str, ...]:
    """The field names of a flow log format: its ``LogFormat`` as AWS prints it
    (``${version} ${vpc-id} ${srcaddr} ...``) or the bare names (``version vpc-id srcaddr ...``).
    ``ValueError`` says what is wrong, in one line (``check_field_names``)."""
    names = []
    for item in text.split():
        match = _LOG_FORMAT_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"{clip(item)} is neither ${{field}} nor a field name")
        names.append(match[1] if match[1] is not None else match[0])
    check_field_names(names)
    return tuple(names)


def check_field_names(names: Sequence[str]) -> None:
    """``ValueError`` unless ``names`` is a layout records can be read with: known fields, each once,
    with the two addresses every flow needs."""
    if not names:
        raise ValueError("no fields: give the LogFormat ('${version} ${account-id} ...') or the field names")
    unknown = [name for name in names if name not in KNOWN_FIELDS]
    if unknown:
        raise ValueError(f"unknown field {_with_hint(unknown[0])}: AWS's fields are listed at {_FIELDS_PAGE}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"field {repeated[0]!r} given twice")
    missing = [name for name in ("srcaddr", "dstaddr") if name not in names]
    if missing:
        raise ValueError(f"no {' or '.join(missing)} field: its records would hold no flow")


def _with_hint(name: str) -> str:
    """``name`` quoted, with the known field it most likely meant."""
    close = difflib.get_close_matches(name, sorted(KNOWN_FIELDS), n=1)
    return f"{clip(name)} (did you mean {close[0]!r}?)" if close else clip(name)


def _delivery(line: bytes) -> Delivery:
    """The subscription document of a line; ``DeliveryRefused`` names what makes it unreadable
    (then none of its records is read)."""
    try:
        doc = load_json(line)
    except JsonRejected as exc:
        raise DeliveryRefused(f"{ENVELOPE}: {exc}") from None
    if not isinstance(doc, dict):
        raise DeliveryRefused(f"{ENVELOPE}: not a JSON object")
    if "messageType" not in doc:
        raise DeliveryRefused(f"{ENVELOPE}: no messageType")
    return open_delivery(doc)


def _origin(delivery: Delivery) -> dict[str, str]:
    """The log group and stream of a delivery, for each event's extra (when they look like AWS's)."""
    origin = {}
    if delivery.log_group is not None:
        origin["log_group"] = delivery.log_group
    if delivery.log_stream is not None:
        origin["log_stream"] = delivery.log_stream
    return origin


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
