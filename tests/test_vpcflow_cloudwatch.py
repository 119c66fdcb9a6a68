"""VPC flow logs delivered by a CloudWatch Logs subscription filter (one JSON document of log events
per delivery) and custom formats given with ``--vpc-format``, where no header line says them.

The records are hand-made after AWS's field lists
(https://docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html) and the envelopes after
the subscription filter's documented shape
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.parsers import ParseContext, parse_bytes
from ingest.parsers.vpcflow import log_format_fields
from ingest.schema import FlowEvent, event_id
from ssa.cli import main
from tests.fuzz.invariants import check_parse
from tests.fuzz.strategies import HOSTILE_TOKENS
from tests.parsed import flows

ENI = "eni-0a1b2c3d4e5f67890"
# One TCP connection seen at the client's interface: the request and the answer, one record each.
REQUEST = f"2 123456789012 {ENI} 10.0.1.5 198.51.100.20 51515 443 6 10 840 1709287200 1709287260 ACCEPT OK"
ANSWER = f"2 123456789012 {ENI} 198.51.100.20 10.0.1.5 443 51515 6 8 5120 1709287200 1709287260 ACCEPT OK"
PROBE = f"2 123456789012 {ENI} 203.0.113.9 10.0.1.5 40112 22 6 1 40 1709287205 1709287260 REJECT OK"
NODATA = f"2 123456789012 {ENI} - - - - - - - 1709287260 1709287320 - NODATA"

# A version 5 custom format, as `aws ec2 describe-flow-logs` prints its LogFormat.
V5_LOG_FORMAT = (
    "${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${account-id} ${type} ${srcaddr} "
    "${dstaddr} ${srcport} ${dstport} ${pkt-srcaddr} ${pkt-dstaddr} ${protocol} ${bytes} ${packets} "
    "${start} ${end} ${action} ${tcp-flags} ${log-status} ${flow-direction} ${traffic-path}"
)
_V5_COMMON = f"5 vpc-0aa1bb2cc3dd4ee5f subnet-0bb2cc3dd4ee5ff60 i-0123456789abcdef0 {ENI} 123456789012 IPv4"
# An instance behind a NAT gateway reaching a web server: the SYN side out, the SYN-ACK side in.
V5_EGRESS = f"{_V5_COMMON} 10.0.1.5 198.51.100.20 51515 443 10.0.1.5 198.51.100.20 6 840 10 1709287200 1709287260 ACCEPT 2 OK egress 8"
V5_INGRESS = f"{_V5_COMMON} 198.51.100.20 10.0.1.5 443 51515 198.51.100.20 10.0.1.5 6 5120 8 1709287200 1709287260 ACCEPT 18 OK ingress -"

LOG_EVENT_ID = 37430000000000000000000000000000000000000000000000000000  # 56 digits, as CloudWatch's
CONTROL = {
    "messageType": "CONTROL_MESSAGE",
    "owner": "CloudwatchLogs",
    "logGroup": "",
    "logStream": "",
    "subscriptionFilters": [],
    "logEvents": [
        {
            "id": "",
            "timestamp": 1709287200000,
            "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.",
        }
    ],
}


def envelope(*messages: str, message_type: str = "DATA_MESSAGE") -> dict[str, Any]:
    """A subscription filter's delivery of ``messages``, as CloudWatch Logs writes it."""
    return {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "vpc-flow-logs",
        "logStream": f"{ENI}-all",
        "subscriptionFilters": ["to-kafka"],
        "logEvents": [
            {"id": str(LOG_EVENT_ID + i), "timestamp": 1709287260000, "message": message}
            for i, message in enumerate(messages)
        ],
    }


def lines(*docs: dict[str, Any] | str) -> bytes:
    """One line per document (compact JSON, as a forwarder writes a decompressed delivery) or record."""
    return b"".join(
        (doc if isinstance(doc, str) else json.dumps(doc, separators=(",", ":"))).encode() + b"\n"
        for doc in docs
    )


def ends(event: FlowEvent) -> tuple[str, int, str, int]:
    return event.src_ip, event.src_port, event.dst_ip, event.dst_port


def counts(event: FlowEvent) -> tuple[int, int, int, int]:
    return event.bytes_out, event.packets_out, event.bytes_in, event.packets_in


def without_origin(event: FlowEvent) -> dict[str, Any]:
    """The event as a dict, without the delivery's log group and stream (the record's own content)."""
    fields = {name: getattr(event, name) for name in event.__struct_fields__}
    fields["extra"] = {k: v for k, v in event.extra.items() if k not in ("log_group", "log_stream")}
    return fields


