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

__all__ = ["Action", "alert_action", "daily_index", "dlq_action", "lag_action", "metrics_action"]


@dataclass(frozen=True)
class Action:
    index: str
    id: str
    source: dict[str, Any]
    # "create" keeps the first copy: an analyst's acknowledgement is never reset by a replay.
    op_type: str = "index"


def daily_index(prefix: str, ts_ms: int) -> str:
    return prefix + time.strftime("%Y.%m.%d", time.gmtime(ts_ms / 1000))


def alert_action(value: bytes, prefix: str, industry_of: Callable[[str | None], str | None]) -> Action:
    alert: Alert = decode_alert(value)
    doc: dict[str, Any] = msgspec.to_builtins(alert)
    doc["industry"] = industry_of(alert.tenant)
    doc["ttd_ms"] = max(0, alert.ts - alert.first_seen)
    doc["indexed_at"] = int(time.time() * 1000)
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
