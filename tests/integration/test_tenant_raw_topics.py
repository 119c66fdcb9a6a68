"""Raw feeding per tenant on a real secure Kafka (issues 22 and 23): each tenant's feeder writes
only its own ``ssa.<tenant>.raw.<format>``, and ``ssa parse``, as its own principal ``ssa-parse``
with the settings file ``ssa tenants provision`` writes, reads every tenant's raw topics by
pattern, takes the tenant from the topic, sends what claims another tenant to the DLQ with the
reason, and writes the events to the tenant's ``ssa.<tenant>.telemetry.*``, which the job in
secure mode reads (``tests/integration/test_tenant_topics.py``).

One broker for the module (SASL_SSL, SCRAM, ACLs: ``infra.services.KafkaService``) in a temporary
data directory, on the ports of ``SSA_KAFKA_PORT``/``SSA_KAFKA_CONTROLLER_PORT`` when they are free
(a private stack's), else on free ports; stopped at the end. The registry is the samples' (tenants
``t-acme`` and ``t-beta``, hypervisors ``hv-01``/``hv-02``). The sshd and auditd lines are stamped
now, so the broker's retention keeps them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from infra import secure
from infra.clients import kafka_config
from infra.services import KafkaService
from infra.settings import PROJECT_ROOT, Settings, load_settings
from ingest.pipeline import run_ingest
from ingest.raw import HEADER_TENANT
from ingest.schema import decode_event
from ingest.tenants import TenantRegistry
from tests.integration.test_kafka_secure import _free_port, as_user
from tests.integration.test_parse_stage import committed_values
from tests.test_raw_records import ListSink

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
A, B = "t-acme", "t-beta"  # the samples' registry
FORMATS = ("syslog", "auditd")  # the raw topics provisioned per tenant (the CLI: every format)


def _port(env: str) -> int:
    """The port ``env`` names when nothing listens on it, else a free one."""
    wanted = os.environ.get(env, "")
    if wanted.isdigit():
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", int(wanted)))
                return int(wanted)
            except OSError:
                pass
    return _free_port()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data = tmp_path_factory.mktemp("tenant-raw")
    shutil.copy(SAMPLES / "tenants.yaml", data / "tenants.yaml")
    port = _port("SSA_KAFKA_PORT")
    controller = _port("SSA_KAFKA_CONTROLLER_PORT")
    settings = load_settings({}).with_overrides(
        data_dir=str(data), kafka_port=port, kafka_controller_port=controller,
        kafka_bootstrap=f"127.0.0.1:{port}", kafka_local_security="sasl_ssl",
        tenants_file=str(data / "tenants.yaml"), snooze_file=str(data / "snoozes.yaml"),
        checkpoint_dir=str(data / "checkpoints"),
    )  # fmt: skip
    svc = KafkaService(settings)
    t0 = time.monotonic()
    svc.launch()
    try:
        svc.proc.wait_until(svc.healthy, 180, "healthy")
        print(f"[raw] secure broker on {port} healthy after {time.monotonic() - t0:.1f} s")
        from infra.bootstrap import ensure_topics

        ensure_topics(secure.admin_settings(settings))  # what `ssa up --secure` creates
        secure.provision(settings, [A, B], say=lambda line: print(f"[secure] {line}"), raw_formats=FORMATS)
        yield settings
    finally:
        svc.proc.stop()


Record = tuple[bytes, list[tuple[str, str | bytes | None]]]  # value, headers


def _produce(settings: Settings, topic: str, records: list[Record]) -> list[Any]:
    """Produce ``records`` (value, headers) to ``topic`` keyed as one source; their delivery errors."""
    from confluent_kafka import Producer

    results: list[Any] = []
    producer = Producer({**kafka_config(settings, "confluent"), "enable.idempotence": True, "acks": "all"})
    for value, headers in records:
        producer.produce(topic, value, b"web-a1:/var/log/auth.log", headers=headers or None,
                         on_delivery=lambda err, _msg: results.append(err))  # fmt: skip
    producer.flush(30)
    assert len(results) == len(records), f"{len(records) - len(results)} delivery reports missing for {topic}"
    return results


def _committed(settings: Settings, topic: str) -> list[bytes]:
    """Every value of ``topic`` a ``read_committed`` consumer (the admin) sees, read to its end."""
    return committed_values(secure.admin_settings(settings), topic)


def test_a_feeder_writes_only_its_own_raw_topics(broker: Settings) -> None:
    feeder = as_user(broker, secure.feeder_user(A))
    assert feeder.topic_raw_prefix == f"ssa.{A}.raw."  # its settings file points shippers there
    line: list[Record] = [
        (b"<38>1 2024-03-05T10:00:00Z web-a1 sshd 1 - - Failed password for x from 1.2.3.4 port 1 ssh2", [])
    ]
    assert _produce(feeder, f"ssa.{A}.raw.syslog", line) == [None]
    for topic in (f"ssa.{B}.raw.syslog", "ssa.raw.syslog", "ssa.provider.raw.auditd"):
        (err,) = _produce(feeder, topic, line)
        assert err is not None and err.name() == "TOPIC_AUTHORIZATION_FAILED", (topic, err)
    provider = as_user(broker, secure.feeder_user(secure.PROVIDER))
    assert _produce(
        provider, "ssa.provider.raw.auditd", [(b"node=hv-01 type=EOE msg=audit(1.0:1): ", [])]
    ) == [None]
    (err,) = _produce(provider, f"ssa.{A}.raw.syslog", line)
    assert err is not None and err.name() == "TOPIC_AUTHORIZATION_FAILED"


def _sshd(host: str, n: int, start: int) -> list[bytes]:
    """RFC 5424 sshd failures of ``host``, stamped a minute ago (one a second)."""
    t0 = int(time.time()) - 60
    return [
        f"<38>1 {datetime.fromtimestamp(t0 + i, UTC).isoformat()} {host} sshd {4000 + i} - - "
        f"Failed password for root from 203.0.113.{i % 250 + 1} port {40000 + start + i} ssh2".encode()
        for i in range(n)
    ]


def _audit_now() -> list[bytes]:
    """The KVM hypervisor's audit log (both tenants' VMs on hv-01) moved to now."""
    lines = (SAMPLES / "auditd_kvm_host.log").read_bytes().splitlines()
    stamps = [int(m) for line in lines for m in re.findall(rb"audit\((\d+)\.", line)]
    shift = int(time.time()) - 60 - max(stamps)  # its last event a minute ago
    return [
        re.sub(rb"audit\((\d+)\.", lambda m: b"audit(%d." % (int(m.group(1)) + shift), line) for line in lines
    ]


def _events(lines: list[bytes], fmt: str, registry: TenantRegistry) -> ListSink:
    import io

    sink = ListSink()
    run_ingest(io.BytesIO(b"\n".join(lines) + b"\n"), fmt, sink=sink, registry=registry)
    return sink


def _start_parse(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.to_env()}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ssa.cli", "parse"], cwd=PROJECT_ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def test_the_parse_stage_writes_each_raw_topics_events_to_its_tenant(broker: Settings) -> None:
    registry = TenantRegistry.load(broker.tenants_file)
    honest = _sshd("web-a1", 20, 0)  # a host of no tenant in the registry: A's by its topic
    claimed = _sshd("web-a1", 5, 100)  # sent with the header ssa-tenant: t-beta
    foreign = _sshd("vm-beta-01", 3, 200)  # B's VM by the registry: the parsed events name B
    audit = _audit_now()
    want = _events(honest, "syslog", registry)
    want_foreign = _events(foreign, "syslog", registry)
    want_audit = _events(audit, "auditd", registry)
    assert len(want.events) == 20 and {e.tenant for e in want.events} == {None}
    assert len(want_foreign.events) == 3 and {e.tenant for e in want_foreign.events} == {B}
    assert len(want_audit.events) == 24 and not want_audit.dlqs  # as of the sample's own times
    assert {e.tenant for e in want_audit.events} >= {A, B}

    feeder = as_user(broker, secure.feeder_user(A))
    raw = f"ssa.{A}.raw.syslog"
    sent = _produce(feeder, raw, [(line, []) for line in honest])
    sent += _produce(feeder, raw, [(line, [(HEADER_TENANT, B.encode())]) for line in claimed])
    sent += _produce(feeder, raw, [(line, []) for line in foreign])
    provider = as_user(broker, secure.feeder_user(secure.PROVIDER))
    sent += _produce(provider, "ssa.provider.raw.auditd", [(line, []) for line in audit])
    assert sent == [None] * len(sent)

    parse = as_user(broker, secure.PARSE_USER, tenants_file=broker.tenants_file)
    assert parse.tenant_topics and parse.kafka_sasl_username == secure.PARSE_USER
    log = Path(broker.data_dir) / "parse.log"
    auth_topic = f"ssa.{A}.telemetry.auth"
    provider_topics = [f"ssa.provider.telemetry.{kind}" for kind in secure.PROVIDER_KINDS]
    ours, audit_ids = {e.id for e in want.events}, {e.id for e in want_audit.events}

    def arrived() -> bool:
        ids = {decode_event(v).id for v in _committed(broker, auth_topic)}
        ids |= {decode_event(v).id for t in provider_topics for v in _committed(broker, t)}
        return ours <= ids and audit_ids <= ids

    proc = _start_parse(parse, log)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 180 and proc.poll() is None and not arrived():
            time.sleep(2)
        waited = time.monotonic() - t0
        time.sleep(3)  # more commits: nothing else must come
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # commits, writes its last metrics, exits
        code = proc.wait(timeout=60)
    text = log.read_text(errors="replace")
    print(
        f"[raw] every event arrived {waited:.1f} s after ssa parse started; it exited {code}:\n{text[-1500:]}"
    )
    assert code == 0, text[-3000:]
    assert "reading ssa.<tenant>.raw.*" in text

    events = [decode_event(v) for v in _committed(broker, auth_topic)]
    ids = [e.id for e in events]
    assert sorted(i for i in ids if i in ours) == sorted(ours)  # each exactly once
    assert {e.tenant for e in events} == {A}  # the topic's, filled in
    refused = {e.id for e in _events(claimed, "syslog", registry).events} | {
        e.id for e in want_foreign.events
    }
    assert len(refused) == len(claimed) + len(foreign) and not refused & set(ids)
    for kind in secure.KINDS:  # nothing reached tenant B, nor the shared topics
        assert _committed(broker, f"ssa.{B}.telemetry.{kind}") == []
        assert _committed(broker, broker.telemetry_topics[kind]) == []

    dlq = [msgspec.json.decode(v) for v in _committed(broker, broker.topic_dlq)]
    mismatch = sorted(r["reason"] for r in dlq if r["reason"].startswith("tenant mismatch"))
    assert mismatch == sorted(
        [f"tenant mismatch: topic of tenant {A}, header ssa-tenant says {B} (topic {raw})"] * len(claimed)
        + [
            f"tenant mismatch: topic of tenant {A}, payload says {B} (event {e.id}, topic {raw})"
            for e in want_foreign.events
        ]
    )
    assert {r["source"] for r in dlq if r["reason"].startswith("tenant mismatch")} == {"parse"}
    assert sorted(r["raw"].encode() for r in dlq if "header ssa-tenant" in r["reason"]) == sorted(claimed)

    # The provider's hypervisor log: its events on the provider's topics, each once, with the
    # tenant the registry gives its VM (the job checks them again there).
    provider_events = [decode_event(v) for t in provider_topics for v in _committed(broker, t)]
    assert sorted((e.id, e.tenant or "") for e in provider_events if e.id in audit_ids) == sorted(
        (e.id, e.tenant or "") for e in want_audit.events
    )
    print(
        f"[raw] {len(events)} events on {auth_topic} (tenant {A}), {len(mismatch)} tenant mismatches in the "
        f"DLQ, none on tenant {B}'s or the shared topics; {len(provider_events)} provider events"
    )
