"""Cloud control-plane audit records (AWS CloudTrail JSON) -> audit events.

Input: CloudTrail log files (``{"Records": [...]}``, one line or pretty-printed), JSON lines of
single records, and the two envelopes of CloudTrail's real-time delivery, one JSON document each:

- an EventBridge event (https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html):
  the detail-types CloudTrail sends ("AWS API Call via CloudTrail", "AWS Console Signin via
  CloudTrail", "AWS Console Action via CloudTrail", "AWS Service Event via CloudTrail", "AWS Insight
  via CloudTrail": all end in " via CloudTrail") carry one record in ``detail``; an event of any
  other detail-type is a counted skip naming it;
- a CloudWatch Logs subscription delivery (``cloudwatch_logs``): each log event's message is one
  record (or one EventBridge event, as an EventBridge rule writes to a log group); a
  ``CONTROL_MESSAGE`` is a counted skip.

A record in an envelope is read exactly as the same record alone: same event, same ``extra`` (the
envelope adds nothing), same DLQ reason, and the same id, as the id hashes the record as decoded
and encoded again, not the bytes around it, so copies that came different ways collapse. An
envelope that is malformed (no ``detail`` object, ``logEvents`` not a list, an unknown
``messageType``) goes to the DLQ whole, a malformed log event (its message not a string, or not
JSON) alone. A message is untrusted JSON text, decoded with the guards of a JSON line.

Mapping: ``eventSource`` + ``eventName`` -> ``action`` (``s3.amazonaws.com`` + ``GetObject`` ->
``s3.GetObject``); ``userIdentity.arn`` (else principalId / invokedBy / type) -> ``principal``;
the caller's account -> ``principal_tenant``; ``resources[0].ARN``, else its ``ARNPrefix`` (S3
bucket-level data events such as ``ListObjects`` name the bucket as ``arn:aws:s3:::bucket/``), else
another entry's ``ARN``, else the best-known id in ``requestParameters`` (``bucketName``/``key``,
snapshot, image, instance, volume, role...) -> ``resource``; the resource's account
(``resources[].accountId``, the ARN's account field, else ``recipientAccountId``) ->
``resource_tenant``; ``sourceIPAddress`` -> ``src_ip`` when it is an address (AWS service names
such as ``s3.amazonaws.com`` go to ``extra.source``); ``errorCode`` -> ``result: failure``.
Accounts map to tenants through the registry's ``accounts`` lists; an account the registry does
not know stays as the account id. The grantees of share and policy actions (``cloudtrail_grants``:
snapshot, AMI and RDS snapshot attributes, bucket policies and ACLs, KMS key policies and grants,
RAM shares) go to ``extra.grantees`` (added) and ``extra.revoked`` (removed), as tenants where the
registry knows the account.

A cross-account call reaches both accounts' trails with one ``sharedEventID``: the caller's copy
(``recipientAccountId`` is the caller's account) is marked ``extra.trail_copy = "caller"``, the
resource owner's ``"owner"``, so a detector can count the action once. In the caller's copy the
recipient is not the resource's owner, so it never stands in for the owner's account (S3 blanks
the owner's ``accountId`` there when the call was refused).
Everything else of the record is kept in ``extra``. The fields read must have their JSON types
(an account id is a string: a number ``1`` is not account ``"1"``): a record that breaks this, or
whose reading fails in any way, goes to the DLQ alone with the field named.

A document is read record by record (ijson), so memory does not grow with its size: a record over
the line limit or nesting deeper than ``MAX_JSON_DEPTH`` stops the document's reading there with a
DLQ record saying how far it got, as does malformed JSON (an incremental parser cannot resume
after it). Numbers are read as text by ijson and decoded by msgspec record by record, as JSON lines
are, so a record's number that msgspec refuses (``1e999``) sends only that record to the DLQ.
"""

from __future__ import annotations

import re
from typing import IO, Any, ClassVar, Final

import ijson
import msgspec