# --- DATA_MESSAGE ---------------------------------------------------------------------------------
def test_data_message_of_default_records_gives_both_directions() -> None:
    out = parse_bytes("vpcflow", lines(envelope(REQUEST, ANSWER, PROBE)))
    request, answer, probe = flows(out)
    assert not out.dlqs and not out.skipped
    assert ends(request) == ("10.0.1.5", 51515, "198.51.100.20", 443)
    assert ends(answer) == ("198.51.100.20", 443, "10.0.1.5", 51515)
    # One record per direction, each counting its source's side: no reverse counters.
    assert (counts(request), counts(answer)) == ((840, 10, 0, 0), (5120, 8, 0, 0))
    assert (request.ts, request.duration_ms, request.proto) == (1709287260000, 60000, "tcp")
    assert request.action == "accept"
    assert (probe.action, probe.duration_ms) == ("reject", 55000)
    assert request.extra == {
        "version": 2, "account-id": "123456789012", "interface-id": ENI, "log-status": "OK",
        "log_group": "vpc-flow-logs", "log_stream": f"{ENI}-all",
    }  # fmt: skip
    assert request.tenant == "123456789012"  # an unmapped account id is the tenant, as for a line
    assert [ev.id for ev in out.events] == [event_id("vpcflow", m.encode()) for m in (REQUEST, ANSWER, PROBE)]


def test_control_message_is_skipped_not_rejected() -> None:
    out = parse_bytes("vpcflow", lines(CONTROL, envelope(REQUEST)))
    assert len(out.events) == 1 and not out.dlqs
    assert out.skipped == {"CloudWatch Logs CONTROL_MESSAGE": 1}


def test_nodata_record_and_empty_delivery_are_skipped() -> None:
    out = parse_bytes("vpcflow", lines(envelope(NODATA, REQUEST), envelope()))
    assert len(out.events) == 1 and not out.dlqs
    assert out.skipped == {"vpcflow NODATA": 1, "CloudWatch Logs DATA_MESSAGE without log events": 1}


def test_bad_record_goes_to_the_dlq_alone_and_the_others_parse() -> None:
    short = REQUEST.rsplit(" ", 1)[0]  # no log-status: 13 fields
    bad_port = ANSWER.replace(" 443 51515 ", " 70000 51515 ")
    data = REQUEST + "\n" + lines(envelope(REQUEST, short, ANSWER, bad_port, "   ", PROBE)).decode()
    out = parse_bytes("vpcflow", data.encode())
    assert [(ev.src_ip, ev.dst_port) for ev in flows(out)] == [
        ("10.0.1.5", 443), ("10.0.1.5", 443), ("198.51.100.20", 51515), ("203.0.113.9", 22),
    ]  # fmt: skip
    as_lines = parse_bytes("vpcflow", f"{short}\n{bad_port}\n".encode())
    assert [(d.reason, d.raw) for d in out.dlqs] == [
        *((d.reason, d.raw) for d in as_lines.dlqs),  # the same reasons as the same records as lines
        ("log event with an empty message", "   "),
    ]
    assert as_lines.dlqs[0].reason == "expected 14 fields, got 13"
    where = {(d.source, d.line, d.offset) for d in out.dlqs}
    assert where == {("vpcflow", 2, len(REQUEST) + 1)}  # the document's line and offset


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"messageType":"DATA_MESSAGE","logEvents":[', "invalid JSON"),
        (json.dumps([envelope(REQUEST)]), "not a JSON object"),
        (json.dumps({"owner": "123456789012", "logEvents": []}), "no messageType"),
        (json.dumps(envelope(REQUEST, message_type="DATA")), "messageType 'DATA' is neither DATA_MESSAGE nor CONTROL_MESSAGE"),
        (json.dumps({"messageType": "DATA_MESSAGE", "logGroup": "vpc-flow-logs"}), "DATA_MESSAGE without a logEvents list"),
        (json.dumps({"messageType": "DATA_MESSAGE", "logEvents": {"message": REQUEST}}), "DATA_MESSAGE without a logEvents list"),
        ("{" * 200 + "}" * 200, "JSON nested deeper than 64 levels"),
    ],
)  # fmt: skip
def test_malformed_envelope_goes_to_the_dlq_whole(line: str, reason: str) -> None:
    out = parse_bytes("vpcflow", (line + "\n" + REQUEST + "\n").encode())
    assert len(out.events) == 1 and not out.skipped  # the next line is read as usual
    (dlq,) = out.dlqs
    assert dlq.reason.startswith("CloudWatch Logs subscription document: ") and reason in dlq.reason
    assert (dlq.raw, dlq.line) == (line, 1)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (REQUEST, "logEvents[1] has no message string"),
        ({"id": "1", "message": 7}, "logEvents[1] has no message string"),
        ({"message": PROBE, "timestamp": "soon"}, "logEvents[1] timestamp 'soon' is not epoch ms"),
    ],
)
def test_a_malformed_log_event_goes_to_the_dlq_alone(entry: object, reason: str) -> None:
    """As the CloudTrail parser reads the same envelope (``ingest.parsers.cloudwatch_logs``): the
    delivery's other records are still read."""
    doc = {"messageType": "DATA_MESSAGE", "logEvents": [{"message": REQUEST}, entry, {"message": ANSWER}]}
    out = parse_bytes("vpcflow", (json.dumps(doc) + "\n").encode())
    assert [(ev.src_ip, ev.dst_port) for ev in flows(out)] == [("10.0.1.5", 443), ("198.51.100.20", 51515)]
    (dlq,) = out.dlqs
    assert dlq.reason == f"CloudWatch Logs subscription document: {reason}"
    assert dlq.raw == json.dumps(entry, separators=(",", ":"))


