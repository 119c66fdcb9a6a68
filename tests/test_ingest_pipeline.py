"""run_ingest end to end with file sinks, the Kafka producer's behaviour without Kafka, and
(marked integration) producing to the real local Kafka with both clients."""

from __future__ import annotations

import gzip
import io
import json
import socket
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import msgspec
import pytest

from infra.bootstrap import topic_configs
from infra.settings import Settings, SettingsError
from ingest.dlq import decode_dlq
from ingest.parsers import FORMAT_NAMES
from ingest.pipeline import MAX_AHEAD_MS, IngestProgress, IngestSummary, run_ingest
from ingest.producer import (
    FUTURE_SLACK_MS,
    STALE_AFTER_MS,
    JsonLinesSink,
    KafkaUnavailable,
    NullSink,
    TelemetryProducer,
    confluent_config,
    event_key,
    kafka_python_config,
    record_timestamp,
)
from ingest.schema import AuthEvent, Event, FlowEvent, ProcessEvent, decode_event
from ingest.tenants import RegistryWatcher, TenantRegistry
from streams.kafka_target import kafka_target

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def decode_flow(data: bytes | str) -> FlowEvent:
    event = decode_event(data)
    assert isinstance(event, FlowEvent), event
    return event


def test_run_ingest_to_json_lines_with_dlq_beside(tmp_path, registry):
    src = tmp_path / "flows.log"
    src.write_bytes((SAMPLES / "vpcflow_v2.log").read_bytes() + b"garbage line\n")
    out = tmp_path / "events.jsonl"
    sink = JsonLinesSink(out)
    summary = run_ingest(src, "vpcflow", registry=registry, sink=sink)
    sink.close()
    assert (summary.parsed, summary.dlq, summary.skipped, summary.by_kind) == (3, 1, 2, {"flow": 3})
    assert summary.skip_reasons == {"vpcflow NODATA": 1, "vpcflow SKIPDATA": 1}
    events = [decode_flow(line) for line in out.read_bytes().splitlines()]
    assert [e.src_ip for e in events] == ["10.1.0.5", "203.0.113.12", "10.1.0.5"]
    assert events[0].tenant == "t-acme"
    (dlq,) = [decode_dlq(line) for line in Path(str(out) + ".dlq.jsonl").read_bytes().splitlines()]
    assert (dlq.line, dlq.raw, dlq.reason, dlq.file) == (
        6,
        "garbage line",
        "expected 14 fields, got 2",
        str(src),
    )
    assert "3 events (flow 3), 1 to DLQ, 2 skipped" in summary.line()
    assert "not vpcflow telemetry" in summary.line()


def test_records_without_a_time_are_counted_and_said(tmp_path):
    """An NF-*-v2 layout has no time column: its records are stamped as they are read."""
    src = tmp_path / "nf-v2.csv"
    src.write_text("IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,IN_BYTES,OUT_BYTES\n"
                   + "10.0.0.1,40000,10.0.0.2,22,6,44,40\n" * 3)  # fmt: skip
    summary = run_ingest(src, "nprobe-csv", sink=NullSink())
    assert (summary.parsed, summary.undated) == (3, 3)
    assert "3 records carried no time and were stamped with the time they were read" in summary.line()
    timed = tmp_path / "nf-v3.csv"
    timed.write_text("FLOW_START_MILLISECONDS,IPV4_SRC_ADDR,IPV4_DST_ADDR\n1700000000000,10.0.0.1,10.0.0.2\n")
    summary = run_ingest(timed, "nprobe-csv", sink=NullSink())
    assert (summary.parsed, summary.undated) == (1, 0) and "no time" not in summary.line()


def test_no_dlq_file_when_nothing_failed(tmp_path):
    out = tmp_path / "e.jsonl"
    sink = JsonLinesSink(out)
    run_ingest(SAMPLES / "zeek_conn.log", "zeek", sink=sink)
    sink.close()
    assert len(out.read_bytes().splitlines()) == 4
    assert not Path(str(out) + ".dlq.jsonl").exists()