from ingest.dlq import DLQ_RAW_CAP
from ingest.parsers.base import Output, ParseContext, Parser, ms_from_iso
from ingest.parsers.cloudtrail_grants import grants
from ingest.parsers.cloudwatch_logs import (
    ENVELOPE,
    DeliveryRefused,
    is_delivery,
    open_delivery,
    read_log_event,
)
from ingest.parsers.flowutil import BadField, clip, unexpected, valid_ip
from ingest.parsers.json_stream import GuardedReader, LineReader, LineSource, StreamRefused
from ingest.reader import MAX_JSON_DEPTH, JsonRejected, load_json
from ingest.schema import AuditEvent, event_id

__all__ = ["CloudAuditParser"]

_MAPPED: Final = frozenset(
    {
        "eventTime",
        "eventSource",
        "eventName",
        "userIdentity",
        "sourceIPAddress",
        "resources",
        "recipientAccountId",
    }
)
_RESOURCE_KEYS: Final = (
    "snapshotId", "imageId", "instanceId", "volumeId", "roleArn", "keyId", "functionName",
    "dBInstanceIdentifier", "dBSnapshotIdentifier", "dBClusterSnapshotIdentifier", "resourceShareArn",
    "secretId", "name", "userName", "roleName", "groupId", "vpcId", "clusterName",
)  # fmt: skip
_OPENERS: Final = (b"{", b'{"Records": [', b'{"Records":[')  # first line of a pretty-printed file
_DOCUMENT: Final = re.compile(rb'\s*\{\s*"Records"\s*:\s*\[')
_PEEK: Final = 4096
# Insights events (their files are not read either, ``objectstore``) name the API they summarise in
# ``insightDetails``: they are counted skips, not records to the DLQ for want of an eventSource.
_INSIGHT: Final = "AwsCloudTrailInsight"
_VIA_CLOUDTRAIL: Final = " via CloudTrail"  # "AWS API Call via CloudTrail", "AWS Insight via CloudTrail", ...
_encoder: Final = msgspec.json.Encoder()
_number_encoder: Final = msgspec.json.Encoder(decimal_format="number")  # ijson's Decimals as written


