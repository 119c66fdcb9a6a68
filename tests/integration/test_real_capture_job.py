"""A real capture through the real stack, as a user replays one: IoT-23's Mirai day (a Zeek conn log
of 2018-12) parsed by ``ssa ingest``'s pipeline into Kafka, the PyFlink job, the indexer and
Elasticsearch. Two things this checks that the simulator cannot:

- the job's alerts are the offline scorecard's (``detectors.evaluation.real.run_capture``) on real
  records, written when their connections ended and read in the job's order (``detectors.job_order``);
  fed in file order, the offline engine missed one of the job's beacons;
- alerts and incidents years old still reach Elasticsearch: the job stamps its output records with
  event time, and the output topics deleted them by age (7 days) before the indexer read them, so a
  replayed capture ended with nothing searchable. They are stamped on append now
  (``infra.bootstrap.APPEND_TIME``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import Settings

pytestmark = pytest.mark.integration

_CAPTURE = "iot23_capture_34_1_mirai"


def test_a_replayed_real_capture_gives_the_scorecards_alerts_in_elasticsearch(
    stack: Settings, shared_data: Path
) -> None:
    from detectors.config import DetectorConfig
    from detectors.engine import Lateness
    from detectors.evaluation.captures import CAPTURES
    from detectors.evaluation.real import run_capture
    from infra.bootstrap import ensure_topics
    from infra.clients import es_client
    from ingest.pipeline import run_ingest
    from ingest.tenants import TenantRegistry
    from streams.demo import alert_ids_in_topic, demo_settings, fetch_alerts, new_run_id
    from streams.kafka_target import telemetry_producer
    from streams.runner import run_bounded

    capture = CAPTURES[_CAPTURE]
    (path,) = capture.files(shared_data)
    s = demo_settings(stack, new_run_id(stack))
    registry = TenantRegistry.from_dict({"tenants": [{"id": capture.name, "cidrs": list(capture.cidrs)}]})
    registry.dump(s.tenants_file)
    ensure_topics(s)
    producer = telemetry_producer(s)
    try:
        summary = run_ingest(path, capture.fmt, registry=registry, sink=producer, timezone=capture.timezone)
        producer.flush()
    finally:
        producer.close()
    assert summary.parsed == 23_145 and summary.dlq == 0

    assert run_bounded(s, say=print, indexer_idle_exit_s=5.0) == 0
    in_topic = alert_ids_in_topic(s, s.topic_alerts)
    job = {a.alert_id: a for a in fetch_alerts(s, in_topic)}
    assert set(job) == in_topic  # every alert the job wrote is searchable

    lateness = Lateness.for_flows(s.out_of_orderness_ms, s.flow_export_delay_ms)
    offline = run_capture(
        capture, shared_data, config=DetectorConfig.load_or_default(s.detector_config_file), lateness=lateness
    ).sink.alerts
    # The anomaly models are compared apart (test_pipeline_e2e): here they score nothing, one
    # device's day is below their baseline.
    rules = {a.alert_id for a in offline if not a.detector.startswith("anomaly.")}
    assert {i for i, a in job.items() if not a.detector.startswith("anomaly.")} == rules
    assert {job[i].category for i in rules} == {"command_and_control", "dos"}
    assert all(job[i].entity.id == "192.168.1.195" for i in rules)  # the infected device

    es = es_client(s)
    try:
        incidents = f"{s.index_incidents_prefix}*"
        es.indices.refresh(index=incidents)
        found = es.search(index=incidents, size=100, query={"match_all": {}})["hits"]["hits"]
    finally:
        es.close()
    named = {i for hit in found for i in hit["_source"]["alert_ids"]}
    assert rules <= named  # each alert is in an incident, searchable too