# --- event ids ---------------------------------------------------------------------------------
def test_a_record_has_one_id_as_a_line_and_in_envelopes() -> None:
    as_lines = flows(parse_bytes("vpcflow", lines(REQUEST, ANSWER, PROBE)))
    delivered = flows(parse_bytes("vpcflow", lines(envelope(REQUEST, ANSWER), envelope(PROBE, REQUEST))))
    assert [ev.id for ev in delivered] == [ev.id for ev in as_lines] + [as_lines[0].id]  # twice: same id
    assert [without_origin(ev) for ev in delivered[:3]] == [without_origin(ev) for ev in as_lines]


def test_ids_match_the_header_file_also_on_the_checked_path() -> None:
    # A custom format without `end` (AWS lets a format leave fields out): the fast path needs it, so
    # these records take the checked path both ways.
    names = "version interface-id srcaddr dstaddr srcport dstport protocol packets bytes start action"
    record = f"3 {ENI} 10.0.1.5 198.51.100.20 51515 443 6 10 840 1709287200 ACCEPT"
    s3_file = flows(parse_bytes("vpcflow", lines(names, record)))
    context = ParseContext(vpc_fields=tuple(names.split()))
    delivered = flows(parse_bytes("vpcflow", lines(envelope(record)), context))
    assert [ev.id for ev in delivered] == [ev.id for ev in s3_file] == [event_id("vpcflow", record.encode())]
    assert [without_origin(ev) for ev in delivered] == [without_origin(ev) for ev in s3_file]


# --- custom formats: --vpc-format ----------------------------------------------------------------
def test_vpc_format_reads_a_custom_layout_from_cloudwatch() -> None:
    fields = log_format_fields(V5_LOG_FORMAT)
    assert fields == log_format_fields(V5_LOG_FORMAT.replace("${", "").replace("}", ""))  # or bare names
    data = lines(envelope(V5_EGRESS, V5_INGRESS))
    out = parse_bytes("vpcflow", data, ParseContext(vpc_fields=fields))
    egress, ingress = flows(out)
    assert not out.dlqs and not out.skipped
    assert (ends(egress), counts(egress)) == (("10.0.1.5", 51515, "198.51.100.20", 443), (840, 10, 0, 0))
    assert (ends(ingress), counts(ingress)) == (("198.51.100.20", 443, "10.0.1.5", 51515), (5120, 8, 0, 0))
    assert egress.extra == {
        "version": 5, "vpc-id": "vpc-0aa1bb2cc3dd4ee5f", "subnet-id": "subnet-0bb2cc3dd4ee5ff60",
        "instance-id": "i-0123456789abcdef0", "interface-id": ENI, "account-id": "123456789012", "type": "IPv4",
        "pkt-srcaddr": "10.0.1.5", "pkt-dstaddr": "198.51.100.20", "tcp-flags": 2, "log-status": "OK",
        "flow-direction": "egress", "traffic-path": 8, "log_group": "vpc-flow-logs", "log_stream": f"{ENI}-all",
    }  # fmt: skip
    assert (ingress.extra["tcp-flags"], ingress.extra["flow-direction"]) == (18, "ingress")
    assert "traffic-path" not in ingress.extra  # "-": no value
    # Without the format, the records do not fit the default layout: each goes to the DLQ, alone.
    default = parse_bytes("vpcflow", data)
    assert not default.events and [d.reason for d in default.dlqs] == ["expected 14 fields, got 23"] * 2


