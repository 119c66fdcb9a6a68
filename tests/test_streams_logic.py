"""The job's pure parts without Flink: micro-batch detection, posture metrics, DLQ records,
Elasticsearch documents and the SQL it hands to Flink."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from detectors.alert import decode_alert, encode_alert
from infra.settings import Settings
from ingest.dlq import decode_dlq
from ingest.schema import FlowEvent, ProcessEvent, decode_event, encode_event
from ingest.simulator import SimConfig, simulate
from streams.detect_fn import MAX_PAYLOAD_BYTES, DetectionJobConfig, MicroBatchDetector, late_dlq
from streams.documents import alert_action, dlq_action, metrics_action
from streams.indexer import Indexer
from streams.posture import MAX_DISTINCT, PostureState
from streams.sql import batches_query, event_time_paths, kafka_properties, path_ddl, source_ddl


def _flow(i: int, ts: int, tenant: str = "t-a", dst: str = "198.51.100.7", port: int = 443) -> FlowEvent:
    return FlowEvent(id=f"f{i}", ts=ts, source="sim", tenant=tenant, src_ip="10.1.0.5", dst_ip=dst,
                     dst_port=port, bytes_out=100, bytes_in=50)  # fmt: skip


def test_bad_payloads_go_to_the_dlq_with_a_reason_and_good_ones_are_detected() -> None:
    logic = MicroBatchDetector(DetectionJobConfig())
    state = logic.new_state()
    good = encode_event(_flow(1, 1_700_000_000_000)).decode()
    payloads: list[bytes | str] = [
        good,
        b'{"kind": "flow", "id": 3',
        b'{"kind":"nope","id":"x","ts":1,"source":"s"}',
        b"\xff\xfe",
    ]
    alerts, dlq = logic.on_batch(state, "t-a", payloads)
    assert alerts == []
    assert [d["source"] for d in dlq] == ["detect", "detect", "detect"]
    assert all("not a canonical event" in d["reason"] for d in dlq)
    assert dlq[0]["raw"] == '{"kind": "flow", "id": 3'
    assert (dlq[2]["raw"], dlq[2]["encoding"]) == ("//4=", "base64")  # not UTF-8: kept as base64
    assert state.posture.minutes  # the good event was counted


def test_oversized_payloads_go_to_the_dlq_and_empty_ones_are_skipped() -> None:
    logic = MicroBatchDetector(DetectionJobConfig())
    state = logic.new_state()
    good = [encode_event(_flow(i, 1_700_000_000_000 + 10 * i)) for i in range(3)]
    huge = b"x" * (MAX_PAYLOAD_BYTES + 1)
    _, dlq = logic.on_batch(state, "t-a", [good[2], b"", huge, good[0], good[1]])
    assert [d["reason"] for d in dlq] == [f"payload over {MAX_PAYLOAD_BYTES} bytes in the detection job"]
    minute = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
    assert state.posture.minutes[minute][("t-a", "flow")].events == 3


def test_late_events_go_to_the_dlq_with_their_id_time_and_the_allowance_and_raw_bytes() -> None:
    event = _flow(7, 1_700_000_000_123)
    record = late_dlq(encode_event(event), 1_700_000_000_123, 5000)
    assert record["source"] == "late"
    assert record["reason"].startswith(
        "late sim event f7: its time 2023-11-14T22:13:20Z was behind the watermark"
    )
    assert (
        "out_of_orderness_ms, 5000 ms" in record["reason"] and "SSA_OUT_OF_ORDERNESS_MS" in record["reason"]
    )
    assert decode_event(record["raw"]) == event  # kept whole, to send again
    assert record["ts"] == record["time_ms"]
    garbage = late_dlq(b"\xff", 1_700_000_000_123, 5000)
    assert garbage["reason"].startswith("late record (not a canonical event)")
    assert (garbage["raw"], garbage["encoding"]) == ("/w==", "base64")


def test_key_state_pickles_without_the_shared_context_and_resumes_identically() -> None:
    sim = simulate(SimConfig(seed=3, tenants=3, vms_per_tenant=2, duration_s=120, events_per_s=50))
    events = sorted(sim.events(), key=lambda e: (e.ts, e.id))
    processes = [e for e in events if isinstance(e, ProcessEvent)]
    assert processes
    config = DetectionJobConfig()
    logic = MicroBatchDetector(config)
    logic.context.registry = sim.registry

    def run(split: int) -> list[str]:
        state = logic.new_state()
        out = []
        for chunk in (processes[:split], processes[split:]):
            payloads = [encode_event(e) for e in chunk]
            alerts, _ = logic.on_batch(state, "hv-01", payloads)
            out += [a.alert_id for a in alerts]
            logic.detach(state)
            state = pickle.loads(pickle.dumps(state))  # as Flink keyed state does
            logic.attach(state)
        alerts, _metrics = logic.on_watermark(state, "hv-01", 2**62)
        return sorted(out + [a.alert_id for a in alerts])

    assert run(len(processes) // 3) == run(2 * len(processes) // 3)


def test_posture_minutes_close_on_the_watermark_with_bounded_distinct_counts() -> None:
    posture = PostureState()
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    for i in range(MAX_DISTINCT + 100):
        posture.add(_flow(i, t0 + i % 59_000, dst=f"203.0.{i // 256}.{i % 256}", port=i))
    posture.add(_flow(99_999, t0 + 60_500))
    posture.count_alert("t-a", t0 + 10)
    assert posture.close(t0 + 59_999, "t-a") == []
    rows = posture.close(t0 + 60_000, "t-a")
    flows = next(r for r in rows if r["kind"] == "flow")
    assert flows["events"] == MAX_DISTINCT + 100
    assert flows["bytes"] == 150 * (MAX_DISTINCT + 100)
    assert flows["distinct_peers"] == MAX_DISTINCT and flows["distinct_dst_ports"] == MAX_DISTINCT
    assert next(r for r in rows if r["kind"] == "alert")["alerts"] == 1
    assert list(posture.minutes) == [t0 + 60_000]


def test_documents_have_deterministic_ids_and_daily_indices() -> None:
    logic = MicroBatchDetector(DetectionJobConfig())
    state = logic.new_state()
    t = 1_764_000_000_000
    scan = [encode_event(_flow(i, t + i, dst="198.51.100.9", port=i)) for i in range(400)]
    logic.on_batch(state, "t-a", scan)
    alerts, _ = logic.on_watermark(state, "t-a", t + 3_600_000)
    assert alerts, "a 400-port sweep raises a port-scan alert"
    raw = encode_alert(alerts[0])
    a1 = alert_action(raw, "ssa-alerts-", lambda _t: "telecom")
    a2 = alert_action(raw, "ssa-alerts-", lambda _t: "telecom")
    assert (a1.id, a1.index, a1.op_type) == (a2.id, a2.index, "create") == (
        alerts[0].alert_id, "ssa-alerts-t-t-a.2025.11.24", "create")  # fmt: skip
    assert a1.source["industry"] == "telecom" and a1.source["ttd_ms"] == alerts[0].ts - alerts[0].first_seen
    m = msgspec.json.encode({"ts": t, "tenant": "t-a", "kind": "flow", "key": "t-a", "events": 3})
    assert metrics_action(m, "ssa-metrics-").id == metrics_action(m, "ssa-metrics-").id
    d = dlq_action("ssa-metrics-", "ssa.dlq", 1, 42, t + 5, b'{"source":"vpcflow","reason":"bad"}')
    assert (d.id, d.source["dlq"], d.source["source"], d.source["ts"] % 60_000) == (
        "dlq-ssa.dlq-1-42",
        1,
        "vpcflow",
        0,
    )
    assert decode_alert(raw) == alerts[0]


def test_indexer_routes_malformed_records_to_the_dlq_instead_of_dropping_them() -> None:
    s = Settings()
    idx = Indexer(s)
    rec = SimpleNamespace(topic=s.topic_alerts, partition=0, offset=7, timestamp=0, value=b"{not json")
    ok = SimpleNamespace(topic=s.topic_metrics, partition=0, offset=8, timestamp=0,
                         value=b'{"ts": 1764000000000, "tenant": "t", "kind": "flow"}')  # fmt: skip
    actions, bad = idx.actions_for([rec, ok])
    assert [a.index for a in actions] == ["ssa-metrics-t-t.2025.11.24"]
    assert len(bad) == 1 and bad[0][0] is rec and "could not read a ssa.alerts record" in bad[0][1]
    # What reaches the DLQ topic is a DlqRecord, as every other stage writes.
    sent: list[tuple[str, bytes]] = []
    idx._to_dlq(SimpleNamespace(send=lambda topic, value: sent.append((topic, value))), rec, bad[0][1])
    [(topic, value)] = sent
    record = decode_dlq(value)
    assert topic == s.topic_dlq and idx.stats.rejected == 1
    assert (record.source, record.raw, record.encoding, record.raw_len) == (
        s.topic_alerts,
        "{not json",
        "utf-8",
        9,
    )
    assert record.reason.endswith("(partition 0, offset 7)") and record.time_ms > 0


def test_lag_probe_failing_on_a_fresh_broker_is_retried_soon_and_reported_once_more_at_the_end(
    monkeypatch,
) -> None:
    import threading
    import time

    from kafka.errors import CoordinatorNotAvailableError

    import streams.indexer as indexer_module

    answers: list[Exception | dict[str, int]] = [
        CoordinatorNotAvailableError("loading"), CoordinatorNotAvailableError("loading"), {"t.flow": 5},
    ]  # fmt: skip

    def consumer_lag(_settings, group):
        assert group == "ssa-detect"
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    shipped: list[list] = []
    monkeypatch.setattr(indexer_module, "consumer_lag", consumer_lag)
    monkeypatch.setattr(indexer_module, "_LAG_FIRST_RETRY_S", 0.01)
    idx = Indexer(Settings(), lag_group_id="ssa-detect")
    monkeypatch.setattr(idx, "_bulk", lambda _es, actions: shipped.append(actions))
    finished = threading.Event()
    thread = idx._start_lag_reporter(finished)
    assert thread is not None
    for _ in range(200):  # the third probe, ~0.03 s in, not 15 s
        if shipped:
            break
        time.sleep(0.01)
    assert [[(a.source["topic"], a.source["consumer_lag"]) for a in batch] for batch in shipped] == [
        [("t.flow", 5)]
    ]
    finished.set()  # stopping: one last report, then the thread ends
    thread.join(5)
    assert not thread.is_alive()
    assert len(shipped) == 2


def test_lag_reporter_stops_at_once_when_kafka_is_unreachable(monkeypatch) -> None:
    # A probe against an unreachable broker takes 30 s; stopping must not start another one.
    import threading
    import time

    import streams.indexer as indexer_module

    calls: list[float] = []

    def consumer_lag(_settings, _group):
        calls.append(0.0)
        raise ConnectionError("Unable to bootstrap")

    monkeypatch.setattr(indexer_module, "consumer_lag", consumer_lag)
    monkeypatch.setattr(indexer_module, "_LAG_FIRST_RETRY_S", 30.0)
    idx = Indexer(Settings(), lag_group_id="ssa-detect")
    finished = threading.Event()
    thread = idx._start_lag_reporter(finished)
    assert thread is not None
    for _ in range(500):
        if calls:
            break
        time.sleep(0.01)
    finished.set()
    thread.join(5)
    assert not thread.is_alive() and len(calls) == 1


def test_sql_carries_security_options_and_refuses_odd_identifiers(tmp_path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("p'w\"d")
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="ssa", kafka_sasl_password_file=str(pw),
                 kafka_ssl_cafile="/etc/ca.pem")  # fmt: skip
    props = kafka_properties(s)
    assert props["properties.security.protocol"] == "SASL_SSL"
    assert 'password="p\'w\\"d"' in props["properties.sasl.jaas.config"]
    ddl = source_ddl(s, group_id="g")
    assert "'properties.sasl.jaas.config' = '" in ddl and "p''w" in ddl  # quotes doubled in SQL
    assert "ssa.telemetry.flow;ssa.telemetry.process;ssa.telemetry.audit;ssa.telemetry.auth" in ddl
    assert "rowtime - INTERVAL '0 00:00:02.000' DAY TO SECOND(3)" in ddl
    with pytest.raises(ValueError, match="identifier"):
        batches_query("telemetry; DROP TABLE x")


def test_partitions_are_aligned_within_a_drift_that_outlasts_the_idle_timeout() -> None:
    from infra.settings import SettingsError
    from streams.runner import check_timing

    ddl = source_ddl(Settings(watermark_max_drift_ms=45_000), group_id="g")
    assert "'scan.watermark.alignment.max-drift' = '45000 ms'" in ddl
    assert "'scan.watermark.alignment.group' = 'ssa-telemetry'" in ddl
    # a bounded replay is not aligned: a split finishing under an alignment pause fails the
    # source (FLINK-39728), and a bounded job that restarts never finishes (FLINK-31006)
    bounded = source_ddl(Settings(watermark_max_drift_ms=45_000), group_id="g", bounded=True)
    assert "'scan.bounded.mode' = 'latest-offset'" in bounded and "alignment" not in bounded
    check_timing(Settings(source_idle_timeout_ms=30_000, watermark_max_drift_ms=60_000))
    check_timing(Settings(flow_export_delay_ms=8_639_999_999))
    with pytest.raises(SettingsError, match="flow_export_delay_ms"):
        check_timing(Settings(flow_export_delay_ms=8_640_000_000))
    with pytest.raises(SettingsError, match="out_of_orderness_ms"):
        check_timing(Settings(out_of_orderness_ms=-1))
    with pytest.raises(SettingsError, match="must exceed source_idle_timeout_ms"):
        check_timing(Settings(source_idle_timeout_ms=60_000, watermark_max_drift_ms=60_000))


def test_mini_cluster_jvm_args_add_the_collector_and_compiler_directives_once() -> None:
    from streams.flink_env import JIT_DIRECTIVES, mini_cluster_jvm_args

    directives = f"-XX:+UnlockDiagnosticVMOptions -XX:CompilerDirectivesFile={JIT_DIRECTIVES}"
    ours = mini_cluster_jvm_args("")
    assert ours == f"-XX:+UseParallelGC {directives}"
    assert mini_cluster_jvm_args("-Xss2m") == f"-Xss2m {ours}"
    assert mini_cluster_jvm_args(ours) == ours  # a second environment in the same process
    users = "-XX:+UnlockDiagnosticVMOptions -XX:CompilerDirectivesFile=/etc/mine.json"
    assert mini_cluster_jvm_args(users) == f"{users} -XX:+UseParallelGC"
    # the user's own collector is kept; a flag that only looks like one is not a choice
    assert mini_cluster_jvm_args("-XX:+UseZGC") == f"-XX:+UseZGC {directives}"
    assert mini_cluster_jvm_args("-XX:+UseGCOverheadLimit") == f"-XX:+UseGCOverheadLimit {ours}"


def test_the_jvm_accepts_the_compiler_directives() -> None:
    """A directives file the JVM cannot load stops the mini-cluster from starting at all."""
    import shutil
    import subprocess

    from streams.flink_env import JIT_DIRECTIVES

    java = shutil.which("java")
    assert java is not None, "java is needed to run the stack (make setup checks for it)"
    done = subprocess.run(
        [java, "-XX:+UnlockDiagnosticVMOptions", f"-XX:CompilerDirectivesFile={JIT_DIRECTIVES}",
         "-XX:+CompilerDirectivesPrint", "-version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "1 compiler directives added" in out
    assert "org/apache/calcite/*.*" in out and "org/codehaus/*.*" in out


def test_flows_have_a_source_of_their_own_with_the_exporters_delay() -> None:
    s = Settings(out_of_orderness_ms=1500, flow_export_delay_ms=900_000, watermark_max_drift_ms=45_000)
    others, flows = event_time_paths(s)
    assert (others.kinds, flows.kinds) == (("process", "audit", "auth"), ("flow",))
    other_ddl = path_ddl(s, others, group_id="g")
    flow_ddl = path_ddl(s, flows, group_id="g")
    assert "CREATE TEMPORARY TABLE telemetry (" in other_ddl
    assert "CREATE TEMPORARY TABLE telemetry_flow (" in flow_ddl
    assert "'topic' = 'ssa.telemetry.process;ssa.telemetry.audit;ssa.telemetry.auth'" in other_ddl
    assert "'topic' = 'ssa.telemetry.flow'" in flow_ddl
    # days to seconds: SQL's seconds alone hold 2 digits, less than an exporter's delay
    assert "rowtime - INTERVAL '0 00:00:01.500' DAY TO SECOND(3)" in other_ddl
    assert "rowtime - INTERVAL '0 00:15:00.000' DAY TO SECOND(3)" in flow_ddl
    day = s.with_overrides(flow_export_delay_ms=90_061_001)
    long = path_ddl(day, event_time_paths(day)[1], group_id="g")
    assert "rowtime - INTERVAL '1 01:01:01.001' DAY TO SECOND(3)" in long
    # aligned apart: together, the flows' watermark 15 minutes behind would pause every other split
    assert "'scan.watermark.alignment.group' = 'ssa-telemetry'" in other_ddl
    assert "'scan.watermark.alignment.group' = 'ssa-telemetry-flow'" in flow_ddl
    assert all("'scan.watermark.alignment.max-drift' = '45000 ms'" in d for d in (other_ddl, flow_ddl))
    assert "scan.bounded.mode" in path_ddl(s, flows, group_id="g", bounded=True)
    assert "scan.bounded.mode" not in other_ddl
    # the other kinds keep the operator uids of the job before the split; flows get new ones
    assert (others.uid_suffix, flows.uid_suffix) == ("", "-flow")
    # both paths are keyed by tenant: the flow path's per-minute alert counts are rows of their own
    assert (others.posture_key_suffix, flows.posture_key_suffix) == ("", "#flow")
    logic = MicroBatchDetector(DetectionJobConfig(posture_key_suffix=flows.posture_key_suffix))
    state = logic.new_state()
    logic.on_batch(state, "t-a", [encode_event(_flow(1, 1_700_000_000_000))])
    _alerts, rows = logic.on_watermark(state, "t-a", 1_700_000_100_000)
    assert [(r["kind"], r["key"]) for r in rows] == [("flow", "t-a#flow")]
    with pytest.raises(ValueError, match="identifier"):
        source_ddl(s, group_id="g", table="x; DROP TABLE y")


def test_the_flow_export_delay_is_a_setting_and_reaches_the_engine_and_the_late_reason() -> None:
    from infra.settings import load_settings
    from streams.runner import job_config

    s = load_settings({"SSA_FLOW_EXPORT_DELAY_MS": "900000", "SSA_OUT_OF_ORDERNESS_MS": "3000"})
    assert (s.flow_export_delay_ms, Settings().flow_export_delay_ms) == (900_000, 360_000)
    logic = MicroBatchDetector(job_config(s))
    engine = logic.new_state().engine
    assert (engine.lateness.allowance("flow"), engine.lateness.allowance("auth")) == (900_000, 3000)
    record = late_dlq(
        encode_event(_flow(8, 1_700_000_000_000)), 1_700_000_000_000, 900_000, "flow_export_delay_ms"
    )
    assert "flow_export_delay_ms, 900000 ms" in record["reason"]
    assert "SSA_FLOW_EXPORT_DELAY_MS" in record["reason"]


def test_a_checkpoint_is_resumed_only_by_a_job_with_the_same_sources(tmp_path) -> None:
    from streams.runner import TOPOLOGY_FILE, restorable_checkpoint, topology

    paths = event_time_paths(Settings())
    assert restorable_checkpoint(str(tmp_path), paths) is None  # nothing there
    chk = tmp_path / "0123abcd" / "chk-4"
    chk.mkdir(parents=True)
    (chk / "_metadata").write_bytes(b"x")
    said: list[str] = []
    # written by the job of one source over all four topics: its split state cannot be reused
    assert restorable_checkpoint(str(tmp_path), paths, said.append) is None
    assert len(said) == 1 and str(chk) in said[0]
    (chk.parent / TOPOLOGY_FILE).write_text(topology(paths), encoding="utf-8")
    assert restorable_checkpoint(str(tmp_path), paths, said.append) == chk
    assert topology(paths) == "telemetry=process,audit,auth;telemetry_flow=flow"


def test_the_newest_checkpoint_is_not_a_subsumed_one_half_deleted_by_a_kill(tmp_path: Path) -> None:
    """What a CI run met: killed while Flink deleted chk-2's files after chk-3 completed, the job
    left chk-2's ``_metadata`` in a folder the deletion had just touched; resumed from chk-2, the
    job failed on every restart for want of its state files."""
    import os

    from streams.flink_env import latest_checkpoint

    def checkpoint(job: str, n: int, written_s: float) -> Path:
        folder = tmp_path / job / f"chk-{n}"
        folder.mkdir(parents=True)
        (folder / "_metadata").write_bytes(b"x")
        os.utime(folder / "_metadata", (written_s, written_s))
        os.utime(folder, (written_s, written_s))
        return folder

    assert latest_checkpoint(str(tmp_path)) is None
    older_job = checkpoint("0123abcd", 9, 1_000)
    subsumed = checkpoint("4567ef01", 2, 2_000)
    newest = checkpoint("4567ef01", 3, 2_010)
    os.utime(subsumed, (2_020, 2_020))  # a state file of chk-2 deleted after chk-3 completed
    assert latest_checkpoint(str(tmp_path)) == newest
    os.utime(older_job / "_metadata", (3_000, 3_000))  # another job wrote the last one
    assert latest_checkpoint(str(tmp_path)) == older_job
    (tmp_path / "4567ef01" / "chk-x").mkdir()
    (tmp_path / "4567ef01" / "chk-x" / "_metadata").write_bytes(b"x")  # not Flink's: never chosen
    assert latest_checkpoint(str(tmp_path)) == older_job


def test_a_checkpoint_of_another_detector_configuration_is_resumed_with_one_line_saying_so(tmp_path) -> None:
    from streams.runner import (
        DETECTORS_FILE,
        TOPOLOGY_FILE,
        detector_config_digest,
        restorable_checkpoint,
        topology,
    )

    paths = event_time_paths(Settings())
    chk = tmp_path / "0123abcd" / "chk-4"
    chk.mkdir(parents=True)
    (chk / "_metadata").write_bytes(b"x")
    (chk.parent / TOPOLOGY_FILE).write_text(topology(paths), encoding="utf-8")
    ours = detector_config_digest(Settings())
    said: list[str] = []
    assert restorable_checkpoint(str(tmp_path), paths, said.append, ours) == chk
    assert said == []  # a checkpoint written before the digest was recorded: nothing to compare
    (chk.parent / DETECTORS_FILE).write_text(ours, encoding="utf-8")
    assert restorable_checkpoint(str(tmp_path), paths, said.append, ours) == chk
    assert said == []
    site = tmp_path / "site.yaml"
    site.write_text("detectors:\n  c2.beacon:\n    params:\n      allowed_ports: [8443]\n", encoding="utf-8")
    changed = detector_config_digest(Settings(detector_config_file=str(site)))
    assert changed != ours
    assert restorable_checkpoint(str(tmp_path), paths, said.append, changed) == chk
    assert len(said) == 1 and str(chk) in said[0] and "--no-restore" in said[0] and "\n" not in said[0]


def test_a_key_restored_under_a_changed_configuration_moves_to_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = MicroBatchDetector(DetectionJobConfig())
    state = before.new_state()
    flows = [encode_event(_flow(i, 1_700_000_000_000 + 60_000 * i, dst="93.184.216.34")) for i in range(20)]
    before.on_batch(state, "t-a", flows)
    before.detach(state)
    snapshot = pickle.dumps(state)
    site = tmp_path / "site.yaml"
    site.write_text("detectors:\n  c2.beacon:\n    params:\n      min_connections: 500\n", encoding="utf-8")
    after = MicroBatchDetector(DetectionJobConfig(detector_config_file=str(site)))
    assert after.config_digest != before.config_digest
    restored = pickle.loads(snapshot)
    with caplog.at_level("WARNING", logger="streams.detect_fn"):
        after.attach(restored)
    beacon = next(d for d in restored.engine.detectors if d.meta.id == "c2.beacon")
    assert beacon.min_conns == 500  # the new setting, on a key that began under the old one
    assert beacon.state_size() == 1  # ... with the pair it had seen
    assert restored.config_digest == after.config_digest
    assert restored.engine.stats()["events"] == 20
    assert len(caplog.records) == 1 and "keeping what their detectors learned" in caplog.records[0].message
    engine = restored.engine
    after.attach(restored)  # after a snapshot: nothing to move
    assert restored.engine is engine and after.reconfigured_keys == 1
    # a checkpoint from before the digest was kept moves as well
    older = pickle.loads(snapshot)
    del older.__dict__["config_digest"]
    older = pickle.loads(pickle.dumps(older))
    assert older.config_digest == ""
    after.attach(older)
    assert older.config_digest == after.config_digest and after.reconfigured_keys == 2


def test_only_the_newest_version_of_an_incident_is_written() -> None:
    """Versions of one incident reach the indexer in no fixed order (the incidents topic's records
    have no key, so they spread over partitions): an older one must never overwrite a newer one."""
    from streams.documents import Action
    from streams.indexer import newest_incident_updates

    def update(doc_id: str, version: int, index: str = "ssa-incidents-2026.12.03") -> Action:
        return Action(index, doc_id, {"doc": {"incident_id": doc_id, "version": version}, "doc_as_upsert": True},
                      op_type="update")  # fmt: skip

    alert = Action("ssa-alerts-2026.12.03", "a1", {"alert_id": "a1"}, op_type="create")
    batch = [update("i1", 3), alert, update("i1", 5), update("i1", 4), update("i2", 1), update("i3", 2)]
    kept = newest_incident_updates(batch, "ssa-incidents-", {("ssa-incidents-2026.12.03", "i3"): 2})
    assert [(a.id, a.source.get("doc", {}).get("version")) for a in kept] == [
        ("a1", None),
        ("i1", 5),
        ("i2", 1),
    ]
    # A stored newer version wins over the whole batch; an equal one (a replay) is not rewritten.
    stored = {("ssa-incidents-2026.12.03", "i1"): 6, ("ssa-incidents-2026.12.03", "i2"): 1}
    assert [a.id for a in newest_incident_updates(batch, "ssa-incidents-", stored)] == ["a1", "i3"]


def test_a_retired_id_reaches_a_stored_soc_document_and_an_older_soc_document_is_refused() -> None:
    """A merged incident id of a tenant's index is retired in the ``soc`` index only where a
    document of it is stored there; a ``soc`` document older than its tenant's is refused (a killed
    attempt's write read after the restored attempt's retirement)."""
    import json

    from detectors.samples import samples_registry
    from streams.documents import awareness_actions
    from streams.indexer import newest_incident_updates

    registry = samples_registry()
    first = 1_796_000_000_000
    stale = {"incident_id": "r1", "tenant": "t-beta", "first_seen": first, "version": 5, "status": "open",
             "other_tenants": ["t-acme"]}  # fmt: skip
    retired = {"incident_id": "r1", "tenant": "t-beta", "first_seen": first, "version": 9, "status": "closed",
               "close_reason": "merged", "merged_into": "r0"}  # fmt: skip
    soc, copy = awareness_actions(json.dumps(stale).encode(), "incidents", "i-", registry)
    tenant, in_soc = awareness_actions(json.dumps(retired).encode(), "incidents", "i-", registry)
    assert (tenant.index, in_soc.index) == (copy.index, soc.index) and in_soc.only_if_stored
    assert "doc_as_upsert" not in in_soc.source and not tenant.only_if_stored
    # Retired with nothing in the soc index: only the tenant's document.
    assert newest_incident_updates([tenant, in_soc], "i-", {}) == [tenant]
    # ... a soc document stored: closed there too.
    assert newest_incident_updates([tenant, in_soc], "i-", {(soc.index, "r1"): 5}) == [tenant, in_soc]
    # The stale soc document after the retirement, stored or in the same batch: refused.
    assert newest_incident_updates([soc, copy], "i-", {(copy.index, "r1"): 9}) == []
    assert newest_incident_updates([tenant, in_soc, soc, copy], "i-", {}) == [tenant]
    # Not stale (its tenant's document older): written, as any turn to cross-tenant.
    assert newest_incident_updates([soc, copy], "i-", {(copy.index, "r1"): 4}) == [soc, copy]


def test_an_incident_turning_cross_tenant_keeps_the_analysts_fields_in_its_soc_document() -> None:
    """Acknowledged on its tenant's document, then naming another tenant: the SOC's new document
    takes the acknowledgement and its history, not the job's fields; a stored one is left alone."""
    import json

    from awareness.incidents import ANALYST_FIELDS
    from detectors.samples import samples_registry
    from streams.documents import awareness_actions
    from streams.indexer import adopt_analyst_fields

    registry = samples_registry()
    beta, acme = "t-beta", "t-acme"
    doc = {"incident_id": "i9", "tenant": beta, "first_seen": 1_796_000_000_000, "last_seen": 1_796_000_060_000,
           "version": 2, "status": "open", "title": f"VM vm-beta-01 of tenant {beta}: escape by tenant {acme}",
           "other_tenants": [acme]}  # fmt: skip
    soc, copy = awareness_actions(json.dumps(doc).encode(), "incidents", "ssa-incidents-", registry)
    assert soc.index == "ssa-incidents-soc.2026.11.30" and soc.adopt_from == copy.index
    assert copy.index == "ssa-incidents-t-t-beta.2026.11.30" and copy.adopt_from is None
    history = [{"status": "acknowledged", "by": "soc-1", "at": 1_796_000_030_000, "reason": ""}]
    held = {(copy.index, "i9"): {"workflow": "acknowledged", "workflow_history": history, "version": 1}}
    out = adopt_analyst_fields([soc, copy], {}, held)
    taken = out[0].source["doc"]
    assert taken["workflow"] == "acknowledged" and taken["workflow_history"] == history
    assert taken["version"] == 2 and taken["other_tenants"] == [acme]  # the job's fields stay the job's
    assert set(taken) - set(soc.source["doc"]) <= set(ANALYST_FIELDS)
    assert out[1] is copy and out[0].source["doc_as_upsert"] is True
    # The soc document already written: its own workflow (the SOC's later changes) is kept.
    assert adopt_analyst_fields([soc, copy], {(soc.index, "i9"): 2}, held) == [soc, copy]
    # Nothing held on the tenant's document: nothing to take.
    assert adopt_analyst_fields([soc, copy], {}, {}) == [soc, copy]


def test_a_threat_level_is_versioned_final_over_provisional() -> None:
    import json

    from streams.documents import awareness_action

    doc = {"kind": "threat", "doc_id": "t-a-1", "tenant": "t-a", "ts": 1_796_000_040_000, "level": "red"}
    final = awareness_action(json.dumps(doc).encode(), "threat", "ssa-threat-")
    provisional = awareness_action(json.dumps({**doc, "provisional": True}).encode(), "threat", "ssa-threat-")
    assert (final.id, final.version, provisional.version) == ("t-a-1", 2, 1)
    assert awareness_action(json.dumps({**doc, "warning_id": "w"}).encode(), "warnings", "w-").version is None


def test_a_later_attempt_of_the_awareness_stage_outranks_every_version_of_an_earlier_one() -> None:
    from streams.awareness_fn import ATTEMPT_VERSIONS, attempt_version_base

    earlier, later = attempt_version_base(1_780_000_000.9), attempt_version_base(1_780_000_001.0)
    assert earlier + ATTEMPT_VERSIONS - 1 < later + 0
    assert later + ATTEMPT_VERSIONS < 2**63  # Elasticsearch's external versions are longs
