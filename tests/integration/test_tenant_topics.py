"""The detection job in secure mode on a real secure Kafka (issue 22): it reads every tenant's
topics by pattern as ``ssa-job``, takes the tenant from the topic, sends a payload that claims
another tenant to the DLQ with the reason, and otherwise finds exactly the alerts the plain mode
finds over the same events.

One broker for the module (SASL_SSL, SCRAM, ACLs: ``infra.services.KafkaService``), in a temporary
data directory on free ports, stopped at the end. The events are a simulated cloud (registry and
telemetry of three tenants) routed the way secure mode's feeders write them: each tenant's events
by its own feeder to ``ssa.<tenant>.telemetry.*``, the hypervisors' process and auth events by the
provider feeder to ``ssa.provider.telemetry.*``. The plain run reads the same events from the
shared ``ssa.telemetry.*`` topics (written and read by the admin principal, on the same broker).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from detectors.alert import Alert, decode_alert
from infra import secure
from infra.settings import PROJECT_ROOT, Settings
from ingest.producer import TelemetryProducer
from ingest.schema import AuthEvent, Event, FlowEvent, ProcessEvent
from streams.detect_fn import check_tenant
from streams.kafka_target import kafka_target
from tests.integration.test_kafka_secure import as_user, running_secure_broker

pytestmark = pytest.mark.integration

SEED, TENANTS, SECONDS, RATE = 5, 3, 120, 40
BURST = 60  # failed logins tenant A's feeder sends claiming tenant B (trusted, they alert on B)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Any]]:
    from ingest.simulator import SimConfig, mean_rate_slice_start_ms, simulate

    data = tmp_path_factory.mktemp("tenant-topics")
    start = mean_rate_slice_start_ms(int(time.time() * 1000) - 600_000, SECONDS * 1000)
    sim = simulate(
        SimConfig(seed=SEED, tenants=TENANTS, duration_s=SECONDS, events_per_s=RATE, start_ms=start)
    )
    sim.registry.dump(data / "tenants.yaml")
    with running_secure_broker(data, list(sim.registry.tenants)) as settings:
        yield settings, sim


def _route(event: Event, registry: Any) -> str | None:
    """Whose feeder writes ``event`` in secure mode: the provider's (hypervisor process and auth
    events it may carry: ``check_tenant``), else its tenant's; None for what no feeder has (flows
    of no tenant: the provider has no flow topic)."""
    hypervisor = isinstance(event, ProcessEvent | AuthEvent) and event.host in registry.hosts
    if hypervisor and not isinstance(check_tenant(event, secure.PROVIDER, registry), str):
        return secure.PROVIDER
    return event.tenant


def _send(settings: Settings, events: list[Event]) -> None:
    producer = TelemetryProducer(kafka_target(settings), "confluent", flush_timeout_s=60)
    for event in events:
        producer.send_event(event)
    producer.close()  # raises DeliveryFailed if any record was refused
    assert producer.counters.events == len(events) and not producer.counters.failed


def _run_job(settings: Settings, what: str, timeout_s: float = 900) -> None:
    """The job, bounded, in a process group of its own (its JVM too), killed if it overruns: a
    job that cannot reach Kafka restarts forever instead of ending."""
    t0 = time.monotonic()
    log = Path(settings.data_dir) / f"job-{what}.log"
    flink_logs = (
        Path(settings.data_dir) / f"flink-{what}"
    )  # the job's own Flink log, not PyFlink's shared one
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "--bounded", "--no-indexer", "--no-awareness"],
            cwd=PROJECT_ROOT, env={**os.environ, **settings.to_env(), "FLINK_LOG_DIR": str(flink_logs)}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"{what} job still running after {timeout_s:.0f} s (log: {log})")
    logs = [f.read_text(errors="replace") for f in flink_logs.glob("*.log")]
    restarts = sum(text.count("switched from state RUNNING to RESTARTING") for text in logs)
    print(
        f"[{what}] job exited {code} after {time.monotonic() - t0:.1f} s, {restarts} restarts (Flink log: {flink_logs})"
    )
    assert code == 0, log.read_text(errors="replace")[-3000:]


def _records(settings: Settings, topic: str) -> list[bytes]:
    from streams.demo import records_in_topic

    return [value for _, value in records_in_topic(secure.admin_settings(settings), topic)]


def _alerts(settings: Settings, topic: str) -> list[Alert]:
    return [decode_alert(value) for value in _records(settings, topic)]


def test_secure_job_takes_the_tenant_from_the_topic(cloud: tuple[Settings, Any]) -> None:
    from detectors.config import DetectorConfig
    from detectors.evaluation.evaluate import run_detectors

    settings, sim = cloud
    registry = sim.registry
    a, b = list(registry.tenants)[:2]
    events = sorted(sim.events(), key=lambda e: (e.ts, e.id))
    routes: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        owner = _route(event, registry)
        if owner is not None:
            routes[owner].append(event)
    honest = [e for feed in routes.values() for e in feed]
    assert routes[secure.PROVIDER] and all(routes[t] for t in registry.tenants)
    # Tenant A's feeder writes, on its own topic, failed logins that claim to be tenant B's.
    t0 = min(e.ts for e in honest)
    burst = [
        AuthEvent(id=f"claim-{i}", ts=t0 + 1000 + 500 * i, source="sshd", tenant=b, host=None, user="root",
                  result="failure", src_ip="10.66.6.6", service="sshd")
        for i in range(BURST)
    ]  # fmt: skip
    burst_ids = {e.id for e in burst}
    # ... and its own process events on a host it names after tenant B: their record key is B's
    # (``event_key``: the host of a process event), which must not put them into B's key.
    keyed = [
        ProcessEvent(id=f"keyed-{i}", ts=t0 + 2000 + 500 * i, source="auditd", tenant=a, host=b,
                     exe="/usr/bin/true", syscall="execve")
        for i in range(10)
    ]  # fmt: skip
    honest = sorted([*honest, *keyed], key=lambda e: (e.ts, e.id))
    routes[a] = sorted([*routes[a], *keyed], key=lambda e: (e.ts, e.id))
    # Trusted, they would be an alert on B: the check below can fail.
    config = DetectorConfig.default()
    trusted, _, _ = run_detectors(
        iter(sorted([*honest, *burst], key=lambda e: (e.ts, e.id))), registry, config
    )
    assert any(x.tenant == b and burst_ids & set(x.evidence["event_ids"]) for x in trusted)

    # Plain mode: the same honest events on the shared topics, payload tenants trusted.
    admin = secure.admin_settings(settings)
    plain = admin.with_overrides(
        **{f"topic_{n}": f"ssa.plain.{n}" for n in ("alerts", "metrics", "dlq", "incidents", "threat", "warnings")},
        detect_group_id="plain-detect", checkpoint_dir=str(Path(settings.data_dir) / "plain-checkpoints"),
        alert_id_key_file=str(secure.ensure_alert_id_key(settings)),  # the secure job's key: comparable ids
    )  # fmt: skip
    from infra.bootstrap import ensure_topics

    ensure_topics(plain)
    _send(plain, honest)
    # Secure mode: each feeder on its own topics, the burst among tenant A's events.
    for owner, feed in routes.items():
        extra: list[Event] = list(burst) if owner == a else []
        _send(
            as_user(settings, secure.feeder_user(owner)), sorted([*feed, *extra], key=lambda e: (e.ts, e.id))
        )

    _run_job(plain, "plain")
    job = as_user(settings, secure.JOB_USER).with_overrides(
        tenants_file=settings.tenants_file, snooze_file=settings.snooze_file,
        checkpoint_dir=str(Path(settings.data_dir) / "secure-checkpoints"), detector_config_file="",
    )  # fmt: skip
    assert job.tenant_topics and job.kafka_sasl_username == secure.JOB_USER
    assert job.alert_id_key_file == plain.alert_id_key_file  # provisioning gave the job its key
    _run_job(job, "secure")

    plain_alerts = _alerts(settings, plain.topic_alerts)
    secure_alerts = _alerts(settings, job.topic_alerts)
    print(
        f"[tenant-topics] {len(honest):,} events; alert records (distinct ids): plain {len(plain_alerts)} "
        f"({len({x.alert_id for x in plain_alerts})}), secure {len(secure_alerts)} "
        f"({len({x.alert_id for x in secure_alerts})})"
    )
    assert len({x.alert_id for x in plain_alerts}) >= 10  # not a vacuous comparison
    # The same alerts as the plain mode over the same events: the burst made none. Compared as
    # sets: the sinks are at-least-once (a record may repeat, with the same id).
    assert {x.alert_id for x in secure_alerts} == {x.alert_id for x in plain_alerts}
    assert not [x for x in secure_alerts if burst_ids & set(x.evidence.get("event_ids", ()))]
    # Keyed: no id is the unkeyed hash a tenant could compute from a guess of the other side; the
    # same alerts hashed with the key are the job's.
    from detectors.alert import make_alert_id
    from streams.detect_fn import alert_id_secret

    secure_ids = {x.alert_id for x in secure_alerts}
    assert not secure_ids & {x.alert_id for x in trusted}
    secret = alert_id_secret(job.alert_id_key_file)
    rekeyed = {make_alert_id(x.detector, x.entity, x.evidence["window_start"], x.evidence["window_end"], x.tenant,
                             secret) for x in trusted}  # fmt: skip
    assert len(rekeyed & secure_ids) >= 10

    # Each claiming event is in the DLQ with the reason; nothing honest is.
    dlq = [msgspec.json.decode(v) for v in _records(settings, job.topic_dlq)]
    mismatches = {r["reason"] for r in dlq if r["reason"].startswith("tenant mismatch")}
    assert mismatches == {
        f"tenant mismatch: topic of tenant {a}, payload says {b} (event {e.id}, topic ssa.{a}.telemetry.auth)"
        for e in burst
    }
    assert all(r["source"] == "detect" for r in dlq if r["reason"].startswith("tenant mismatch"))
    # Every key of the secure job is its topic's tenant's: A's events keyed as B's stay in A's.
    records = [msgspec.json.decode(v) for v in _records(settings, job.topic_metrics)]
    keys = {(r.get("tenant"), r["key"]) for r in records if "key" in r}
    assert (a, f"{a}/{b}") in keys
    assert all(key.split("/", 1)[0] in (tenant, secure.PROVIDER) for tenant, key in keys), sorted(keys)
    assert not [r for r in _records(settings, plain.topic_dlq) if b"tenant mismatch" in r]


def test_flows_of_no_tenant_have_no_feeder() -> None:
    """The routing above leaves out only flows of no tenant (the provider has no flow topic)."""
    flow = FlowEvent(id="f", ts=1, source="vpcflow", tenant=None, src_ip="1.1.1.1", dst_ip="2.2.2.2")
    assert _route(flow, type("R", (), {"hosts": {}})()) is None