def test_every_sample_accounts_for_every_line(registry):
    cases = {
        "vpcflow_v2.log": "vpcflow",
        "vpcflow_custom.log": "vpcflow",
        "zeek_conn.log": "zeek",
        "zeek_conn.json": "zeek",
        "nprobe.csv": "nprobe-csv",
        "cicids2017.csv": "cicflowmeter",
        "falco.jsonl": "falco",
        "falco_bad.jsonl": "falco",
        "cloudtrail.jsonl": "cloudaudit",
        "auth_linux.log": "syslog",
        "auth_bad.log": "syslog",
    }
    for name, fmt in cases.items():
        lines = len((SAMPLES / name).read_bytes().splitlines())
        summary = run_ingest(SAMPLES / name, fmt, registry=registry, year=2023)
        assert summary.parsed + summary.dlq + summary.skipped == lines, (name, summary)


def test_gzip_stream_forced_tenant_watcher_and_progress(tmp_path):
    data = (SAMPLES / "cloudtrail.json").read_bytes()
    path = tmp_path / "trail.json.gz"
    path.write_bytes(gzip.compress(data))
    seen: list[IngestProgress] = []
    summary = run_ingest(
        path,
        "cloudtrail",
        tenant="t-forced",
        registry=RegistryWatcher(SAMPLES / "tenants.yaml"),
        sink=NullSink(),
        progress=seen.append,
    )
    assert (summary.parsed, summary.by_kind, summary.fmt) == (3, {"audit": 3}, "cloudaudit")
    assert seen[-1].parsed == 3 and seen[-1].events_per_s > 0
    stream = io.BytesIO((SAMPLES / "falco.jsonl").read_bytes())
    collected = []

    class Collect(NullSink):
        def send_event(self, event):
            collected.append(event)

    run_ingest(stream, "falco", tenant="t-forced", sink=Collect())
    assert {e.tenant for e in collected} == {"t-forced"}


def test_progress_is_reported_during_long_runs():
    line = b"2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1700000000 1700000001 ACCEPT OK\n"
    seen: list[IngestProgress] = []
    summary = run_ingest(io.BytesIO(line * 50_000), "vpcflow", progress=seen.append, progress_every_s=0.0)
    assert summary.parsed == 50_000
    assert len(seen) >= 5 and [p.parsed for p in seen] == sorted(p.parsed for p in seen)


def test_unknown_format_lists_the_names():
    with pytest.raises(KeyError, match="vpcflow"):
        run_ingest(io.BytesIO(b""), "pcapng")
    assert "syslog" in FORMAT_NAMES


def test_udp_input_needs_netflow_format():
    with pytest.raises(ValueError, match="udp:// input needs --format netflow"):
        run_ingest("udp://127.0.0.1:0", "zeek")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_kafka_unreachable_raises_one_clear_error(client):
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    with pytest.raises(KafkaUnavailable) as info:
        TelemetryProducer(
            kafka_target(settings), client, connect_attempts=2, backoff_s=0.05, connect_timeout_s=1.0
        )
    message = str(info.value)
    assert message.startswith(
        f"Kafka at {settings.kafka_bootstrap} (PLAINTEXT) is unreachable after 2 attempts"
    )
    assert "\n" not in message
    assert time.monotonic() - start < 15


def test_security_options_come_from_settings(tmp_path):
    secret = tmp_path / "kafka.pw"
    secret.write_text("s3cret\n")
    settings = Settings(
        kafka_bootstrap="b1:9093,b2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ingest",
        kafka_sasl_password_file=str(secret),
        kafka_ssl_cafile="/etc/ca.pem",
    )
    conf = confluent_config(kafka_target(settings))
    assert (
        conf["security.protocol"],
        conf["sasl.mechanism"],
        conf["sasl.username"],
        conf["sasl.password"],
    ) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "ingest",
        "s3cret",
    )
    assert (conf["enable.idempotence"], conf["acks"], conf["ssl.ca.location"]) == (True, "all", "/etc/ca.pem")
    kp = kafka_python_config(kafka_target(settings))
    assert kp["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert (kp["sasl_plain_password"], kp["enable_idempotence"], kp["acks"], kp["ssl_cafile"]) == (
        "s3cret",
        True,
        "all",
        "/etc/ca.pem",
    )
    missing = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password_file=str(tmp_path / "nope"))
    with pytest.raises(SettingsError, match="kafka_sasl_password_file: cannot read"):
        kafka_target(missing)


