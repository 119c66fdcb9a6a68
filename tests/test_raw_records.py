"""The raw record contract (ingest.raw) and the parse stage's Kafka-free core (streams.parse_stage):
the same event ids and DLQ as ``ssa ingest`` of the same file, commits only at points where no
parser holds a record, and a replay from a commit giving the same ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingest.dlq import DlqRecord
from ingest.pipeline import run_ingest
from ingest.producer import SinkCounters
from ingest.raw import (
    HEADER_FORMAT,
    HEADER_SOURCE,
    HEADER_TENANT,
    MAX_HEADERS,
    RawRejected,
    format_of_topic,
    make_headers,
    raw_topic,
    raw_topic_pattern,
    read_headers,
)
from ingest.schema import Event
from streams.parse_stage import ParseStage

SAMPLES = Path(__file__).parent / "samples"
PREFIX = "ssa.raw."


@dataclass
class ListSink:
    events: list[Event] = field(default_factory=list)
    dlqs: list[DlqRecord] = field(default_factory=list)
    counters: SinkCounters = field(default_factory=SinkCounters)

    def send_event(self, event: Event) -> None:
        self.events.append(event)

    def send_dlq(self, record: DlqRecord) -> None:
        self.dlqs.append(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Msg:
    _topic: str
    _partition: int
    _offset: int
    _value: bytes
    _key: bytes | None = b"host-1:/var/log/x"
    _headers: list[tuple[str, bytes]] | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


def messages(fmt: str, lines: list[bytes], partition: int = 0, start: int = 0) -> list[Msg]:
    return [Msg(PREFIX + fmt, partition, start + i, line) for i, line in enumerate(lines)]


def ingest_ids(path: Path, fmt: str) -> tuple[list[str], int]:
    sink = ListSink()
    run_ingest(path, fmt, sink=sink)
    return [e.id for e in sink.events], len(sink.dlqs)


# --- the contract -----------------------------------------------------------------------------
def test_topics_and_headers_round_trip() -> None:
    assert raw_topic(PREFIX, "sshd") == "ssa.raw.syslog"
    assert format_of_topic(PREFIX, "ssa.raw.cloudtrail") == "cloudaudit"
    with pytest.raises(RawRejected, match="names no input format"):
        format_of_topic(PREFIX, "ssa.raw.nonsense")
    headers = make_headers("syslog", "web-1:/var/log/auth.log", tenant="t-acme", received_ms=1700000000000)
    got = read_headers(headers, "syslog")
    assert (got.format, got.source, got.tenant, got.received_ms) == (
        "syslog", "web-1:/var/log/auth.log", "t-acme", 1700000000000,
    )  # fmt: skip
    # No headers at all (rsyslog omkafka): the key, else the topic, names the source.
    assert (
        read_headers(None, "auditd", b"hv-1:/var/log/audit/audit.log").source
        == "hv-1:/var/log/audit/audit.log"
    )
    assert read_headers([], "auditd", None, "ssa.raw.auditd").source == "ssa.raw.auditd"
    import re

    assert re.match(raw_topic_pattern(PREFIX), "ssa.raw.zeek")
    assert not re.match(raw_topic_pattern(PREFIX), "ssa.rawx.zeek")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([(HEADER_FORMAT, b"zeek")], "disagrees with the topic"),
        ([(HEADER_FORMAT, b"klingon")], "names no input format"),
        ([(HEADER_TENANT, b"bad tenant!")], "not a tenant id"),
        ([(HEADER_SOURCE, b"x" * 600)], "source name of 600 bytes"),
        ([(HEADER_SOURCE, b"\xff\xfe")], "not UTF-8"),
        ([(HEADER_SOURCE, b"a\x00b")], "unprintable"),
        ([("ssa-received-ms", b"yesterday")], "not epoch milliseconds"),
        ([(HEADER_SOURCE, b"x" * 5000)], "over 4096"),
        ([("x-shipper", b"1")] * (MAX_HEADERS + 1), "headers, more than"),
    ],
)
def test_bad_headers_are_refused_with_a_reason(headers: list[tuple[str, bytes]], reason: str) -> None:
    with pytest.raises(RawRejected, match=reason):
        read_headers(headers, "syslog")


def test_bad_raw_records_go_to_the_dlq_and_are_counted() -> None:
    sink = ListSink()
    stage = ParseStage(sink, PREFIX)
    stage.process(
        [
            Msg("ssa.raw.klingon", 0, 0, b"qapla"),
            Msg("ssa.raw.syslog", 0, 0, b"line", _headers=[(HEADER_TENANT, b"no such tenant!")]),
        ]
    )
    assert [d.source for d in sink.dlqs] == ["parse", "parse"]
    assert "names no input format" in sink.dlqs[0].reason
    assert "not a tenant id" in sink.dlqs[1].reason
    assert stage.stats.rejected == {"unknown": 1, "syslog": 1}
    assert stage.take_commits() == {("ssa.raw.klingon", 0): 1, ("ssa.raw.syslog", 0): 1}


# --- same ids as ssa ingest -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sample", "fmt"),
    [
        ("audit.log", "auditd"),
        ("auditd_kvm_host.log", "auditd"),
        ("auth.log", "syslog"),
        ("auth_bad.log", "syslog"),
        ("zeek_conn.log", "zeek"),
        ("zeek_conn.json", "zeek"),
        ("vpcflow_v2.log", "vpcflow"),
        ("vpcflow_custom.log", "vpcflow"),
        ("cloudtrail.jsonl", "cloudaudit"),
        ("falco.jsonl", "falco"),
        ("nprobe.csv", "nprobe-csv"),
        ("nfdump.csv", "nfdump"),
        ("nfdump17.csv", "nfdump"),
        ("suricata_eve.json", "suricata"),
        ("zeek_conn_kafka.json", "zeek"),
        ("vpcflow_cwl.jsonl", "vpcflow"),
        ("cloudtrail_eventbridge.jsonl", "cloudaudit"),
        ("cloudtrail_cwl.jsonl", "cloudaudit"),
    ],
)
def test_line_records_give_the_ids_of_ssa_ingest(sample: str, fmt: str) -> None:
    path = SAMPLES / sample
    want, want_dlq = ingest_ids(path, fmt)
    assert want or want_dlq, "the sample must give events or DLQ records"
    sink = ListSink()
    stage = ParseStage(sink, PREFIX)
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    batch = messages(fmt, [line + b"\n" if i % 2 else line for i, line in enumerate(lines)])
    for start in range(0, len(batch), 7):  # batches cut anywhere, some values with their newline
        stage.process(batch[start : start + 7])
    stage.flush_idle(everything=True)
    assert [e.id for e in sink.events] == want
    assert len(sink.dlqs) == want_dlq
    for record in sink.dlqs:  # the DLQ names the source and the Kafka offset
        assert record.file == f"host-1:/var/log/x via {PREFIX}{fmt}/0"
        assert record.offset is not None and 0 <= record.offset < len(lines)


def test_the_stage_reads_a_custom_vpc_layout_given_as_ssa_ingest_takes_it(tmp_path: Path) -> None:
    """CloudWatch Logs carries no header line: ``ssa parse --vpc-format`` gives the stage the layout
    that ``ssa ingest --vpc-format`` gives the parser, and the same records get the same ids."""
    import json

    from ingest.parsers.vpcflow import log_format_fields

    layout = log_format_fields("${version} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} "
                               "${bytes} ${start} ${end} ${action} ${log-status} ${flow-direction}")  # fmt: skip
    records = ["5 10.1.0.5 198.51.100.7 44321 443 6 12 1500 1700000000 1700000059 ACCEPT OK egress",
               "5 198.51.100.7 10.1.0.5 443 44321 6 10 9000 1700000000 1700000059 ACCEPT OK ingress"]  # fmt: skip
    doc = {"messageType": "DATA_MESSAGE", "logEvents": [{"message": r} for r in records]}
    path = tmp_path / "cw.jsonl"
    path.write_text(json.dumps(doc) + "\n")
    ingest = ListSink()
    run_ingest(path, "vpcflow", sink=ingest, vpc_fields=layout)
    assert len(ingest.events) == 2 and not ingest.dlqs
    sink = ListSink()
    ParseStage(sink, PREFIX, vpc_fields=layout).process(messages("vpcflow", [path.read_bytes().rstrip()]))
    assert [e.id for e in sink.events] == [e.id for e in ingest.events] and not sink.dlqs
    default = ListSink()
    ParseStage(default, PREFIX).process(messages("vpcflow", [path.read_bytes().rstrip()]))
    assert default.events == [] and len(default.dlqs) == 2  # the default layout cannot read them


def test_a_cloudtrail_document_is_one_record() -> None:
    path = SAMPLES / "cloudtrail.json"
    want, _ = ingest_ids(path, "cloudaudit")
    sink = ListSink()
    ParseStage(sink, PREFIX).process(messages("cloudaudit", [path.read_bytes()]))
    assert [e.id for e in sink.events] == want and len(want) > 1


def test_a_tenant_header_forces_the_tenant() -> None:
    sink = ListSink()
    lines = (SAMPLES / "auth.log").read_bytes().splitlines()
    batch = [
        Msg(PREFIX + "syslog", 0, i, line, _headers=[(HEADER_TENANT, b"t-acme")])
        for i, line in enumerate(lines)
    ]
    stage = ParseStage(sink, PREFIX)
    stage.process(batch)
    stage.flush_idle(everything=True)
    assert sink.events and {e.tenant for e in sink.events} == {"t-acme"}


# --- commits and replays ----------------------------------------------------------------------
def test_commits_stop_before_a_held_auditd_event_until_it_is_finished() -> None:
    clock = [0.0]
    sink = ListSink()
    stage = ParseStage(sink, PREFIX, clock=lambda: clock[0])
    lines = (SAMPLES / "audit.log").read_bytes().splitlines()
    stage.process(messages("auditd", lines[:7]))  # the first event, its EOE included
    assert stage.take_commits() == {("ssa.raw.auditd", 0): 7}
    stage.committed({("ssa.raw.auditd", 0): 7})
    stage.process(messages("auditd", lines[7:9], start=7))  # SYSCALL + PROCTITLE, no EOE yet
    assert stage.take_commits() == {}
    clock[0] = 14.0
    assert stage.flush_idle() == 0  # the auditd allowance (15 s) has not passed
    clock[0] = 15.0
    assert stage.flush_idle() == 1
    assert stage.take_commits() == {("ssa.raw.auditd", 0): 9}


@pytest.mark.parametrize(
    ("sample", "fmt"), [("audit.log", "auditd"), ("auth.log", "syslog"), ("auditd_kvm_host.log", "auditd")]
)
def test_a_replay_from_any_commit_gives_the_same_ids(sample: str, fmt: str) -> None:
    """Kill the stage after any batch: a new one from the last commit gives no id the file does
    not give, and together they give every id."""
    lines = (SAMPLES / sample).read_bytes().splitlines()
    want, _ = ingest_ids(SAMPLES / sample, fmt)
    batch = messages(fmt, lines)
    for crash_after in range(1, len(batch)):
        first = ListSink()
        stage = ParseStage(first, PREFIX)
        for start in range(0, crash_after, 3):
            stage.process(batch[start : min(start + 3, crash_after)])
        commit = stage.take_commits().get((PREFIX + fmt, 0), 0)
        second = ListSink()
        again = ParseStage(second, PREFIX)
        again.process(batch[commit:])
        again.flush_idle(everything=True)
        seen = {e.id for e in first.events} | {e.id for e in second.events}
        assert seen == set(want), crash_after


def test_metrics_records_per_format_and_minute() -> None:
    sink = ListSink()
    stage = ParseStage(sink, PREFIX, instance="test")
    assert stage.metrics(now_ms=60_000 * 100) == []
    lines = (SAMPLES / "auth.log").read_bytes().splitlines()
    stage.process(messages("syslog", lines))
    stage.process([Msg("ssa.raw.syslog", 0, 99, b"x", _headers=[(HEADER_FORMAT, b"zeek")])])
    assert stage.metrics(now_ms=60_000 * 100 + 30_000) == []  # the minute runs
    docs = stage.metrics(now_ms=60_000 * 101 + 5)
    assert len(docs) == 1
    doc = docs[0]
    out = stage.outputs["syslog"]
    assert doc["kind"] == "parse" and doc["key"] == "syslog@test" and doc["ts"] == 60_000 * 100
    assert doc["records"] == len(lines) + 1
    assert doc["events"] == out.parsed and doc["dlq"] == out.dlqs + 1
    assert doc["skipped"] == sum(out.skipped.values())
    assert stage.metrics(now_ms=60_000 * 102 + 5) == []  # nothing new: no record
