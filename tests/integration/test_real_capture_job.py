"""Real captures through the real stack, as a user replays one: IoT-23's Mirai day (a Zeek conn log
of 2018-12) and RITA's 72 hours of a public server, parsed by ``ssa ingest``'s pipeline into Kafka,
the PyFlink job, the indexer and Elasticsearch. Three things this checks that the simulator cannot:

- the job's alerts are the offline scorecard's (``detectors.evaluation.real.run_capture``) on real
  records, written when their connections ended and read in the job's order (``detectors.job_order``);
  fed in file order, the offline engine missed one of the job's beacons;
- alerts and incidents years old still reach Elasticsearch: the job stamps its output records with
  event time, and the output topics deleted them by age (7 days) before the indexer read them, so a
  replayed capture ended with nothing searchable. They are stamped on append now
  (``infra.bootstrap.APPEND_TIME``);
- records later than the flow allowance go to the DLQ, never into an alert, in the job as offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.settings import Settings

pytestmark = pytest.mark.integration

# capture, events parsed, the categories of its alerts
_CAPTURES = [
    ("iot23_capture_34_1_mirai", 23_145, {"command_and_control", "dos"}),
    # 72 hourly files of a public server; 186 of its records come later than the flow allowance
    ("rita_missing_host_beacon", 105_918, {"command_and_control", "brute_force", "port_scan"}),
]


@pytest.mark.parametrize(("name", "events", "categories"), _CAPTURES, ids=[c[0] for c in _CAPTURES])
def test_a_replayed_real_capture_gives_the_scorecards_alerts_in_elasticsearch(
    stack: Settings, shared_data: Path, name: str, events: int, categories: set[str]
) -> None:
    from detectors.config import DetectorConfig
    from detectors.engine import Lateness
    from detectors.evaluation.captures import CAPTURES
    from detectors.evaluation.real import run_capture
    from infra.bootstrap import ensure_topics
    from infra.clients import es_client
    from ingest.pipeline import run_ingest
    from ingest.tenants import TenantRegistry
    from streams.demo import alert_ids_in_topic, demo_settings, fetch_alerts, new_run_id, records_in_topic
    from streams.kafka_target import telemetry_producer
    from streams.runner import run_bounded

    capture = CAPTURES[name]
    s = demo_settings(stack, new_run_id(stack))
    registry = TenantRegistry.from_dict({"tenants": [{"id": capture.name, "cidrs": list(capture.cidrs)}]})
    registry.dump(s.tenants_file)
    ensure_topics(s)
    producer = telemetry_producer(s)
    parsed = 0
    try:
        for path in capture.files(shared_data):  # as `ssa ingest` reads them, one after the other
            summary = run_ingest(
                path, capture.fmt, registry=registry, sink=producer, timezone=capture.timezone
            )
            parsed += summary.parsed
            assert summary.dlq == 0
        producer.flush()
    finally:
        producer.close()
    assert parsed == events

    assert run_bounded(s, say=print, indexer_idle_exit_s=5.0) == 0
    in_topic = alert_ids_in_topic(s, s.topic_alerts)
    job = {a.alert_id: a for a in fetch_alerts(s, in_topic)}
    assert set(job) == in_topic  # every alert the job wrote is searchable

    lateness = Lateness.for_flows(s.out_of_orderness_ms, s.flow_export_delay_ms)
    run = run_capture(
        capture, shared_data, config=DetectorConfig.load_or_default(s.detector_config_file), lateness=lateness
    )
    # The anomaly models are compared apart (test_pipeline_e2e): here they score nothing, one
    # device's or one server's days are below their baseline.
    rules = {a.alert_id for a in run.sink.alerts if not a.detector.startswith("anomaly.")}
    assert {i for i, a in job.items() if not a.detector.startswith("anomaly.")} == rules
    assert {job[i].category for i in rules} == categories

    # Late records: the job sends them to the DLQ by Flink's watermark, which its source moves
    # periodically, so it finds at most those the offline engine finds by each record (and
    # whatever it lets through, its engine judges late again: the alerts above are the same).
    late_offline = run.engines[0].stats()["late_events"]
    late_job = sum(json.loads(value)["source"] == "late" for _ts, value in records_in_topic(s, s.topic_dlq))
    assert late_job <= late_offline and (late_job > 0) == (late_offline > 0)

    from elasticsearch.helpers import scan

    es = es_client(s)
    try:
        incidents = f"{s.index_incidents_prefix}*"
        es.indices.refresh(index=incidents)
        named = {
            i
            for hit in scan(es, index=incidents, query={"query": {"match_all": {}}})
            for i in hit["_source"]["alert_ids"]
        }
    finally:
        es.close()
    # Each alert is in an incident, searchable too; context alerts (port_scan.internet_probes) only
    # join an incident that is open when they arrive, and open none.
    context = {"port_scan.internet_probes"}
    assert {i for i in rules if job[i].detector not in context} <= named