def test_event_key_is_tenant_or_host_for_process_events():
    proc = ProcessEvent(id="1", ts=1, source="auditd", tenant="t", host="hv-01", exe="/x", syscall="execve")
    auth = AuthEvent(id="2", ts=1, source="sshd", tenant="t", host="hv-01", user="u", result="failure")
    assert (event_key(proc), event_key(auth)) == ("hv-01", "t")


class _FakeConfluent:
    """Stands in for ``confluent_kafka.Producer``: records what ``produce`` would send, with the
    arguments bound by librdkafka's own positional order."""

    names = ("topic", "value", "key", "partition", "callback", "on_delivery", "timestamp", "headers")
    made: ClassVar[list[_FakeConfluent]] = []

    def __init__(self, conf: dict) -> None:
        self.conf = conf
        self.sent: list[dict] = []
        self.made.append(self)

    def list_topics(self, timeout: float) -> None:
        return None

    def produce(self, *args, **kwargs) -> None:
        call = dict(zip(self.names, args, strict=False)) | kwargs
        call["headers"] = list(call.get("headers") or [])  # librdkafka copies them
        if isinstance(call.get("key"), str):  # str and bytes keys are the same UTF-8 on the wire
            call["key"] = call["key"].encode()
        self.sent.append(call)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_confluent_produce_keeps_key_event_time_and_dlq_topic(monkeypatch, registry):
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Producer", _FakeConfluent)
    monkeypatch.setattr(_FakeConfluent, "made", [])
    settings = Settings()
    producer = TelemetryProducer(kafka_target(settings), "confluent")
    data = (SAMPLES / "vpcflow_v2.log").read_bytes() + b"not a flow record\n"
    summary = run_ingest(io.BytesIO(data), "vpcflow", registry=registry, sink=producer)
    audit = run_ingest(SAMPLES / "audit.log", "auditd", registry=registry, sink=producer)
    producer.close()
    (client,) = _FakeConfluent.made
    assert client.conf["enable.idempotence"] is True and client.conf["acks"] == "all"
    assert client.conf["compression.type"] == "lz4"
    calls = client.sent
    flows = [c for c in calls if c["topic"] == settings.telemetry_topics["flow"]]
    assert len(flows) == summary.parsed == 3
    for call in flows:
        event = decode_event(call["value"])
        assert call["key"] == b"t-acme"
        assert call["headers"] == [] and call["timestamp"] == event.ts
        assert call.get("partition", -1) == -1
        assert call.get("callback") is None and call.get("on_delivery") is None
    procs = [c for c in calls if c["topic"] == settings.telemetry_topics["process"]]
    for call in procs:  # keyed by host (its tenant when the host is unknown), DESIGN.md
        key = event_key(decode_event(call["value"]))
        assert call["key"] == (key.encode() if key is not None else None)
    assert all(c["timestamp"] == decode_event(c["value"]).ts for c in procs)
    (dlq,) = [c for c in calls if c["topic"] == settings.topic_dlq]
    assert (dlq["key"], dlq["timestamp"], decode_dlq(dlq["value"]).line) == (b"vpcflow", 0, 6)  # 0: now
    assert producer.counters.events == summary.parsed + audit.parsed
    assert producer.counters.by_topic[settings.topic_dlq] == 1


