"""Per-tenant per-minute posture metrics, accumulated from the events the detectors already decoded.

Keyed state of the job (it pickles): for each open minute and (tenant, kind), counts of events,
bytes, flows, distinct peers and destination ports, and alerts raised. A minute is emitted once
the watermark passes its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ingest.schema import Event, FlowEvent

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
    peers: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)

    def add(self, event: Event) -> None:
        self.events += 1
        if isinstance(event, FlowEvent):
            self.flows += 1
            self.bytes += event.bytes_out + event.bytes_in
            if len(self.peers) < MAX_DISTINCT:
                self.peers.add(event.dst_ip)
            if len(self.ports) < MAX_DISTINCT:
                self.ports.add(event.dst_port)


@dataclass
class PostureState:
    minutes: dict[int, dict[tuple[str, str], MinuteAccumulator]] = field(default_factory=dict)

    def add(self, event: Event) -> None:
        minute = event.ts - event.ts % MINUTE_MS
        kind = event.__struct_config__.tag
        key = (event.tenant or "-", str(kind))
        bucket = self.minutes.setdefault(minute, {})
        acc = bucket.get(key)
        if acc is None:
            acc = bucket[key] = MinuteAccumulator()
        acc.add(event)

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
                        "distinct_peers": len(acc.peers),
                        "distinct_dst_ports": len(acc.ports),
                    }
                )
        return out

    def __bool__(self) -> bool:
        return bool(self.minutes)
