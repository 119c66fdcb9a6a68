"""The benchmark harness's own logic, without services: reading a broker's version from its class
path (``tests.bench.versions``) and the live-input record file (``tests.bench.live_input``)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from random import Random

import pytest

from infra.settings import load_settings
from ingest.producer import event_key
from ingest.schema import encode_event
from ingest.simulator import SimConfig, simulate
from tests.bench.bench_ingest import gen_netflow
from tests.bench.bench_parse_stage import moving_rates, split_datagrams, split_lines
from tests.bench.bench_streams import percentiles_s
from tests.bench.live_input import encode_records, read_records
from tests.bench.versions import classpath_of, kafka_release_in_jars, parse_properties
from tests.samples.netflow_gen import ipfix_packet, v5_packet, v9_packet


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


def test_datagrams_cut_back_out_of_an_export_file() -> None:

    flows = [("10.0.0.1", "10.0.0.2", 40000, 443, 6, 1500, 3, 1000, 2000)] * 5
    packets = [
        v9_packet(flows, 1709632800, 10**7, seq=0, with_template=True),
        v5_packet(flows[:2], 1709632800, 10**7, seq=1),
        ipfix_packet(
            [(*f[:7], 1709632801000, 1709632802000) for f in flows], 1709632800, seq=2, with_template=True
        ),
        v9_packet(flows[:3], 1709632800, 10**7, seq=3),
    ]
    assert split_datagrams(b"".join(packets)) == packets
    data = gen_netflow(100, Random(1), 9)
    assert b"".join(split_datagrams(data)) == data and len(split_datagrams(data)) == 5  # 24 flows each
    for bad in (packets[1][:-1], b"\x00\x07" + bytes(30), packets[0] + b"\x00\x09"):
        with pytest.raises(ValueError):
            split_datagrams(bad)


def test_lines_as_a_shipper_sends_them() -> None:
    assert split_lines(b"a\nb c\n\nd\n") == [b"a", b"b c", b"", b"d"]
    assert split_lines(b"a\nb") == [b"a", b"b"]
    assert split_lines(b"") == []


def test_moving_rates_leave_out_start_up_and_the_last_commit() -> None:
    # (wall s, committed offset, CPU s): 2 s of start-up at 0, 1,000 records a second while moving
    # on half a core, samples repeating a value, then the final commit of the whole backlog.
    samples = [(0.0, 0, 0.5), (1.0, 0, 1.0), (2.0, 1000, 1.5), (2.5, 1000, 1.75), (3.0, 2000, 2.0),
               (4.0, 3000, 2.5), (4.5, 3000, 2.75), (9.0, 3500, 5.0)]  # fmt: skip
    wall, cpu, used = moving_rates(samples, total=3500)
    assert (wall, cpu, used) == (1000.0, 2000.0, 3)
    assert moving_rates(samples[:3], total=3500) == (None, None, 1)
    assert moving_rates([(0.0, 10, 1.0), (1.0, 20, 1.0)], total=100) == (10.0, None, 2)  # no CPU used


def test_percentiles_in_seconds_by_nearest_rank_below() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100 ms, unordered
    assert percentiles_s("x", values) == {"x_p50_s": 0.05, "x_p95_s": 0.1, "x_p99_s": 0.1, "x_max_s": 0.1}
    assert percentiles_s("y", [1500.0], (0.5,)) == {"y_p50_s": 1.5, "y_max_s": 1.5}
    assert percentiles_s("z", []) == {"z_p50_s": None, "z_p95_s": None, "z_p99_s": None, "z_max_s": None}