def test_send_events_sends_what_send_event_sends(monkeypatch, registry):
    """The batched path (fast-path parsers hand over lists) produces the same messages and counts,
    including process events keyed by host and a BufferError retried."""
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Producer", _FakeConfluent)
    monkeypatch.setattr(_FakeConfluent, "made", [])
    events = [
        *parse_vpc_sample(registry),
        ProcessEvent(
            id="p1", ts=5, source="auditd", tenant="t-1", host="hv-1", exe="/bin/sh", syscall="execve"
        ),
        ProcessEvent(id="p2", ts=5, source="auditd", tenant="t-1", exe="/bin/sh", syscall="execve"),
        AuthEvent(id="a1", ts=6, source="syslog", user="root", result="failure"),
    ]
    one, batch = (TelemetryProducer(kafka_target(Settings()), "confluent") for _ in range(2))
    for event in events:
        one.send_event(event)
    full = [True]

    def produce_once_full(*args):
        if full[0]:
            full[0] = False
            raise BufferError
        _FakeConfluent.produce(batch._producer, *args)

    monkeypatch.setattr(batch, "_produce", produce_once_full)
    monkeypatch.setattr(batch._producer, "produce", produce_once_full)
    batch.send_events(events)
    first, second = _FakeConfluent.made
    assert first.sent == second.sent and len(first.sent) == len(events)
    assert [c["key"] for c in first.sent[-3:]] == [b"hv-1", b"t-1", None]
    assert one.counters == batch.counters and batch.counters.events == len(events)


def test_record_timestamp_is_the_event_time_within_what_kafka_accepts():
    now = 1_800_000_000_000
    assert record_timestamp(now - 5, now) == now - 5
    assert record_timestamp(now + FUTURE_SLACK_MS, now) == now + FUTURE_SLACK_MS
    assert record_timestamp(now + 86_400_000, now) == now + FUTURE_SLACK_MS < now + 3_600_000
    assert record_timestamp(0, now) == 1 == record_timestamp(-7, now)  # 0 would mean "now"


def test_both_send_paths_stamp_event_time_cap_the_future_and_count_stale_events(monkeypatch):
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Producer", _FakeConfluent)
    monkeypatch.setattr(_FakeConfluent, "made", [])
    now = int(time.time() * 1000)
    times = [now - 60_000, now + 86_400_000, now - STALE_AFTER_MS - 60_000, 0]
    events: list[Event] = [AuthEvent(id=str(i), ts=ts, source="sshd", tenant="t", user="u", result="failure")
                           for i, ts in enumerate(times)]  # fmt: skip
    one, batch = (TelemetryProducer(kafka_target(Settings()), "confluent") for _ in range(2))
    for event in events:
        one.send_event(event)
    batch.send_events(events)
    for producer, client in zip((one, batch), _FakeConfluent.made, strict=True):
        stamps = [c["timestamp"] for c in client.sent]
        assert stamps[0] == times[0] and stamps[2] == times[2] and stamps[3] == 1
        assert now + FUTURE_SLACK_MS <= stamps[1] <= int(time.time() * 1000) + FUTURE_SLACK_MS
        # The payload keeps the true time (0 is outside the schema's bounds: read it as plain JSON).
        assert [msgspec.json.decode(c["value"])["ts"] for c in client.sent] == times
        assert producer.counters.stale == 2


def parse_vpc_sample(registry):
    from ingest.parsers import parse_bytes
    from ingest.parsers.base import ParseContext

    return parse_bytes(
        "vpcflow", (SAMPLES / "vpcflow_v2.log").read_bytes(), ParseContext(registry=registry)
    ).events


# --- against the real local stack ----------------------------------------------------------------
def _consume(settings: Settings, topics: list[str], expected: int, timeout_s: float = 60.0) -> list:
    from confluent_kafka import Consumer, Message

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got.append(msg)
    finally:
        consumer.close()
    return got


def _isolated(settings: Settings) -> Settings:
    """Fresh topics per test run, created explicitly (the broker may not auto-create) with the
    project's own topic configs: the samples' events are years old, and a telemetry topic made
    with the broker's time retention loses them at its next retention check."""
    from confluent_kafka.admin import AdminClient, NewTopic

    run = uuid.uuid4().hex[:8]
    isolated = settings.with_overrides(topic_prefix=f"test.{run}.telemetry.", topic_dlq=f"test.{run}.dlq")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    names = [*isolated.telemetry_topics.values(), isolated.topic_dlq]
    new = [
        NewTopic(t, num_partitions=2, replication_factor=1, config=topic_configs(isolated, t)) for t in names
    ]
    futures = admin.create_topics(new)
    for future in futures.values():
        future.result(30)
    return isolated


