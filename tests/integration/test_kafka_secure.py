"""Kafka in secure mode on a real broker (issue 22): SASL_SSL with SCRAM-SHA-512, the
StandardAuthorizer and the ACLs of ``ssa tenants provision``.

The module starts its own broker through the project's launcher (``infra.services.KafkaService``)
in a temporary data directory on free ports, so it never touches a running stack, and stops it
at the end. Tests run in file order: the last one revokes tenant A.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import secure
from infra.clients import kafka_config
from infra.services import KafkaService
from infra.settings import Settings, load_settings
from ingest.producer import DeliveryFailed, KafkaUnavailable, TelemetryProducer
from ingest.schema import AuthEvent
from streams.kafka_target import kafka_target

pytestmark = pytest.mark.integration

A, B = "t-a", "t-b"
RESERVED = {9092, 9093, 9200, 9300, 19092, 19200}


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED:
            return port


def secure_broker_settings(data: Path) -> Settings:
    """A secure broker of its own in ``data`` on free ports, for a job: the registry
    (``tenants.yaml``), snoozes and checkpoints in ``data`` too, the default detector config."""
    port, controller = _free_port(), _free_port()
    return load_settings({}).with_overrides(
        data_dir=str(data), kafka_port=port, kafka_controller_port=controller,
        kafka_bootstrap=f"127.0.0.1:{port}", kafka_local_security="sasl_ssl",
        tenants_file=str(data / "tenants.yaml"), snooze_file=str(data / "snoozes.yaml"),
        checkpoint_dir=str(data / "checkpoints"), detector_config_file="",
    )  # fmt: skip


@contextlib.contextmanager
def running_secure_broker(data: Path, tenants: list[str], **provision: Any) -> Iterator[Settings]:
    """``secure_broker_settings``'s broker, up with what ``ssa up --secure`` creates and the tenants
    provisioned as ``ssa tenants provision`` does; stopped at the end."""
    from infra.bootstrap import ensure_topics

    settings = secure_broker_settings(data)
    svc = KafkaService(settings)
    svc.launch()
    try:
        svc.proc.wait_until(svc.healthy, 180, "healthy")
        ensure_topics(secure.admin_settings(settings))
        secure.provision(settings, tenants, say=lambda line: print(f"[secure] {line}"), **provision)
        yield settings
    finally:
        svc.proc.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data = tmp_path_factory.mktemp("secure-kafka")
    port, controller = _free_port(), _free_port()
    settings = load_settings({}).with_overrides(
        data_dir=str(data),
        kafka_port=port,
        kafka_controller_port=controller,
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_local_security="sasl_ssl",
        tenants_file=str(data / "none.yaml"),
    )
    svc = KafkaService(settings)
    t0 = time.monotonic()
    svc.launch()
    try:
        svc.proc.wait_until(svc.healthy, 180, "healthy")
        print(f"[secure] broker healthy after {time.monotonic() - t0:.1f} s")
        secure.provision(settings, [A, B], say=lambda line: print(f"[secure] {line}"))
        yield settings
    finally:
        svc.proc.stop()


def as_user(settings: Settings, user: str, **overrides: Any) -> Settings:
    """The settings the provisioned ``<user>.yaml`` file gives, plus overrides."""
    env = {"SSA_SETTINGS_FILE": str(secure.principal_settings_file(settings, user))}
    return load_settings(env).with_overrides(data_dir=settings.data_dir, **overrides)


def _produce(settings: Settings, topic: str, timeout_s: float = 20.0) -> Any:
    """Produce one record to ``topic``; returns its delivery error (None when written)."""
    from confluent_kafka import Producer

    results: list[Any] = []
    producer = Producer({**kafka_config(settings, "confluent"), "enable.idempotence": True, "acks": "all"})
    producer.produce(topic, b"{}", on_delivery=lambda err, _msg: results.append(err))
    producer.flush(timeout_s)
    assert results, f"no delivery report for {topic} within {timeout_s} s"
    return results[0]


def _auth_event(tenant: str) -> AuthEvent:
    return AuthEvent(
        id=uuid.uuid4().hex, ts=int(time.time() * 1000), source="sshd", tenant=tenant, user="root",
        result="failure", src_ip="10.9.9.9",
    )  # fmt: skip


def test_broker_refuses_everything_but_its_rules(broker: Settings) -> None:
    props = (Path(broker.data_dir) / "kafka" / "server.properties").read_text()
    assert "PLAINTEXT://" not in props  # no unauthenticated listener
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "super.users=User:ssa-admin\n" in props
    for path in broker.secrets_path.iterdir():
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    assert (Path(broker.data_dir) / "kafka" / "server.properties").stat().st_mode & 0o077 == 0


def test_feeder_writes_its_own_topic_and_the_job_reads_it(broker: Settings) -> None:
    from confluent_kafka import Consumer

    feeder = as_user(broker, secure.feeder_user(A))
    assert feeder.telemetry_topics["auth"] == f"ssa.{A}.telemetry.auth"
    producer = TelemetryProducer(kafka_target(feeder), "confluent")
    marker = _auth_event(A)
    producer.send_event(marker)
    producer.close()  # flushes: raises DeliveryFailed if any record was refused
    assert producer.counters.events == 1 and not producer.counters.failed

    job = as_user(broker, secure.JOB_USER)
    consumer = Consumer(
        {**kafka_config(job, "confluent"), "group.id": job.detect_group_id, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([feeder.telemetry_topics["auth"]])
    seen: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not any(marker.id.encode() in v for v in seen):
            msg = consumer.poll(1.0)
            if msg is not None:
                assert msg.error() is None, msg.error()
                seen.append(msg.value() or b"")
    finally:
        consumer.close()
    assert any(marker.id.encode() in v for v in seen), "the job did not read the feeder's record"


def test_feeder_cannot_write_another_tenants_topic_or_shared_ones(broker: Settings) -> None:
    feeder = as_user(broker, secure.feeder_user(A))
    for topic in (
        f"ssa.{B}.telemetry.flow",
        f"ssa.{B}.dlq",
        broker.topic_alerts,
        "ssa.provider.telemetry.process",
    ):
        err = _produce(feeder, topic)
        assert err is not None and err.name() == "TOPIC_AUTHORIZATION_FAILED", (topic, err)
    provider = as_user(broker, secure.feeder_user(secure.PROVIDER))
    assert _produce(provider, "ssa.provider.telemetry.process") is None
    err = _produce(provider, f"ssa.{A}.telemetry.process")
    assert err is not None and err.name() == "TOPIC_AUTHORIZATION_FAILED"


def test_writing_another_tenants_topic_is_one_clear_line(broker: Settings) -> None:
    wrong = as_user(broker, secure.feeder_user(A), topic_prefix=f"ssa.{B}.telemetry.")
    producer = TelemetryProducer(kafka_target(wrong), "confluent", flush_timeout_s=20)
    producer.send_event(_auth_event(A))
    with pytest.raises(DeliveryFailed) as caught:
        producer.close()
    line = secure.explain_kafka_error(caught.value, wrong)
    assert line is not None and line.startswith(f"user feeder-{A} is not allowed to write topic")
    assert f"ssa.{B}.telemetry.auth" in line and f"ssa.{A}." not in line


def test_feeder_cannot_read_anything(broker: Settings) -> None:
    from confluent_kafka import Consumer, TopicPartition

    feeder = as_user(broker, secure.feeder_user(A))
    own = f"ssa.{A}.telemetry.auth"
    for group, topic in (("ssa-detect", own), (f"feeder-{A}", own), ("any", broker.topic_alerts)):
        consumer = Consumer(
            {**kafka_config(feeder, "confluent"), "group.id": group, "auto.offset.reset": "earliest"}
        )
        consumer.assign([TopicPartition(topic, 0, 0)])  # no group join: the fetch itself is refused
        errors: list[str] = []
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline and not errors:
                msg = consumer.poll(0.5)
                if msg is not None:
                    error = msg.error()
                    assert error is not None, f"feeder read a record of {topic}"
                    errors.append(error.name())
        finally:
            consumer.close()
        # With a group, the offset fetch is refused first (no READ on any group), else the fetch.
        assert errors and errors[0] in ("GROUP_AUTHORIZATION_FAILED", "TOPIC_AUTHORIZATION_FAILED"), errors


def test_feeder_cannot_fetch_without_a_group(broker: Settings) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import TopicAuthorizationFailedError

    feeder = as_user(broker, secure.feeder_user(A))
    consumer = KafkaConsumer(**kafka_config(feeder), group_id=None, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(f"ssa.{A}.telemetry.auth", 0)])
        consumer.seek(TopicPartition(f"ssa.{A}.telemetry.auth", 0), 0)
        with pytest.raises(TopicAuthorizationFailedError):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                assert not consumer.poll(timeout_ms=500), "the feeder read its own topic"
    finally:
        consumer.close()


def test_wrong_password_and_unknown_user_are_refused_in_one_line(broker: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.password"
    bad.write_text("not-the-password\n")
    for user, pw_file in ((secure.feeder_user(A), str(bad)), ("nobody", str(bad))):
        settings = as_user(
            broker, secure.feeder_user(A), kafka_sasl_username=user, kafka_sasl_password_file=pw_file
        )
        with pytest.raises(KafkaUnavailable) as caught:
            TelemetryProducer(kafka_target(settings), "confluent", connect_attempts=1, connect_timeout_s=3)
        assert secure.explain_kafka_error(caught.value, settings) == (
            f"authentication failed for user {user} at {broker.kafka_bootstrap}"
        )


def test_provision_is_idempotent(broker: Settings) -> None:
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    admin = secure._admin_client(broker)
    anything: Any = None  # a filter's None matches any name, principal and host
    everything = AclBindingFilter(
        ResourceType.ANY, anything, ResourcePatternType.ANY, anything, anything,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    before = sorted(map(str, admin.describe_acls(everything).result(timeout=30)))
    password = secure.password_file(broker, secure.feeder_user(A)).read_text()
    lines: list[str] = []
    secure.provision(broker, [A, B], say=lines.append)
    after = sorted(map(str, admin.describe_acls(everything).result(timeout=30)))
    assert before == after and len(after) == len(secure.job_plan(broker)) + len(
        secure.parse_plan(broker)
    ) + sum(len(secure.acl_plan(broker, t)) for t in (secure.PROVIDER, A, B))
    assert secure.password_file(broker, secure.feeder_user(A)).read_text() == password
    # after the job's and the parse stage's lines, one per feeder, then the stale ACLs: none
    assert all("kept password" in line and "0 new" in line for line in lines[2:-1])
    assert lines[-1] == "stale ACLs: none (every ALLOW ACL of the provisioned principals is in the plan)"
    assert not any(password.strip() in line for line in lines)


def test_revoke_removes_access(broker: Settings, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    kept = tmp_path / "kept.password"  # revoke deletes the feeder's file; keep its old password
    kept.write_text(secure.password_file(broker, secure.feeder_user(A)).read_text())
    feeder = as_user(broker, secure.feeder_user(A), kafka_sasl_password_file=str(kept))
    open_session = Producer({**kafka_config(feeder, "confluent"), "acks": "all"})
    assert open_session.list_topics(timeout=10) is not None  # logged in before the revocation
    lines: list[str] = []
    secure.revoke(broker, A, delete_topics=False, say=lines.append)
    assert len(lines) == 1 and f"feeder-{A} removed" in lines[0]
    # ACLs apply at once, also on a connection that authenticated before.
    results: list[Any] = []
    open_session.produce(f"ssa.{A}.telemetry.auth", b"{}", on_delivery=lambda err, _m: results.append(err))
    open_session.flush(20)
    assert results and results[0] is not None and results[0].name() == "TOPIC_AUTHORIZATION_FAILED"
    # A new login is refused: the SCRAM credential is gone.
    with pytest.raises(KafkaUnavailable) as caught:
        TelemetryProducer(kafka_target(feeder), "confluent", connect_attempts=1, connect_timeout_s=3)
    assert secure.explain_kafka_error(caught.value, feeder) == (
        f"authentication failed for user feeder-{A} at {broker.kafka_bootstrap}"
    )
    assert not secure.password_file(broker, secure.feeder_user(A)).exists()
    # Tenant B is untouched.
    assert _produce(as_user(broker, secure.feeder_user(B)), f"ssa.{B}.telemetry.flow") is None
