"""Incident workflow behind ``ssa incidents list|show|ack|close|snooze``.

The job writes each incident as one document (``ssa-incidents-*``, id ``incident_id``) and
rewrites it as the incident grows; its ``status`` (open, or closed after the inactivity gap) is
the job's. The analyst's state is apart, in fields the job never writes: ``workflow``
(``new -> acknowledged -> closed``), ``workflow_history`` (``{status, by, at, reason}``) and
``audit`` entries of snoozes. Changes use optimistic concurrency like the alert workflow.

A snooze ("detector D's alerts about entity E are noise for 2 h") goes to the snooze file the job
reads (:mod:`awareness.snooze`) and into the incident's audit trail. Alerts stay reachable from
their incident: ``show`` lists them from the alert indices.

Where: a store scoped to a tenant reads that tenant's incident and alert indices only
(``infra.tenant_indices.tenant_index_pattern``), the SOC's the incidents and alerts aliases;
changes go to the ``_index`` of the hit read.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from elasticsearch import ConflictError, Elasticsearch

from analyst.scope import AnalystError, ScopedStore
from awareness.snooze import Snooze, SnoozeError, add_snooze
from infra.settings import Settings
from infra.tenant_indices import read_index

__all__ = [
    "WORKFLOW",
    "IncidentFilter",
    "IncidentStore",
    "format_incident",
    "format_incident_line",
]

WORKFLOW: Final[dict[str, frozenset[str]]] = {
    "new": frozenset({"acknowledged", "closed"}),
    "acknowledged": frozenset({"closed"}),
    "closed": frozenset(),
}
SEVERITY_ORDER: Final = ("low", "medium", "high", "critical")
MAX_SNOOZE_MS: Final = 30 * 86_400_000
_RETRIES: Final = 5


@dataclass(frozen=True)
class IncidentFilter:
    tenant: str | None = None
    status: str | None = None  # the job's: open or closed
    workflow: str | None = None  # the analyst's: new, acknowledged, closed
    min_severity: str | None = None
    since_ms: int | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.status not in (None, "open", "closed"):
            raise AnalystError(f"unknown status {self.status!r}; expected open or closed")
        if self.workflow is not None and self.workflow not in WORKFLOW:
            raise AnalystError(
                f"unknown workflow state {self.workflow!r}; expected one of {', '.join(WORKFLOW)}"
            )
        if self.min_severity is not None and self.min_severity not in SEVERITY_ORDER:
            raise AnalystError(
                f"unknown severity {self.min_severity!r}; expected one of {', '.join(SEVERITY_ORDER)}"
            )
        if not 0 < self.limit <= 10_000:
            raise AnalystError("limit must be between 1 and 10000")


class IncidentStore(ScopedStore):
    what = "incident"

    def __init__(self, es: Elasticsearch, settings: Settings, *, tenant_scope: str | None = None) -> None:
        super().__init__(tenant_scope)
        self.es = es
        self.index = read_index(settings.index_incidents_prefix, tenant_scope)
        self.alerts_index = read_index(settings.index_alerts_prefix, tenant_scope)
        self.snooze_file = settings.snooze_file

    def list(self, flt: IncidentFilter | None = None) -> list[dict[str, Any]]:
        """Incidents matching ``flt``, most recently active first."""
        flt = flt or IncidentFilter()
        filters = self._scope_filters(flt.tenant)
        if flt.status:
            filters.append({"term": {"status": flt.status}})
        if flt.min_severity:
            wanted = SEVERITY_ORDER[SEVERITY_ORDER.index(flt.min_severity) :]
            filters.append({"terms": {"severity": list(wanted)}})
        if flt.since_ms is not None:
            filters.append({"range": {"last_seen": {"gte": flt.since_ms, "format": "epoch_millis"}}})
        query: dict[str, Any] = {"bool": {"filter": filters}}
        if flt.workflow == "new":  # never touched by an analyst: the field is absent
            query["bool"]["must_not"] = [{"exists": {"field": "workflow"}}]
        elif flt.workflow:
            filters.append({"term": {"workflow": flt.workflow}})
        resp = self.es.search(
            index=self.index,
            query=query,
            sort=[{"last_seen": {"order": "desc"}}, {"incident_id": {"order": "asc"}}],
            size=flt.limit,
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        return self._checked(resp["hits"]["hits"])

    def alerts_of(self, incident: dict[str, Any], limit: int = 1000) -> builtins.list[dict[str, Any]]:
        """The incident's alerts (its ``alert_ids``, within the scope), oldest first."""
        ids = list(incident.get("alert_ids") or [])[:limit]
        if not ids:
            return []
        resp = self.es.search(
            index=self.alerts_index,
            query={"bool": {"filter": [{"ids": {"values": ids}}, *self._scope_filters(None)]}},
            sort=[{"first_seen": {"order": "asc"}}, {"alert_id": {"order": "asc"}}],
            size=len(ids),
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        return self._checked(resp["hits"]["hits"])

    # --- changing --------------------------------------------------------------------------------
    def _change(self, incident_id: str, make: Any) -> dict[str, Any]:
        for _ in range(_RETRIES):
            doc = self.show(incident_id)
            change = make(doc)
            if change is None:
                return doc
            try:
                self.es.update(
                    index=doc["_index"], id=incident_id, doc=change, if_seq_no=doc["_seq_no"],
                    if_primary_term=doc["_primary_term"], refresh="wait_for",
                )  # fmt: skip
            except ConflictError:  # the job or another analyst wrote it meanwhile: read again
                continue
            return {**doc, **change}
        raise AnalystError(f"incident {incident_id} kept changing under us; try again")

    def transition(
        self, incident_id: str, workflow: str, by: str, reason: str = "", *, now_ms: int | None = None
    ) -> dict[str, Any]:
        if workflow not in WORKFLOW:
            raise AnalystError(f"unknown workflow state {workflow!r}")
        if not by.strip():
            raise AnalystError("say who makes the change (--by)")
        at = now_ms if now_ms is not None else int(time.time() * 1000)

        def make(doc: dict[str, Any]) -> dict[str, Any] | None:
            current = doc.get("workflow", "new")
            if current == workflow:
                return None
            if workflow not in WORKFLOW.get(current, frozenset()):
                raise AnalystError(f"incident {incident_id} is {current}; cannot move it to {workflow}")
            entry = {"status": workflow, "by": by, "at": at, "reason": reason}
            change = {"workflow": workflow, "workflow_updated_at": at,
                      "workflow_history": [*doc.get("workflow_history", []), entry]}  # fmt: skip
            if workflow == "closed" and isinstance(doc.get("first_seen"), int):
                change["ttc_ms"] = max(0, at - doc["first_seen"])  # the report's time to close
            return change

        return self._change(incident_id, make)

    def snooze(
        self,
        incident_id: str,
        detector: str,
        entity_id: str,
        duration_ms: int,
        by: str,
        reason: str,
        *,
        now_ms: int | None = None,
    ) -> tuple[dict[str, Any], Snooze]:
        """Snooze ``detector``'s alerts about ``entity_id`` in the incident's tenant for
        ``duration_ms``: written to the snooze file the job reads, and to the incident's audit."""
        if not 0 < duration_ms <= MAX_SNOOZE_MS:
            raise AnalystError(f"a snooze lasts between 1 ms and {MAX_SNOOZE_MS // 86_400_000} days")
        if not by.strip() or not reason.strip():
            raise AnalystError("a snooze needs who (--by) and why (--reason)")
        at = now_ms if now_ms is not None else int(time.time() * 1000)
        doc = self.show(incident_id)
        entry = Snooze(
            tenant=str(doc.get("tenant")), detector=detector, entity_id=entity_id, until_ms=at + duration_ms,
            reason=reason, by=by, at_ms=at,
        )  # fmt: skip
        try:
            add_snooze(self.snooze_file, entry, now_ms=at)
        except SnoozeError as exc:
            raise AnalystError(str(exc)) from None
        audit = {"action": "snooze", "detector": detector, "entity_id": entity_id, "until": entry.until_ms,
                 "by": by, "at": at, "reason": reason}  # fmt: skip
        updated = self._change(incident_id, lambda d: {"audit": [*d.get("audit", []), audit]})
        return updated, entry


def _iso(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _minutes(ms: int) -> str:
    minutes = ms // 60_000
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def format_incident_line(doc: dict[str, Any]) -> str:
    span = max(0, int(doc.get("last_seen") or 0) - int(doc.get("first_seen") or 0))
    return (
        f"{doc.get('incident_id', '?')}  {_iso(doc.get('last_seen'))}  {doc.get('tenant') or '-':<12} "
        f"{doc.get('severity', '?'):<8} {doc.get('status', '?'):<6} {doc.get('workflow', 'new'):<12} "
        f"{doc.get('stage', '?'):<20} {doc.get('alert_count', 0):>5} alerts  {_minutes(span):>10}  "
        f"{doc.get('title', '')}"
    )


def format_incident(doc: dict[str, Any], alerts: Sequence[dict[str, Any]] = ()) -> str:
    lines = [
        format_incident_line(doc),
        f"  seen: {_iso(doc.get('first_seen'))} .. {_iso(doc.get('last_seen'))}",
    ]
    lines.append(
        f"  score: {doc.get('score')}  other tenants: {', '.join(doc.get('other_tenants') or []) or '-'}"
    )
    for step in doc.get("kill_chain") or []:
        lines.append(
            f"  {_iso(step.get('first_seen'))}  {step.get('tactic', '?'):<22} "
            f"{', '.join(step.get('categories') or [])} ({step.get('alert_count', 0)} alerts)"
        )
    entities = ", ".join(f"{e.get('type')}:{e.get('id')}" for e in doc.get("entities") or [])
    lines.append(f"  entities: {entities or '-'}")
    for item in doc.get("workflow_history") or []:
        lines.append(
            f"  {_iso(item.get('at'))} {item.get('status')} by {item.get('by')}: {item.get('reason', '')}"
        )
    for item in doc.get("audit") or []:
        lines.append(
            f"  {_iso(item.get('at'))} {item.get('action')} {item.get('detector')} on {item.get('entity_id')} "
            f"until {_iso(item.get('until'))} by {item.get('by')}: {item.get('reason', '')}"
        )
    if alerts:
        lines.append("  alerts:")
        for alert in alerts:
            entity = alert.get("entity") or {}
            lines.append(
                f"    {alert.get('alert_id')}  {_iso(alert.get('first_seen'))}  {alert.get('severity', '?'):<8} "
                f"{alert.get('detector')}  {entity.get('type')}:{entity.get('id')}  {alert.get('summary', '')}"
            )
    return "\n".join(lines)