class CloudAuditParser(Parser):
    source: ClassVar[str] = "cloudaudit"
    max_line_bytes: ClassVar[int] = 64 * 1024 * 1024  # also the limit of one record in a document

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)

    def feed(self, line: bytes, lineno: int, offset: int) -> None:
        """One JSON line: a record or a whole ``{"Records": [...]}`` document."""
        if not line.strip():
            self.skip("blank line")
            return
        try:
            value = load_json(line)
        except JsonRejected as exc:
            self.reject(str(exc), line, lineno, offset)
            return
        if isinstance(value, dict) and isinstance(value.get("Records"), list):
            for record in value["Records"]:
                self._record(record, lineno, offset)
        elif is_delivery(value):
            self._delivery(value, line, lineno, offset)
        elif isinstance(value, dict):
            self._record_or_event(value, line, lineno, offset)
        else:
            self.reject('JSON is neither a record nor {"Records": [...]}', line, lineno, offset)

    def _record_or_event(self, value: dict[str, Any], raw: bytes, lineno: int, offset: int) -> None:
        """A record, alone or as the ``detail`` of an EventBridge event (no record has a
        ``detail-type``)."""
        if "detail-type" in value:
            self._eventbridge(value, raw, lineno, offset)
        else:
            self._record(value, lineno, offset)

    def _eventbridge(self, event: dict[str, Any], raw: bytes, lineno: int, offset: int) -> None:
        """An EventBridge event: every detail-type CloudTrail sends ends in " via CloudTrail" and
        carries one record in ``detail``; the events of other services are not CloudTrail's."""
        kind = event["detail-type"]
        if type(kind) is not str:
            self.reject(
                f"EventBridge event whose detail-type {clip(kind)} is not a string", raw, lineno, offset
            )
        elif not kind.endswith(_VIA_CLOUDTRAIL):
            self.skip(f"EventBridge {clip(kind, 80)} event: not a CloudTrail record")
        elif not isinstance(detail := event.get("detail"), dict):
            self.reject(f"EventBridge {clip(kind, 80)} event without a detail object", raw, lineno, offset)
        else:
            self._record(detail, lineno, offset)

    def _delivery(self, document: dict[str, Any], raw: bytes, lineno: int, offset: int) -> None:
        """A CloudWatch Logs subscription delivery: each log event is one record (a trail's log
        group) or one EventBridge event (a log group an EventBridge rule writes to)."""
        try:
            delivery = open_delivery(document)
        except DeliveryRefused as exc:
            self.reject(str(exc), raw, lineno, offset)
            return
        if delivery.control:
            self.skip("CloudWatch Logs CONTROL_MESSAGE")
        elif not delivery.entries:
            self.skip("CloudWatch Logs DATA_MESSAGE without log events")
        for index, entry in enumerate(delivery.entries):
            try:
                self._log_event(entry, index, lineno, offset)
            except Exception as exc:  # one log event never ends a delivery
                self.reject(unexpected(exc, ENVELOPE), repr(entry)[:DLQ_RAW_CAP], lineno, offset)

    def _log_event(self, entry: Any, index: int, lineno: int, offset: int) -> None:
        """One log event of a delivery, alone: its message is untrusted JSON text, decoded as a
        JSON line is (same guards), then read as a record or an EventBridge event."""
        try:
            message = read_log_event(entry, index).message.encode()
        except DeliveryRefused as exc:
            self.reject(str(exc), _encoder.encode(entry), lineno, offset)
            return
        try:
            value = load_json(message)
        except JsonRejected as exc:
            self.reject(f"{ENVELOPE}: logEvents[{index}] message: {exc}", message, lineno, offset)
            return
        if isinstance(value, dict) and not is_delivery(value):
            self._record_or_event(value, message, lineno, offset)
        else:  # a delivery inside a delivery is no shape AWS writes
            self.reject(
                f"{ENVELOPE}: logEvents[{index}] message is not a JSON object", message, lineno, offset
            )

    def feed_stream(self, stream: IO[bytes], max_line_bytes: int | None = None) -> None:
        """A pretty-printed document (its first line an opener) runs to the end of the input; any
        other input is JSON lines, where a line opening ``{"Records": [`` is streamed too."""
        cap = max_line_bytes or self.ctx.max_line_bytes or self.max_line_bytes
        src = LineSource(stream)
        first = True
        while not src.at_end():
            lineno, offset = src.lineno, src.offset
            head, whole = src.peek_line(_PEEK)
            if whole and first and head.strip() in _OPENERS:
                if _DOCUMENT.match(src.peek(_PEEK)):
                    self._document(LineReader(src, to_end=True), cap, lineno, offset)
                else:  # a single pretty-printed record: read whole, within the limit
                    self._single(src, cap, lineno, offset)
            elif _DOCUMENT.match(head):
                self._document(LineReader(src, to_end=False), cap, lineno, offset)
            elif whole and len(head) <= cap:  # nearly every JSON line: no second look
                self.feed(src.pass_line(head), lineno, offset)
            else:
                line, size = src.take_line(cap, DLQ_RAW_CAP)
                if size > cap:
                    self.reject_long(line, lineno, offset, size, cap)
                else:
                    self.feed(line, lineno, offset)
            first = first and not head.strip()
        self.close()

    def _single(self, src: LineSource, cap: int, lineno: int, offset: int) -> None:
        reader = LineReader(src, to_end=True)
        parts: list[bytes] = []
        size = 0
        while piece := reader.read():
            size += len(piece)
            if size <= cap:
                parts.append(piece)
        if size > cap:
            self.reject_long(b"".join(parts)[:DLQ_RAW_CAP], lineno, offset, size, cap)
        else:
            self.feed(b"".join(parts), lineno, offset)

    def _document(self, reader: LineReader, cap: int, lineno: int, offset: int) -> None:
        """The records of one ``{"Records": [...]}`` document, one at a time."""
        guarded = GuardedReader(reader, MAX_JSON_DEPTH, cap)
        done = 0
        try:
            # Not use_float: that backend refuses integers beyond 64 bits anywhere in the document.
            for item in ijson.items(guarded, "Records.item"):
                guarded.record_done()
                done += 1
                self._document_record(item, lineno, offset)
        except StreamRefused as exc:
            self._document_failed(str(exc), done, guarded, lineno, offset)
        except ijson.JSONError:  # its message is the parser's wording
            self._document_failed(
                f"invalid JSON (near byte {guarded.position})", done, guarded, lineno, offset
            )
        except Exception as exc:  # whatever it is, the rest of the file goes on
            self._document_failed(unexpected(exc, "CloudTrail document"), done, guarded, lineno, offset)
        reader.drain()

    def _document_failed(self, why: str, done: int, guarded: GuardedReader, lineno: int, offset: int) -> None:
        reason = f"CloudTrail document unreadable after {done} records: {why}; the rest of it is not read"
        self.reject(reason, guarded.last[-DLQ_RAW_CAP:], lineno, offset)

    def _document_record(self, item: Any, lineno: int, offset: int) -> None:
        """An element as ijson built it (numbers as ``int``/``Decimal``), decoded again as a JSON
        line would be, so both give the same values and event ids."""
        try:
            record = load_json(_number_encoder.encode(item))
        except JsonRejected as exc:
            self.reject(f"record: {exc}", repr(item)[:DLQ_RAW_CAP], lineno, offset)
            return
        except Exception as exc:  # a value no JSON holds
            self.reject(unexpected(exc, "CloudTrail"), repr(item)[:DLQ_RAW_CAP], lineno, offset)
            return
        self._record(record, lineno, offset)

    def _record(self, record: Any, lineno: int, offset: int) -> None:
        """One element of ``Records`` (or one JSON line): its event, or the DLQ with the reason."""
        try:
            raw = _encoder.encode(record)
        except Exception as exc:  # a value JSON cannot hold
            self.reject(unexpected(exc, "CloudTrail"), repr(record)[:DLQ_RAW_CAP], lineno, offset)
            return
        if not isinstance(record, dict):
            self.reject("record is not an object", raw, lineno, offset)
            return
        if record.get("eventType") == _INSIGHT:
            self.skip("CloudTrail Insights event: a summary of unusual API activity, no call of its own")
            return
        ident = record.get("eventID")
        name = ident if isinstance(ident, str) and len(ident) <= 80 else "?"
        try:
            event = self._event(record, raw)
        except BadField as exc:
            self.reject(f"record {name}: {exc}", raw, lineno, offset)
            return
        except Exception as exc:  # one record never ends a file
            self.reject(f"record {name}: {unexpected(exc, 'CloudTrail')}", raw, lineno, offset)
            return
        self.out.event(event)

    def _event(self, rec: dict[str, Any], raw: bytes) -> AuditEvent:
        time_text = _required(rec, "eventTime")
        try:
            ts = ms_from_iso(time_text)
        except ValueError:
            raise BadField(f"bad eventTime {clip(time_text)}") from None
        service = _required(rec, "eventSource").split(".", 1)[0]
        action = f"{service}.{_required(rec, 'eventName')}"
        ident = rec.get("userIdentity") or {}
        if not isinstance(ident, dict):
            raise BadField(f"bad userIdentity {clip(ident)}: not an object")
        principal = (
            _text(ident, "arn", "userIdentity.")
            or _text(ident, "principalId", "userIdentity.")
            or _text(ident, "invokedBy", "userIdentity.")
            or _text(ident, "type", "userIdentity.")
            or "unknown"
        )
        principal_account = _text(ident, "accountId", "userIdentity.") or _arn_account(ident.get("arn"))
        recipient = _text(rec, "recipientAccountId")
        copy = _trail_copy(rec, recipient, principal_account)
        resource, resource_account = _resource(rec, None if copy == "caller" else recipient)
        extra: dict[str, Any] = {k: v for k, v in rec.items() if k not in _MAPPED}
        extra["identity_type"] = ident.get("type")
        if principal_account:
            extra["principal_account"] = principal_account
        if resource_account:
            extra["resource_account"] = resource_account
        if copy:
            extra["trail_copy"] = copy
        added, removed = grants(action, rec.get("requestParameters"))
        if added:
            extra["grantees"] = [self.account_tenant(g) for g in added]
        if removed:
            extra["revoked"] = [self.account_tenant(g) for g in removed]
        src = _text(rec, "sourceIPAddress")
        if src is not None and not valid_ip(src):
            extra["source"] = src
            src = None
        principal_tenant = self.account_tenant(principal_account)
        tenant = self.forced_tenant or self.account_tenant(recipient) or principal_tenant
        return AuditEvent(
            id=event_id("cloudaudit", raw), ts=ts, source="cloudaudit", tenant=tenant,
            principal=principal, principal_tenant=principal_tenant, action=action, resource=resource,
            resource_tenant=self.account_tenant(resource_account), src_ip=src,
            result="failure" if _failed(rec) else "success", extra=extra,
        )  # fmt: skip


