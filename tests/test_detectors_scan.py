"""``scan``: events file in, alerts as JSON lines out; bad lines are counted, not fatal."""

from __future__ import annotations

import json

from detectors.alert import decode_alert
from detectors.samples import load_cases, sample_files
from detectors.scan import scan
from ingest.schema import encode_event


def _write_events(path, extra_lines=()) -> int:
    events = sorted(
        (e for f in sample_files() for c in load_cases(f)[:1] for e in c.events), key=lambda e: e.ts
    )
    with path.open("wb") as fh:
        for i, ev in enumerate(events):
            fh.write(encode_event(ev) + b"\n")
            if i == 3:
                for line in extra_lines:
                    fh.write(line + b"\n")
    return len(events)


def test_scan_writes_alerts_as_json_lines(tmp_path) -> None:
    events = tmp_path / "events.jsonl"
    n = _write_events(events, extra_lines=[b"{not json", b'{"kind": "flow"}', b""])
    tenants = tmp_path / "tenants.yaml"
    from detectors.samples import samples_registry

    samples_registry().dump(tenants)
    out = tmp_path / "alerts.jsonl"
    result = scan(events, tenants, out)
    assert result.events == n and result.rejected_lines == 2
    lines = out.read_bytes().splitlines()
    alerts = [decode_alert(line) for line in lines]
    assert len(alerts) == result.alerts == sum(result.by_detector.values()) > 5
    assert {a.category for a in alerts} >= {"vm_escape", "cross_tenant_leak", "port_scan"}
    assert json.loads(lines[0])["alert_id"] == alerts[0].alert_id


def test_scan_without_registry_and_to_stdout(tmp_path, capsysbinary) -> None:
    events = tmp_path / "events.jsonl"
    _write_events(events)
    result = scan(events, None, "-")
    out = capsysbinary.readouterr().out.splitlines()
    assert len(out) == result.alerts
    # without a registry nothing is a tenant address: cross-tenant rules stay silent
    assert "cross_tenant.unpeered_flow" not in result.by_detector


def test_flows_written_as_exporters_write_them_are_on_time_under_the_export_delay(tmp_path) -> None:
    from detectors.engine import Lateness
    from detectors.samples import samples_registry
    from ingest.schema import FlowEvent

    events = sorted(
        (e for f in sample_files() for c in load_cases(f) for e in c.events), key=lambda e: (e.ts, e.id)
    )
    # every flow reaches the file 4 minutes after newer events of other kinds and flows
    delayed = sorted(events, key=lambda e: (e.ts + (240_000 if isinstance(e, FlowEvent) else 0), e.id))
    in_order, as_exported = tmp_path / "in_order.jsonl", tmp_path / "exported.jsonl"
    in_order.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    as_exported.write_bytes(b"".join(encode_event(e) + b"\n" for e in delayed))
    tenants = tmp_path / "tenants.yaml"
    samples_registry().dump(tenants)
    lateness = Lateness.for_flows(2_000, 360_000)

    def alerts(path, out_name, **kw) -> tuple[int, list[str]]:
        out = tmp_path / out_name
        result = scan(path, tenants, out, **kw)
        return result.late_events, sorted(
            decode_alert(line).alert_id for line in out.read_bytes().splitlines()
        )

    late, expected = alerts(in_order, "a.jsonl", lateness=lateness)
    assert late == 0 and expected
    assert alerts(as_exported, "b.jsonl", lateness=lateness) == (0, expected)
    # under the one small bound for every kind, the delayed flows are late and windowed alerts lost
    late_small, found = alerts(as_exported, "c.jsonl")
    assert late_small > 0 and set(expected) - set(found)