@pytest.mark.integration
@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_ingest_into_real_kafka(stack, client, registry):
    settings = _isolated(stack)
    producer = TelemetryProducer(kafka_target(settings), client)
    data = (SAMPLES / "vpcflow_v2.log").read_bytes() + b"not a flow record\n"
    summary = run_ingest(io.BytesIO(data), "vpcflow", registry=registry, sink=producer)
    producer.close()
    assert (summary.parsed, summary.dlq, summary.skipped) == (3, 1, 2)
    assert producer.counters.by_topic == {settings.telemetry_topics["flow"]: 3, settings.topic_dlq: 1}
    flows = _consume(settings, [settings.telemetry_topics["flow"]], 3)
    assert sorted(decode_flow(m.value()).src_ip for m in flows) == ["10.1.0.5", "10.1.0.5", "203.0.113.12"]
    assert {m.key() for m in flows} == {b"t-acme"}
    (dlq,) = _consume(settings, [settings.topic_dlq], 1)
    record = decode_dlq(dlq.value())
    assert (record.raw, record.source, record.line, dlq.key()) == (
        "not a flow record",
        "vpcflow",
        6,
        b"vpcflow",
    )


@pytest.mark.integration
def test_process_events_are_keyed_by_host(stack, registry):
    settings = _isolated(stack)
    producer = TelemetryProducer(kafka_target(settings))
    run_ingest(SAMPLES / "audit.log", "auditd", registry=registry, sink=producer)
    producer.close()
    got = _consume(settings, [settings.telemetry_topics["process"], settings.telemetry_topics["auth"]], 9)
    keys = {msgspec.json.decode(m.value())["id"]: m.key() for m in got}
    assert len(keys) == 9
    assert b"hv-01" in keys.values() and b"hv-02" in keys.values()


def test_udp_collector_through_run_ingest(registry):
    import threading

    from tests.samples.netflow_gen import v5_packet

    port = _closed_port()
    stop = threading.Event()
    result: dict[str, IngestSummary] = {}
    thread = threading.Thread(
        target=lambda: result.update(
            s=run_ingest(f"udp://127.0.0.1:{port}", "netflow", registry=registry, stop=stop)
        )
    )
    thread.start()
    flows = [("10.1.0.5", "10.2.0.7", 40000, 22, 6, 1500, 10, 1000, 3000)]
    time.sleep(0.3)  # let the collector bind
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(5):
            sender.sendto(v5_packet(flows, 1709632800, 10000), ("127.0.0.1", port))
            time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=10)
    summary = result["s"]
    assert 1 <= summary.parsed <= 5 and summary.dlq == 0 and set(summary.by_kind) == {"flow"}