def test_a_header_line_still_switches_the_layout() -> None:
    fields = log_format_fields(V5_LOG_FORMAT)
    header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
    out = parse_bytes("vpcflow", lines(envelope(V5_EGRESS), header, REQUEST), ParseContext(vpc_fields=fields))
    assert [ev.extra["version"] for ev in out.events] == [5, 2] and not out.dlqs
    assert out.skipped == {"header line": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no fields"),
        ("   ", "no fields"),
        ("${version} ${src-addr} ${dstaddr}", "unknown field 'src-addr' (did you mean 'srcaddr'?)"),
        ("${version} ${srcaddr ${dstaddr}", "'${srcaddr' is neither ${field} nor a field name"),
        ("${srcaddr} ${dstaddr} ${srcaddr}", "field 'srcaddr' given twice"),
        ("${version} ${srcaddr} ${bytes}", "no dstaddr field"),
    ],
)
def test_log_format_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        log_format_fields(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_context_layout_is_refused_when_the_parser_is_built() -> None:
    with pytest.raises(ValueError, match="unknown field 'pkt-src-addr'"):
        parse_bytes("vpcflow", b"", ParseContext(vpc_fields=("srcaddr", "dstaddr", "pkt-src-addr")))


# --- the command line --------------------------------------------------------------------------
def _one_line(text: str) -> str:
    found = text.strip().splitlines()
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("vpc_format", "says"),
    [
        ("${version} ${srcaddr} ${dstaddr} ${bogus}", "unknown field 'bogus'"),
        ("", "no fields"),
    ],
)
def test_cli_bad_vpc_format_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vpc_format: str, says: str
) -> None:
    path = tmp_path / "cw.jsonl"
    path.write_bytes(lines(envelope(REQUEST)))
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(path), "--format", "vpcflow", "--vpc-format", vpc_format, "--output", "-"])
    assert exit_info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("ssa ingest: error: argument --vpc-format: ") and says in line


def test_cli_ingests_cloudwatch_deliveries_with_vpc_format(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = isolated / "cw.jsonl"
    path.write_bytes(lines(CONTROL, envelope(V5_EGRESS, V5_INGRESS, "5 bad")))
    out = isolated / "events.jsonl"
    argv = ["ingest", str(path), "--format", "vpcflow", "--vpc-format", V5_LOG_FORMAT, "--output", str(out)]
    assert main(argv) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(ev["src_ip"], ev["extra"]["flow-direction"]) for ev in events] == [
        ("10.0.1.5", "egress"), ("198.51.100.20", "ingress"),
    ]  # fmt: skip
    err = capsys.readouterr().err
    assert "ingest: 2 events (flow 2), 1 to DLQ, 1 skipped" in err
    assert "DLQ 1: expected fields, got" in err  # the summary groups reasons without their numbers


def test_cli_vpc_format_is_for_vpcflow_only(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = isolated / "conn.log"
    path.write_text("")
    argv = ["ingest", str(path), "--format", "zeek", "--vpc-format", "srcaddr dstaddr", "--output", "-"]
    assert main(argv) == 1
    assert _one_line(capsys.readouterr().err) == (
        "ssa ingest: --vpc-format gives the fields of VPC flow log records: --format vpcflow, not zeek"
    )


# --- hostile deliveries keep the parsers' invariants ----------------------------------------------
_good_event = st.sampled_from((REQUEST, ANSWER, PROBE, NODATA, V5_EGRESS, "", " ", "{}")).map(
    lambda m: {"message": m}
)
_hostile_event = st.tuples(
    st.sampled_from((REQUEST, ANSWER)), st.integers(0, 13), st.sampled_from(HOSTILE_TOKENS)
).map(
    lambda t: {"message": " ".join(t[2] if i == t[1] else p for i, p in enumerate(t[0].split()))}
)  # one field of a record replaced by a hostile value
_broken_event = st.sampled_from(({"message": None}, {"id": "1"}, [], "text", 7))
# Mostly readable envelopes, so that the records inside are read too (repeats weigh a choice).
_log_events = st.lists(
    st.one_of(_good_event, _good_event, _hostile_event, _hostile_event, _broken_event), max_size=6
)
_document = st.fixed_dictionaries(
    {
        "messageType": st.sampled_from(("DATA_MESSAGE",) * 6 + ("CONTROL_MESSAGE", "data", 1)),
        "logEvents": st.one_of(_log_events, _log_events, _log_events, st.sampled_from((None, {}, "x"))),
    },
    optional={"logGroup": st.text(max_size=8) | st.integers(), "logStream": st.just("s" * 600)},
)


@settings(max_examples=150, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(docs=st.lists(_document | st.sampled_from((REQUEST, NODATA)), min_size=1, max_size=4))
def test_hostile_deliveries_keep_the_invariants(docs: list[dict[str, Any] | str]) -> None:
    out = check_parse("vpcflow", lines(*docs))  # accounting: one outcome per log event
    for event in out.events:
        assert len(event.extra.get("log_stream", "")) <= 512
