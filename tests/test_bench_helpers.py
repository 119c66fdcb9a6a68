"""The benchmark harness's own logic, without services: reading a broker's version from its class
path (``tests.bench.versions``) and the live-input record file (``tests.bench.live_input``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from infra.settings import load_settings
from ingest.producer import event_key
from ingest.schema import encode_event
from ingest.simulator import SimConfig, simulate
from tests.bench.live_input import encode_records, read_records
from tests.bench.versions import classpath_of, kafka_release_in_jars, parse_properties


def test_parse_properties_skips_comments_and_blanks() -> None:
    text = "# a comment\n! another\n\ncommitId=abc123\n version = 9.9.9 \nno separator here\n"
    assert parse_properties(text) == {"commitId": "abc123", "version": "9.9.9"}


def test_classpath_of_a_java_command_line() -> None:
    cmd = [
        "/usr/bin/java",
        "-Xmx1g",
        "-cp",
        "/j/a.jar:/j/kafka-clients-9.9.9.jar:",
        "kafka.Kafka",
        "x.properties",
    ]
    assert classpath_of(cmd) == [Path("/j/a.jar"), Path("/j/kafka-clients-9.9.9.jar")]
    assert classpath_of(["java", "-jar", "x.jar"]) == []


def test_kafka_release_read_from_the_clients_jar(tmp_path: Path) -> None:
    other = tmp_path / "kafka-server-9.9.9.jar"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("kafka/kafka-version.properties", "version=0.0.0\n")  # not the clients jar
    clients = tmp_path / "kafka-clients-9.9.9.jar"
    with zipfile.ZipFile(clients, "w") as zf:
        zf.writestr("kafka/kafka-version.properties", "commitId=feedface\nversion=9.9.9\n")
    found = kafka_release_in_jars([tmp_path / "missing.jar", other, clients])
    assert found == {"commitId": "feedface", "version": "9.9.9", "jar": clients.name}
    assert kafka_release_in_jars([other]) is None


def test_live_input_records_read_back_in_order(tmp_path: Path) -> None:
    settings = load_settings()
    sim = simulate(SimConfig(seed=5, tenants=3, duration_s=30, events_per_s=500))
    path = tmp_path / "records.bin"
    written = encode_records(settings, sim.events(), path)
    records = list(read_records(path))
    events = list(sim.events())
    assert written == len(events) == len(records) > 10_000  # more than one chunk
    topics = settings.telemetry_topics
    for (ts, topic, key, value), ev in zip(records, events, strict=True):
        assert (ts, topic, key, value) == (
            ev.ts,
            topics[str(ev.__struct_config__.tag)],
            event_key(ev),
            encode_event(ev),
        )