def test_stdin_dash(tmp_path):
    import subprocess
    import sys

    code = (
        "from ingest.pipeline import run_ingest; from ingest.producer import JsonLinesSink;"
        "s = JsonLinesSink('-'); r = run_ingest('-', 'zeek', sink=s); s.close();"
        "import sys; print(r.line(), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=(SAMPLES / "zeek_conn.log").read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 4
    assert b"-: 4 events (flow 4), 0 to DLQ, 9 skipped" in proc.stderr


def test_cli_keeps_cic_features_only_when_asked(tmp_path, capsys):
    from ssa.cli import main

    sample = str(SAMPLES / "cicids2017.csv")
    extras = []
    for flag in ([], ["--cic-features"]):
        out = tmp_path / f"cic{len(flag)}.jsonl"
        assert main(["ingest", sample, "--format", "cicflowmeter", "--output", str(out), *flag]) == 0
        extras.append([json.loads(line)["extra"] for line in out.read_text().splitlines()])
    labels_only, features = extras
    assert [list(e) for e in labels_only] == [["Flow ID", "Label", "cic_flags"]] * 3
    assert [e["Label"] for e in labels_only] == [e["Label"] for e in features]
    assert len(features[0]) == 75 and features[0]["Flow Bytes/s"] == 1436.17  # 72 features


def _vpcflow_line(src: str, end_s: int, counts: str = "20 4249") -> str:
    """A record of a one-minute window ending at ``end_s``: its event time (the flow's end)."""
    return f"2 111122223333 eni-0a1b2c3d4e5f60718 {src} 10.2.0.7 49761 443 6 {counts} {end_s - 60} {end_s} ACCEPT OK"


def test_events_too_far_ahead_of_the_clock_go_to_the_dlq_with_the_event(tmp_path, registry):
    now_s = int(time.time())
    out = tmp_path / "flows.jsonl"
    # Unset packet and byte counts ("- -") send a line down the checked path (one event at a
    # time) instead of the batched fast path: the line stamped ahead goes each way in turn.
    for counts in ("20 4249", "- -"):
        lines = [
            _vpcflow_line("10.1.0.5", now_s - 60),
            _vpcflow_line("10.1.0.6", now_s + 7200, counts),  # two hours ahead: a wrong clock
            _vpcflow_line("10.1.0.7", now_s + 30),  # within MAX_AHEAD_MS
        ]
        src = tmp_path / "flows.log"
        src.write_text("\n".join(lines) + "\n")
        sink = JsonLinesSink(out)
        summary = run_ingest(src, "vpcflow", registry=registry, sink=sink)
        sink.close()
        assert (summary.parsed, summary.dlq) == (2, 1)
        assert [decode_flow(line).src_ip for line in out.read_bytes().splitlines()] == [
            "10.1.0.5",
            "10.1.0.7",
        ]
        (dlq,) = [decode_dlq(line) for line in Path(str(out) + ".dlq.jsonl").read_bytes().splitlines()]
        head, _, rest = dlq.reason.partition(" s, ")
        assert head.startswith("event time ahead of the ingest clock: by ")
        assert 7_100 <= int(head.rsplit(" ", 1)[1].replace(",", "")) <= 7_200  # two hours less run time
        assert rest.startswith("more than the 60 s allowed")
        assert (dlq.source, dlq.file, decode_flow(dlq.raw).src_ip) == ("vpcflow", str(src), "10.1.0.6")
        assert summary.dlq_reasons == {"event time ahead of the ingest clock": 1}
    assert MAX_AHEAD_MS == 60_000


def test_rfc3164_times_read_in_the_zone_given_and_dlq_when_they_land_ahead(tmp_path):
    tokyo = ZoneInfo("Asia/Tokyo")
    local = datetime.now(tokyo) - timedelta(seconds=5)  # a line just logged in Tokyo
    line = f"{local:%b %d %H:%M:%S} vm-1 sshd[7]: Failed password for root from 203.0.113.9 port 4 ssh2\n"
    src = tmp_path / "auth.log"
    src.write_text(line)
    as_utc = run_ingest(src, "syslog", year=local.year)  # read as UTC: nine hours ahead
    assert (as_utc.parsed, as_utc.dlq) == (0, 1)
    out = tmp_path / "auth.jsonl"
    sink = JsonLinesSink(out)
    in_zone = run_ingest(src, "syslog", year=local.year, timezone="Asia/Tokyo", sink=sink)
    sink.close()
    assert (in_zone.parsed, in_zone.dlq) == (1, 0)
    (event,) = [decode_event(x) for x in out.read_bytes().splitlines()]
    assert event.ts == int(local.replace(microsecond=0).timestamp()) * 1000


def test_cli_refuses_an_unknown_time_zone_in_one_line(tmp_path, capsys):
    from ssa.cli import main

    for zone in ("Mars/Olympus", "../../etc/passwd"):
        assert main(["ingest", str(SAMPLES / "auth.log"), "--format", "syslog", "--tz", zone,
                     "--output", str(tmp_path / "o.jsonl")]) != 0  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"ssa ingest: unknown --tz {zone!r}; give an IANA time zone such as Europe/Berlin or UTC"
        ]
    assert not (tmp_path / "o.jsonl").exists()


def test_dlq_reasons_are_classed_by_their_words_without_values_or_asides(tmp_path):
    src = tmp_path / "features.csv"  # flow features without addresses: every row to the DLQ
    src.write_bytes(b" Destination Port, Flow Duration, Label\n80,1,BENIGN\n81,2,BENIGN\n")
    sink = JsonLinesSink(tmp_path / "out.jsonl")
    summary = run_ingest(src, "cicflowmeter", sink=sink)
    sink.close()
    assert summary.dlq_reasons == {
        "header has no Source IP, Destination IP, Timestamp column": 1,
        "row under an unusable header": 2,
    }
