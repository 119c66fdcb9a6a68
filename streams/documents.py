"""Elasticsearch documents made from what the job writes to Kafka: alerts (enriched with the
tenant's industry and time to detect), posture metrics, and one counting document per DLQ record.

Every document id is deterministic, so re-shipping the same Kafka records never adds a document.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from detectors.alert import Alert, decode_alert
from detectors.ecs import alert_ecs, incident_ecs, with_ecs
from ingest.tenants import TenantRegistry

__all__ = [
    "Action",
    "alert_action",
    "awareness_action",
    "daily_index",
    "dlq_action",
    "lag_action",
    "metrics_action",
]


@dataclass(frozen=True)
class Action:
    index: str
    id: str
    source: dict[str, Any]
    # "create" keeps the first copy: an analyst's acknowledgement is never reset by a replay.
    op_type: str = "index"


def daily_index(prefix: str, ts_ms: int) -> str:
    return prefix + time.strftime("%Y.%m.%d", time.gmtime(ts_ms / 1000))


def alert_action(
    value: bytes,
    prefix: str,
    industry_of: Callable[[str | None], str | None],
    registry: TenantRegistry | None = None,
) -> Action:
    """The alert's document: our fields, then its ECS fields (``detectors.ecs``; ``registry``, when
    given, adds the tenant's name and cloud account and a VM's host)."""
    alert: Alert = decode_alert(value)
    doc: dict[str, Any] = msgspec.to_builtins(alert)
    doc["industry"] = industry_of(alert.tenant)
    doc["ttd_ms"] = max(0, alert.ts - alert.first_seen)
    doc["indexed_at"] = int(time.time() * 1000)
    doc = with_ecs(doc, alert_ecs(doc, registry))
    return Action(daily_index(prefix, alert.ts), alert.alert_id, doc, op_type="create")


_metrics_decoder = msgspec.json.Decoder(dict[str, Any])


def metrics_action(value: bytes, prefix: str) -> Action:
    doc = _metrics_decoder.decode(value)
    ts = doc.get("ts")
    if not isinstance(ts, int):
        raise ValueError("metrics record without an integer ts")
    key = f"{doc.get('tenant')}|{doc.get('kind')}|{doc.get('key')}|{doc.get('detector')}|{ts}"
    return Action(
        daily_index(prefix, ts), "m-" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest(), doc
    )


# The id field and the time field (naming the daily index) of each awareness document family.
_AWARENESS_IDS = {
    "incidents": ("incident_id", "first_seen"),
    "threat": ("doc_id", "ts"),
    "warnings": ("warning_id", "ts"),
}


def awareness_action(
    value: bytes, family: str, prefix: str, registry: TenantRegistry | None = None
) -> Action:
    """An incident, threat-level or warning document. An incident (with its ECS fields) is
    rewritten as it grows, always in the index of the day it began; as a partial update, so the
    analyst's fields (which the job never writes) survive the job's rewrites and replays."""
    doc = _metrics_decoder.decode(value)
    id_field, time_field = _AWARENESS_IDS[family]
    doc_id, ts = doc.get(id_field), doc.get(time_field)
    if not isinstance(doc_id, str) or not doc_id or not isinstance(ts, int):
        raise ValueError(f"{family} record without a string {id_field} and an integer {time_field}")
    index = daily_index(prefix, ts)
    if family == "incidents":
        doc = with_ecs(doc, incident_ecs(doc, registry))
        return Action(index, doc_id, {"doc": doc, "doc_as_upsert": True}, op_type="update")
    return Action(index, doc_id, doc)


def dlq_action(
    prefix: str, topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes
) -> Action:
    source = "unknown"
    reason = ""
    try:
        body = _metrics_decoder.decode(value)
        source = str(body.get("source", source))
        reason = str(body.get("reason", ""))[:200]
    except msgspec.DecodeError:
        reason = "undecodable DLQ record"
    minute = timestamp_ms - timestamp_ms % 60_000
    doc = {"ts": minute, "topic": topic, "kind": "dlq", "dlq": 1, "source": source, "reason": reason}
    return Action(daily_index(prefix, minute), f"dlq-{topic}-{partition}-{offset}", doc)


def lag_action(prefix: str, topic: str, lag: int, now_ms: int) -> Action:
    bucket = now_ms - now_ms % 15_000
    doc = {"ts": bucket, "topic": topic, "kind": "lag", "consumer_lag": lag}
    return Action(daily_index(prefix, bucket), f"lag-{topic}-{bucket}", doc)
