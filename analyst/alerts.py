"""Alert workflow behind ``ssa alerts list|show|ack|close``.

Status moves ``open -> acknowledged -> closed`` (or ``open -> closed``). A change is written with
optimistic concurrency (``if_seq_no``/``if_primary_term`` of the version read), appends
``{status, by, at, reason}`` to ``status_history`` and sets ``status_updated_at``; a concurrent
change makes the write fail with 409, and the change is re-read and retried.

Tenant scoping: :mod:`analyst.scope` (every query filtered, every hit checked). Where: a store
scoped to a tenant searches only that tenant's indices (``infra.tenant_indices.tenant_index_pattern``,
what its Elasticsearch role grants), the SOC's the alerts alias (every tenant's and the SOC's
indices, each alert once: the per-tenant copies of a multi-tenant alert are filtered out). A change
is written to the ``_index`` of the hit read, never to a recomputed name: a tenant's copy and the
SOC's document of one alert have the same id and their own status.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from elasticsearch import ConflictError, Elasticsearch

from analyst.scope import AnalystError, NotFoundError, ScopedStore, TenantScopeError
from detectors.alert import SEVERITIES, STATUSES
from infra.settings import Settings
from infra.tenant_indices import read_index

__all__ = [
    "TRANSITIONS",
    "AlertFilter",
    "AlertNotFoundError",
    "AlertStore",
    "AlertWorkflowError",
    "TenantScopeError",
    "format_alert",
    "format_alert_line",
]

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "open": frozenset({"acknowledged", "closed"}),
    "acknowledged": frozenset({"closed"}),
    "closed": frozenset(),
}
_RETRIES: Final = 5


# The names the alert workflow always had.
AlertWorkflowError = AnalystError
AlertNotFoundError = NotFoundError


@dataclass(frozen=True)
class AlertFilter:
    tenant: str | None = None
    status: str | None = None
    severity: Sequence[str] = ()
    category: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise AlertWorkflowError(f"unknown status {self.status!r}; expected one of {', '.join(STATUSES)}")
        for sev in self.severity:
            if sev not in SEVERITIES:
                raise AlertWorkflowError(f"unknown severity {sev!r}; expected one of {', '.join(SEVERITIES)}")
        if not 0 < self.limit <= 10_000:
            raise AlertWorkflowError("limit must be between 1 and 10000")


class AlertStore(ScopedStore):
    what = "alert"

    def __init__(self, es: Elasticsearch, settings: Settings, *, tenant_scope: str | None = None) -> None:
        super().__init__(tenant_scope)
        self.es = es
        self.index = read_index(settings.index_alerts_prefix, tenant_scope)

    def list(self, flt: AlertFilter | None = None) -> list[dict[str, Any]]:
        """Alerts matching ``flt``, newest first."""
        flt = flt or AlertFilter()
        filters = self._scope_filters(flt.tenant)
        if flt.status:
            filters.append({"term": {"status": flt.status}})
        if flt.severity:
            filters.append({"terms": {"severity": list(flt.severity)}})
        if flt.category:
            filters.append({"term": {"category": flt.category}})
        if flt.since_ms is not None or flt.until_ms is not None:
            bounds: dict[str, Any] = {"format": "epoch_millis"}
            if flt.since_ms is not None:
                bounds["gte"] = flt.since_ms
            if flt.until_ms is not None:
                bounds["lte"] = flt.until_ms
            filters.append({"range": {"ts": bounds}})
        resp = self.es.search(
            index=self.index,
            query={"bool": {"filter": filters}},
            sort=[{"ts": {"order": "desc"}}, {"alert_id": {"order": "asc"}}],
            size=flt.limit,
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        return self._checked(resp["hits"]["hits"])

    # --- changing --------------------------------------------------------------------------------
    def transition(
        self, alert_id: str, status: str, by: str, reason: str = "", *, now_ms: int | None = None
    ) -> dict[str, Any]:
        """Move the alert to ``status``; a repeat of the current status changes nothing."""
        if status not in STATUSES:
            raise AlertWorkflowError(f"unknown status {status!r}")
        if not by.strip():
            raise AlertWorkflowError("say who makes the change (--by)")
        for _ in range(_RETRIES):
            doc = self.show(alert_id)
            current = doc.get("status", "open")
            if current == status:
                return doc
            if status not in TRANSITIONS.get(current, frozenset()):
                raise AlertWorkflowError(f"alert {alert_id} is {current}; cannot move it to {status}")
            at = now_ms if now_ms is not None else int(time.time() * 1000)
            history = [
                *doc.get("status_history", []),
                {"status": status, "by": by, "at": at, "reason": reason},
            ]
            change = {"status": status, "status_updated_at": at, "status_history": history}
            try:
                self.es.update(
                    index=doc["_index"],
                    id=alert_id,
                    doc=change,
                    if_seq_no=doc["_seq_no"],
                    if_primary_term=doc["_primary_term"],
                    refresh="wait_for",
                )
            except ConflictError:
                continue
            return {**doc, **change}
        raise AlertWorkflowError(f"alert {alert_id} kept changing under us; try again")

    def ack(self, alert_id: str, by: str, reason: str = "", *, now_ms: int | None = None) -> dict[str, Any]:
        return self.transition(alert_id, "acknowledged", by, reason, now_ms=now_ms)

    def close(self, alert_id: str, by: str, reason: str = "", *, now_ms: int | None = None) -> dict[str, Any]:
        return self.transition(alert_id, "closed", by, reason, now_ms=now_ms)


def _iso(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def format_alert_line(doc: dict[str, Any]) -> str:
    entity = doc.get("entity") or {}
    return (
        f"{doc.get('alert_id', '?')}  {_iso(doc.get('ts'))}  {doc.get('tenant') or '-':<12} "
        f"{doc.get('severity', '?'):<8} {doc.get('status', '?'):<12} {doc.get('category', '?'):<17} "
        f"{entity.get('type', '?')}:{entity.get('id', '?')}  {doc.get('summary', '')}"
    )


def format_alert(doc: dict[str, Any]) -> str:
    attack = doc.get("attack") or {}
    lines = [
        format_alert_line(doc),
        f"  detector: {doc.get('detector')} {doc.get('detector_version')}  score: {doc.get('score')}",
        f"  ATT&CK: {attack.get('technique_id')} {attack.get('technique')} ({attack.get('tactic')})",
        f"  seen: {_iso(doc.get('first_seen'))} .. {_iso(doc.get('last_seen'))}  ttd_ms: {doc.get('ttd_ms')}",
        f"  evidence: {doc.get('evidence')}",
    ]
    for item in doc.get("status_history") or []:
        lines.append(
            f"  {_iso(item.get('at'))} {item.get('status')} by {item.get('by')}: {item.get('reason', '')}"
        )
    return "\n".join(lines)
