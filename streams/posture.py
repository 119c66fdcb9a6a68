"""Per-tenant per-minute posture metrics, accumulated from the events the detectors already decoded.

Keyed state of the job (it pickles): for each open minute and (tenant, kind), counts of events,
bytes, flows, distinct peers and destination ports, failures (failed logins, failed process or
API calls, rejected flows: the probes and guesses that precede incidents) and alerts raised. A minute is emitted once
the watermark passes its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ingest.schema import AuditEvent, AuthEvent, Event, FlowEvent, ProcessEvent

__all__ = ["MINUTE_MS", "MinuteAccumulator", "PostureState"]

MINUTE_MS: Final = 60_000
# Distinct counts are exact up to this many values per minute and tenant, then saturate: state
# stays bounded under a scan or flood, and the dashboards show the cap as "at least".
MAX_DISTINCT: Final = 4096


@dataclass
class MinuteAccumulator:
    events: int = 0
    bytes: int = 0
    flows: int = 0
    alerts: int = 0
    failures: int = 0
    peers: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)


_KIND_OF: Final = {FlowEvent: "flow", ProcessEvent: "process", AuditEvent: "audit", AuthEvent: "auth"}


@dataclass
class PostureState:
    minutes: dict[int, dict[tuple[str, str], MinuteAccumulator]] = field(default_factory=dict)

    def add(self, event: Event) -> None:
        self.add_all((event,))

    def add_all(self, events: Iterable[Event]) -> None:
        """Count a batch (the per-event body is inlined: it runs for every event the job sees)."""
        minutes = self.minutes
        current_minute = -1
        bucket: dict[tuple[str, str], MinuteAccumulator] = {}
        for ev in events:
            minute = ev.ts - ev.ts % MINUTE_MS
            if minute != current_minute:
                bucket = minutes.setdefault(minute, {})
                current_minute = minute
            key = (ev.tenant or "-", _KIND_OF[ev.__class__])
            acc = bucket.get(key)
            if acc is None:
                acc = bucket[key] = MinuteAccumulator()
            acc.events += 1
            if isinstance(ev, FlowEvent):
                acc.flows += 1
                acc.bytes += ev.bytes_out + ev.bytes_in
                if len(acc.peers) < MAX_DISTINCT:
                    acc.peers.add(ev.dst_ip)
                if len(acc.ports) < MAX_DISTINCT:
                    acc.ports.add(ev.dst_port)
                if ev.action == "reject":
                    acc.failures += 1
            elif ev.result == "failure":
                acc.failures += 1

    def count_alert(self, tenant: str | None, ts: int) -> None:
        minute = ts - ts % MINUTE_MS
        bucket = self.minutes.setdefault(minute, {})
        key = (tenant or "-", "alert")
        acc = bucket.get(key)
        if acc is None:
            acc = bucket[key] = MinuteAccumulator()
        acc.alerts += 1

    def close(self, watermark: int, partition_key: str) -> list[dict[str, Any]]:
        """Records of every minute that ended at or before ``watermark``."""
        out = []
        for minute in sorted(m for m in self.minutes if m + MINUTE_MS <= watermark):
            for (tenant, kind), acc in sorted(self.minutes.pop(minute).items()):
                out.append(
                    {
                        "ts": minute,
                        "tenant": tenant,
                        "kind": kind,
                        "key": partition_key,
                        "events": acc.events,
                        "events_per_s": round(acc.events / 60, 3),
                        "bytes": acc.bytes,
                        "flows": acc.flows,
                        "alerts": acc.alerts,
                        "failures": acc.failures,
                        "distinct_peers": len(acc.peers),
                        "distinct_dst_ports": len(acc.ports),
                    }
                )
        return out

    def __bool__(self) -> bool:
        return bool(self.minutes)


def anomaly_records(scores: list[dict[str, Any]], partition_key: str) -> list[dict[str, Any]]:
    """Metrics records (``kind: anomaly``) of the anomaly detectors' window score summaries
    (``DetectionEngine.drain_window_scores``): per tenant, detector and window start, the scored rows
    and the 50th, 95th and 99th percentiles of their anomaly score (1 - p-value, 0 to 1)."""
    return [
        {
            "ts": s["ts"],
            "tenant": s["tenant"] or "-",
            "kind": "anomaly",
            "key": partition_key,
            "detector": s["detector"],
            "window_ms": s["window_ms"],
            "scored": s["scored"],
            "anomaly_p50": s["anomaly_p50"],
            "anomaly_p95": s["anomaly_p95"],
            "anomaly_p99": s["anomaly_p99"],
        }
        for s in scores
    ]