def _text(obj: dict[str, Any], key: str, where: str = "") -> str | None:
    """A string field, None when absent, null or empty; anything else is a bad field."""
    value = obj.get(key)
    if type(value) is str:
        return value or None
    if value is None:
        return None
    raise BadField(f"bad {where}{key} {clip(value)}: not a string")


def _required(obj: dict[str, Any], key: str) -> str:
    if key not in obj:
        raise BadField(f"missing field {key!r}")
    value = _text(obj, key)
    if value is None:
        raise BadField(f"missing field {key!r}")
    return value


def _failed(rec: dict[str, Any]) -> bool:
    """``errorCode`` marks a refused call; console sign-ins report failure in responseElements."""
    if rec.get("errorCode"):
        return True
    response = rec.get("responseElements")
    return isinstance(response, dict) and response.get("ConsoleLogin") == "Failure"


def _arn_account(arn: Any) -> str | None:
    if isinstance(arn, str) and arn.startswith("arn:"):
        parts = arn.split(":", 5)
        if len(parts) > 4 and parts[4]:
            return parts[4]
    return None


def _trail_copy(rec: dict[str, Any], recipient: str | None, caller: str | None) -> str | None:
    """Which account's copy of a cross-account call this is (``sharedEventID``), else None.
    Insights events use ``sharedEventID`` to pair their start and end, not accounts."""
    if _text(rec, "sharedEventID") is None or rec.get("eventType") == "AwsCloudTrailInsight":
        return None
    return "caller" if recipient is not None and recipient == caller else "owner"


