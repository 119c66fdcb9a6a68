"""Zeek conn records as the Kafka log writer and a sensor's settings shape them: ``tag_json``
envelopes, ``TS_MILLIS`` and ISO 8601 timestamps, another ``Log::default_scope_sep``, a nested ``id``.
Every shape of one connection gives the same flow as Zeek's default JSON line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ingest.parsers import ListOutput, ParseContext, parse_bytes
from ingest.schema import FlowEvent, decode_event, encode_event

# One connection as Zeek's JSON writer prints it by default (TS_EPOCH, scope separator ".").
CONN: dict[str, Any] = {
    "ts": 1709287200.125,
    "uid": "CHhAvVGS1DHFjwGM9",
    "id.orig_h": "10.0.1.5",
    "id.orig_p": 51515,
    "id.resp_h": "93.184.216.34",
    "id.resp_p": 443,
    "proto": "tcp",
    "service": "ssl",
    "duration": 1.5,
    "orig_bytes": 517,
    "resp_bytes": 4021,
    "conn_state": "SF",
    "missed_bytes": 0,
    "history": "ShADadFf",
    "orig_pkts": 9,
    "orig_ip_bytes": 997,
    "resp_pkts": 8,
    "resp_ip_bytes": 4449,
}


def parse(*records: dict[str, Any]) -> ListOutput:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    out = parse_bytes("zeek", data, ParseContext())
    for event in out.events:
        assert decode_event(encode_event(event)) == event
    return out


def flow(out: ListOutput) -> FlowEvent:
    assert not out.dlqs, out.dlqs
    (event,) = out.events
    assert isinstance(event, FlowEvent)
    return event


def same_connection(event: FlowEvent) -> tuple[Any, ...]:
    return (event.ts, event.src_ip, event.src_port, event.dst_ip, event.dst_port, event.proto,
            event.bytes_out, event.bytes_in, event.packets_out, event.packets_in, event.duration_ms,
            event.extra["uid"], event.extra["conn_state"])  # fmt: skip


@pytest.fixture(scope="module")
def default() -> tuple[Any, ...]:
    event = flow(parse(CONN))
    assert (event.ts, event.duration_ms) == (1709287201625, 1500)  # the end: ts + duration
    return same_connection(event)


def scoped(record: dict[str, Any], sep: str) -> dict[str, Any]:
    return {k.replace("id.", f"id{sep}") if k.startswith("id.") else k: v for k, v in record.items()}


def test_a_tag_json_envelope_is_read_as_the_record_it_wraps(default: tuple[Any, ...]) -> None:
    assert same_connection(flow(parse({"conn": CONN}))) == default


def test_the_plugins_additional_values_beside_the_envelope_are_kept() -> None:
    event = flow(parse({"conn": CONN, "sensor": "edge-fra-1", "pop": "fra"}))
    assert (event.extra["sensor"], event.extra["pop"]) == ("edge-fra-1", "fra")


def test_a_second_filters_path_is_still_the_conn_log(default: tuple[Any, ...]) -> None:
    assert same_connection(flow(parse({"conn-2": CONN}))) == default


def test_other_logs_in_envelopes_are_skipped_by_their_path() -> None:
    dns = {"ts": 1709287200.5, "uid": "C5", "id.orig_h": "10.0.1.5", "id.orig_p": 5353,
           "id.resp_h": "8.8.8.8", "id.resp_p": 53, "proto": "udp", "query": "example.com"}  # fmt: skip
    out = parse({"dns": dns}, {"http": {**dns, "id.resp_p": 80, "proto": "tcp"}})
    assert (out.events, out.dlqs) == ([], [])
    assert out.skipped == {"zeek dns record": 1, "zeek http record": 1}


def test_ts_millis_is_read_as_milliseconds(default: tuple[Any, ...]) -> None:
    assert same_connection(flow(parse({**CONN, "ts": 1709287200125}))) == default


def test_ts_iso8601_is_read(default: tuple[Any, ...]) -> None:
    assert same_connection(flow(parse({**CONN, "ts": "2024-03-01T10:00:00.125000Z"}))) == default


def test_an_integer_ts_below_the_millisecond_range_is_still_seconds() -> None:
    event = flow(parse({**CONN, "ts": 1709287200, "duration": 0}))
    assert event.ts == 1709287200000


def test_an_out_of_range_ts_still_goes_to_the_dlq() -> None:
    for bad in (10**14, 10**11 - 1, 1.7e13):  # ms past 2100; seconds past 2100; a float is not TS_MILLIS
        out = parse({**CONN, "ts": bad})
        assert out.events == [] and len(out.dlqs) == 1, bad
        assert "ts" in out.dlqs[0].reason


@pytest.mark.parametrize("sep", ["_", ":", "__"])
def test_another_scope_separator_in_json(default: tuple[Any, ...], sep: str) -> None:
    assert same_connection(flow(parse(scoped(CONN, sep)))) == default


def test_a_nested_id_object_is_read(default: tuple[Any, ...]) -> None:
    nested = {k: v for k, v in CONN.items() if not k.startswith("id.")}
    nested["id"] = {k[3:]: v for k, v in CONN.items() if k.startswith("id.")}
    assert same_connection(flow(parse(nested))) == default


def test_rocknsm_sensor_shape(default: tuple[Any, ...]) -> None:
    """tag_json, TS_ISO8601, scope separator "_" and extension fields prefixed "@", together."""
    record = {
        **scoped(CONN, "_"),
        "ts": "2024-03-01T10:00:00.125Z",
        "@system": "rock01",
        "@proc": "worker-1-1",
    }
    event = flow(parse({"conn": record}))
    assert same_connection(event) == default
    assert event.extra["@system"] == "rock01"


def tsv(sep: str) -> bytes:
    names = [k.replace("id.", f"id{sep}") if k.startswith("id.") else k for k in CONN]
    types = {"ts": "time", "duration": "interval", "id.orig_p": "port", "id.resp_p": "port", "proto": "enum"}
    counts = {
        "orig_bytes",
        "resp_bytes",
        "missed_bytes",
        "orig_pkts",
        "orig_ip_bytes",
        "resp_pkts",
        "resp_ip_bytes",
    }
    kinds = [types.get(k, "count" if k in counts else "string") for k in CONN]
    head = [
        "#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn",
        "#fields\t" + "\t".join(names), "#types\t" + "\t".join(kinds),
    ]  # fmt: skip
    row = "\t".join(str(v) for v in CONN.values())
    return ("\n".join([*head, row]) + "\n").encode()


@pytest.mark.parametrize("sep", [".", "_"])
def test_another_scope_separator_in_a_tsv_header(default: tuple[Any, ...], sep: str) -> None:
    out = parse_bytes("zeek", tsv(sep), ParseContext())
    assert same_connection(flow(out)) == default


def test_a_millisecond_ts_in_tsv_is_refused() -> None:
    """Zeek's TSV writer prints times in seconds whatever json_timestamps says."""
    data = tsv(".").replace(b"1709287200.125", b"1709287200125")
    out = parse_bytes("zeek", data, ParseContext())
    assert out.events == [] and len(out.dlqs) == 1


def test_the_kafka_sample_gives_the_json_samples_flows() -> None:
    """``samples/zeek_conn_kafka.json`` (the fuzz seed of these shapes) holds two of
    ``samples/zeek_conn.json``'s connections as the Kafka writer's settings shape them."""
    samples = Path(__file__).parent / "samples"
    plain = parse_bytes("zeek", (samples / "zeek_conn.json").read_bytes(), ParseContext())
    kafka = parse_bytes("zeek", (samples / "zeek_conn_kafka.json").read_bytes(), ParseContext())
    assert not kafka.dlqs and kafka.skipped == {"zeek dns record": 1}
    flows = [e for e in kafka.events if isinstance(e, FlowEvent)]
    assert [same_connection(e) for e in flows[:2]] == [
        same_connection(e) for e in plain.events[:2] if isinstance(e, FlowEvent)
    ]
    assert (flows[2].action, flows[2].dst_port) == ("reject", 22)  # conn-2, nested id, REJ
