"""Cloud control-plane audit records (AWS CloudTrail JSON) -> audit events.

Input: CloudTrail log files (``{"Records": [...]}``, one line or pretty-printed) or JSON lines of
single records (CloudWatch Logs / EventBridge exports). Mapping:
``eventSource`` + ``eventName`` -> ``action`` (``s3.amazonaws.com`` + ``GetObject`` ->
``s3.GetObject``); ``userIdentity.arn`` (else principalId / invokedBy / type) -> ``principal``;
the caller's account -> ``principal_tenant``; ``resources[0].ARN`` (else the best-known id in
``requestParameters``: bucket/key, snapshot, image, instance, volume, role...) -> ``resource``;
the resource's account (``resources[].accountId``, the ARN's account field, else
``recipientAccountId``) -> ``resource_tenant``; ``sourceIPAddress`` -> ``src_ip`` when it is an
address (AWS service names such as ``s3.amazonaws.com`` go to ``extra.source``); ``errorCode``
-> ``result: failure``. Accounts map to tenants through the registry's ``accounts`` lists; an
account the registry does not know stays as the account id. Snapshot/AMI sharing grantees
(``createVolumePermission`` / ``launchPermission`` ``add`` items) go to ``extra.grantees``.
Everything else of the record is kept in ``extra``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec

from ingest.parsers.base import Output, ParseContext, Parser, ms_from_iso
from ingest.parsers.flowutil import valid_ip
from ingest.reader import JsonRejected, load_json
from ingest.schema import AuditEvent, event_id

__all__ = ["CloudAuditParser"]

MAX_DOCUMENT_BYTES: Final = 256 * 1024 * 1024
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
    "dBInstanceIdentifier", "secretId", "name", "userName", "roleName", "groupId", "vpcId", "clusterName",
)  # fmt: skip
_encoder: Final = msgspec.json.Encoder()


class CloudAuditParser(Parser):
    source: ClassVar[str] = "cloudaudit"
    max_line_bytes: ClassVar[int] = 64 * 1024 * 1024  # a whole CloudTrail file is often one line

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)
        self.seen_any = False
        self.document: list[bytes] | None = None  # pretty-printed file being gathered
        self.doc_size = 0
        self.doc_start = (1, 0)

    def feed(self, line: bytes, lineno: int, offset: int) -> None:
        if self.document is not None:
            self.doc_size += len(line) + 1
            if self.doc_size > MAX_DOCUMENT_BYTES:
                self.reject(f"JSON document over {MAX_DOCUMENT_BYTES} bytes", b"\n".join(self.document[:64]),
                            *self.doc_start, raw_len=self.doc_size)  # fmt: skip
                self.document = None
                return
            self.document.append(line)
            return
        stripped = line.strip()
        if not stripped:
            self.skip("blank line")
            return
        if not self.seen_any and stripped in (b"{", b'{"Records": [', b'{"Records":['):
            self.document, self.doc_size, self.doc_start = [line], len(line) + 1, (lineno, offset)
            return
        self.seen_any = True
        self._document(line, lineno, offset)

    def close(self) -> None:
        if self.document is not None:
            doc, self.document = b"\n".join(self.document), None
            self._document(doc, *self.doc_start)

    def _document(self, data: bytes, lineno: int, offset: int) -> None:
        try:
            value = load_json(data)
        except JsonRejected as exc:
            self.reject(str(exc), data, lineno, offset)
            return
        if isinstance(value, dict) and isinstance(value.get("Records"), list):
            records: list[Any] = value["Records"]
        elif isinstance(value, dict):
            records = [value]
        else:
            self.reject('JSON is neither a record nor {"Records": [...]}', data, lineno, offset)
            return
        for record in records:
            raw = _encoder.encode(record)
            if not isinstance(record, dict):
                self.reject("record is not an object", raw, lineno, offset)
                continue
            try:
                self.out.event(self._event(record, raw))
            except (ValueError, TypeError, KeyError) as exc:
                reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                self.reject(f"record {record.get('eventID', '?')}: {reason}", raw, lineno, offset)

    def _event(self, rec: dict[str, Any], raw: bytes) -> AuditEvent:
        ts = ms_from_iso(rec["eventTime"])
        service = str(rec["eventSource"]).split(".", 1)[0]
        action = f"{service}.{rec['eventName']}"
        ident = rec.get("userIdentity") or {}
        if not isinstance(ident, dict):
            raise TypeError("userIdentity is not an object")
        principal = str(ident.get("arn") or ident.get("principalId") or ident.get("invokedBy")
                        or ident.get("type") or "unknown")  # fmt: skip
        principal_account = ident.get("accountId") or _arn_account(ident.get("arn"))
        resource, resource_account = _resource(rec)
        extra: dict[str, Any] = {k: v for k, v in rec.items() if k not in _MAPPED}
        extra["identity_type"] = ident.get("type")
        if principal_account:
            extra["principal_account"] = principal_account
        if resource_account:
            extra["resource_account"] = resource_account
        grantees = _grantees(rec.get("requestParameters"))
        if grantees:
            extra["grantees"] = [self.account_tenant(g) for g in grantees]
        src = rec.get("sourceIPAddress")
        if isinstance(src, str) and not valid_ip(src):
            extra["source"] = src
            src = None
        principal_tenant = self.account_tenant(principal_account)
        tenant = self.forced_tenant or self.account_tenant(rec.get("recipientAccountId")) or principal_tenant
        return AuditEvent(
            id=event_id("cloudaudit", raw), ts=ts, source="cloudaudit", tenant=tenant,
            principal=principal, principal_tenant=principal_tenant, action=action, resource=resource,
            resource_tenant=self.account_tenant(resource_account), src_ip=src,
            result="failure" if _failed(rec) else "success", extra=extra,
        )  # fmt: skip


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


def _resource(rec: dict[str, Any]) -> tuple[str, str | None]:
    """(resource id, owning account or None)."""
    resources = rec.get("resources")
    if isinstance(resources, list) and resources and all(isinstance(r, dict) for r in resources):
        first = resources[0]
        arn = str(first.get("ARN") or first.get("arn") or "")
        account = next((r["accountId"] for r in resources if r.get("accountId")), None)
        return arn, account or _arn_account(arn) or rec.get("recipientAccountId")
    params = rec.get("requestParameters")
    resource = ""
    if isinstance(params, dict):
        if params.get("bucketName"):
            resource = f"arn:aws:s3:::{params['bucketName']}" + (
                f"/{params['key']}" if params.get("key") else ""
            )
        else:
            resource = next((str(params[k]) for k in _RESOURCE_KEYS if params.get(k)), "")
    resource = resource or str(rec.get("eventSource", ""))
    return resource, _arn_account(resource) or rec.get("recipientAccountId")


def _grantees(params: Any) -> list[str]:
    """Accounts an EC2 snapshot/AMI is being shared with (ModifySnapshotAttribute and friends)."""
    if not isinstance(params, dict):
        return []
    out: list[str] = []
    for key in ("createVolumePermission", "launchPermission"):
        perm = params.get(key)
        add = perm.get("add") if isinstance(perm, dict) else None
        items = add.get("items") if isinstance(add, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                who = item.get("userId") or item.get("group")
                if who:
                    out.append(str(who))
    return out