def _resource(rec: dict[str, Any], owner_fallback: str | None) -> tuple[str, str | None]:
    """(resource id, owning account or None); ``owner_fallback`` is the account that owns what the
    record names no owner for (the trail's own account, unless this is the caller's copy)."""
    resource = ""
    account = None
    resources = rec.get("resources")
    if isinstance(resources, list) and resources and all(isinstance(r, dict) for r in resources):
        first = resources[0]
        resource = (
            _text(first, "ARN", "resources[0].")
            or _text(first, "arn", "resources[0].")
            or _text(first, "ARNPrefix", "resources[0].")
            or next((a for r in resources[1:] if (a := _text(r, "ARN", "resources[].")) is not None), "")
        )
        account = next(
            (a for r in resources if (a := _text(r, "accountId", "resources[].")) is not None), None
        )
    params = rec.get("requestParameters")
    if not resource and isinstance(params, dict):
        bucket = _text(params, "bucketName", "requestParameters.")
        if bucket:
            key = _text(params, "key", "requestParameters.")
            resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "")
        else:
            resource = _parameter_id(params)
    resource = resource or _required(rec, "eventSource")
    return resource, account or _arn_account(resource) or owner_fallback


def _parameter_id(params: dict[str, Any]) -> str:
    """The resource a call's parameters name: what a RAM share shares, else the best-known id."""
    arns = params.get("resourceArns")
    if isinstance(arns, list) and arns and isinstance(arns[0], str) and arns[0]:
        return arns[0]
    return next((str(params[k]) for k in _RESOURCE_KEYS if isinstance(params.get(k), str | int)
                 and not isinstance(params[k], bool) and params[k] != ""), "")  # fmt: skip
