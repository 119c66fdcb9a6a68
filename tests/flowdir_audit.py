"""Audit of flow direction in alerts (issue 19): on a real capture or a flow file, how many flow
alerts have a response record as their subject, and how many port-scan alerts hold an answered
connection among the probes they list. A record's role and answer come from
``detectors.flowdir`` (Zeek ``conn_state``, Argus ``State``, TCP flags, ICMP types, ports).

    .venv/bin/python -m tests.flowdir_audit stratosphere_ctu50_normal_hosts iot23_capture_34_1_mirai
    .venv/bin/python -m tests.flowdir_audit --file tests/samples/vpcflow_v2.log --format vpcflow

Run it with ``PYTHONPATH=<copy of an older detectors package's parent>`` to audit older rules.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.evaluation.real import run_capture
from detectors.flowdir import ANSWER_MASK, ANSWERED, flow_view, is_response
from detectors.registry import all_detectors
from ingest.pipeline import run_ingest
from ingest.schema import Event, FlowEvent
from ingest.tenants import TenantRegistry

_FLOW_CATEGORIES = ("port_scan", "dos", "exfiltration", "cross_tenant_leak", "cryptomining", "vm_escape")


class _Collect:
    """A sink keeping every flow event by id."""

    def __init__(self) -> None:
        self.flows: dict[str, FlowEvent] = {}

    def send_event(self, event: Event) -> None:
        if isinstance(event, FlowEvent):
            self.flows[event.id] = event

    def send_events(self, events: list[Event]) -> None:
        for ev in events:
            self.send_event(ev)

    def send_dlq(self, record: object) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def record_counts(flows: dict[str, FlowEvent]) -> dict[str, int]:
    """Over every record: responses, and records that the old test (``packets_in == 0`` or a
    reject means a failed probe) takes for failed probes although they are answered or responses."""
    responses = misread = 0
    for ev in flows.values():
        view = flow_view(ev)
        old_failed = ev.action == "reject" or ev.packets_in == 0
        if is_response(view):
            responses += 1
        if old_failed and (is_response(view) or view & ANSWER_MASK == ANSWERED):
            misread += 1
    return {"records": len(flows), "response_records": responses, "old_test_failed_but_answered": misread}


def audit(alerts: list[Any], flows: dict[str, FlowEvent]) -> dict[str, Any]:
    """Counts over ``alerts`` (objects with detector, category, entity, evidence.event_ids)."""
    response_subject = 0
    answered_probe = 0
    by_detector: Counter[str] = Counter()
    for a in alerts:
        ids = a.event_ids if hasattr(a, "event_ids") else a.evidence.get("event_ids", [])
        records = [flows[i] for i in ids if i in flows]
        if not records:
            continue
        by_detector[a.detector] += 1
        entity = a.entity.id
        if any(is_response(flow_view(ev)) and entity in (ev.src_ip, ev.vm) for ev in records):
            response_subject += 1
        if a.detector.startswith("port_scan") and any(
            flow_view(ev) & ANSWER_MASK == ANSWERED or is_response(flow_view(ev)) for ev in records
        ):
            answered_probe += 1
    return {
        "flow_alerts": sum(by_detector.values()),
        "by_detector": dict(by_detector),
        "alerts_with_response_subject": response_subject,
        "port_scan_alerts_listing_answered_connections": answered_probe,
        **record_counts(flows),
    }


def audit_capture(name: str, data_dir: str) -> dict[str, Any]:
    run = run_capture(name, data_dir)
    sink = _Collect()
    for path in run.files:
        run_ingest(path, run.capture.fmt, sink=sink, timezone=run.capture.timezone)  # type: ignore[arg-type]
    return audit(run.sink.alerts, sink.flows)


def audit_file(path: str, fmt: str, tenants: str | None) -> dict[str, Any]:
    registry = TenantRegistry.load(tenants) if tenants else TenantRegistry()
    sink = _Collect()
    run_ingest(Path(path), fmt, registry=registry, sink=sink)  # type: ignore[arg-type]
    cfg = DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg))
    events = sorted(sink.flows.values(), key=lambda e: (e.ts, e.id))
    alerts = engine.process(list(events)) + engine.flush()
    return audit(alerts, sink.flows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("captures", nargs="*")
    ap.add_argument("--data-dir", default="/work/shared/data")
    ap.add_argument("--file")
    ap.add_argument("--format")
    ap.add_argument("--tenants")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {}
    for name in args.captures:
        out[name] = audit_capture(name, args.data_dir)
    if args.file:
        out[args.file] = audit_file(args.file, args.format, args.tenants)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
