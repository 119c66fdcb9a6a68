"""Incidents, levels and warnings on labelled captures (streams/awareness_real.py): the job's
detection and awareness stages replayed over a capture and measured against its labels. A
hand-made CICFlowMeter capture for the measures' logic; IoT-23's real day for the replay against
its scorecard run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectors.config import DetectorConfig
from detectors.engine import Lateness
from detectors.evaluation.labelled import LabelClasses, labelled_capture
from detectors.evaluation.real import run_capture
from ssa.cli import main
from streams.awareness_real import measure_capture, replay_capture
from streams.detect_fn import DetectionJobConfig
from tests.test_labelled_capture import write_scan_capture

CFG = DetectorConfig.default()
LATENESS = Lateness.for_flows(2000, 360_000)
JOB = DetectionJobConfig(out_of_orderness_ms=2000, flow_export_delay_ms=360_000)


def test_a_scan_becomes_one_incident_and_benign_traffic_none(tmp_path: Path) -> None:
    """A SYN scan of 1,000 closed ports of a host, its browsing, and three flows of an attack no
    detector is scored for (tests.test_labelled_capture)."""
    path = write_scan_capture(tmp_path)
    capture = labelled_capture([path], "cicflowmeter", "csv", "Label", LabelClasses(), cidrs=["10.1.0.0/16"])
    run = run_capture(capture, tmp_path, config=CFG, lateness=LATENESS, keep_events=True)
    assert [len(events) for events in run.events_by_file] == [1083]
    replays = replay_capture(run, CFG, JOB)
    m = measure_capture(run, replays, run.sink.alerts)
    assert m["alerts"] > 0 and m["alerts_same_as_scorecard"] and m["late_events"] == 0
    scan = m["classes"]["PortScan"]
    assert scan["alerts"] >= 1 and scan["incidents"] == 1 and scan["mixed_incidents"] == 0
    (incident,) = scan["attack_incidents"]
    assert incident["kill_chain"] == ["reconnaissance"] and incident["attack_classes"] == ["PortScan"]
    assert m["classes"]["benign"]["alerts"] == 0 and m["incidents_without_attack"] == 0
    assert m["false_incidents_per_benign_host_per_day"] == 0.0
    level = m["threat"][capture.name]
    assert sum(level["minutes"].values()) > 0 and level["highest"] in ("blue", "yellow", "orange", "red")


def test_the_replay_of_a_real_day_raises_the_scorecards_alerts(shared_data: Path) -> None:
    """IoT-23's day (23,145 flows, a flow every few seconds): the replay's watermark moves seconds
    at a time, and its alerts are the scorecard run's, every one in an incident."""
    run = run_capture(
        "iot23_capture_34_1_mirai", shared_data, config=CFG, lateness=LATENESS, keep_events=True
    )
    replays = replay_capture(run, CFG, JOB)
    m = measure_capture(run, replays, run.sink.alerts)
    assert m["alerts_same_as_scorecard"] and m["alerts"] == len(run.sink.alerts) > 0
    assert m["late_events"] == 0 and m["alerts_in_an_incident"] == m["alerts"]
    assert m["classes"]["flood"]["incidents"] >= 1 and m["classes"]["beacon"]["incidents"] >= 1


def test_ssa_evaluate_capture_with_incidents_adds_them_to_the_scorecard(
    tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = write_scan_capture(tmp_path), tmp_path / "card.json"
    argv = ["evaluate", "--capture", str(path), "--format", "cicflowmeter", "--cidr", "10.1.0.0/16",
            "--name", "mine", "--incidents", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "incidents:" in text and "mine: 1,083 events" in text and "PortScan" in text
    card = json.loads(out.read_text())["captures"]["mine"]
    assert card["classes"]["PortScan"]["recall"] == 1.0  # the scorecard as without --incidents
    assert card["incidents"]["classes"]["PortScan"]["incidents"] == 1
    assert card["run"]["command"].endswith("--incidents")


def test_incidents_without_a_capture_is_one_line(
    tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    events.write_text("")
    truth.write_text("")
    assert main(["evaluate", str(events), str(truth), "--incidents"]) == 1
    assert capsys.readouterr().err.strip() == (
        "ssa evaluate: --incidents goes with --dataset or --capture (a labelled capture to replay)"
    )
