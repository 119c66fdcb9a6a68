"""CloudTrail records in the envelopes of real-time delivery: EventBridge events ("AWS API Call via
CloudTrail" and the other detail-types CloudTrail sends) and CloudWatch Logs subscription
deliveries (a trail sending to a log group). Each record inside is the same event as the record
read alone or from a CloudTrail file (same id, so copies collapse; same fields and extra), a bad
one goes to the DLQ alone with the reason it gets alone, and a malformed envelope to the DLQ with
its own reason. The records are the repository's real-shaped samples (``cloudtrail*.json*``),
wrapped; ``samples/cloudtrail_eventbridge.jsonl`` and ``samples/cloudtrail_cwl.jsonl`` hold one
delivery of each kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ingest.parsers import ListOutput, ParseContext, parse_bytes
from ingest.parsers.cloudwatch_logs import (
    ENVELOPE,
    DeliveryRefused,
    LogEvent,
    is_delivery,
    open_delivery,
    read_log_event,
)
from ingest.schema import AuditEvent, Event
from ingest.tenants import TenantRegistry
from streams.parse_stage import ParseStage
from tests.fuzz.invariants import check_output
from tests.test_hostile_host import trail_record as record
from tests.test_raw_records import PREFIX, ListSink, ingest_ids, messages

SAMPLES = Path(__file__).parent / "samples"
TRAIL_FILES = (
    "cloudtrail.json",
    "cloudtrail_real.json",
    "cloudtrail_cross_tenant_instance_credentials.json",
    "cloudtrail_cross_tenant_policies.json",
)
API_CALL = "AWS API Call via CloudTrail"
EC2_STATE = "EC2 Instance State-change Notification"
NO_DETAIL = f"EventBridge {API_CALL!r} event without a detail object"
NOT_A_KIND = f"{ENVELOPE}: messageType {{}} is neither DATA_MESSAGE nor CONTROL_MESSAGE"
LOG_EVENT_ID = 37_573_469_813_010_238_046_453_211_360_210_390_283_093_606_464_094_289_920  # 56 digits


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def parse(data: bytes, registry: TenantRegistry | None = None, **ctx: Any) -> ListOutput:
    """The parser's output, after checking the fuzz harness's invariants on it (accounting,
    bounds, round trip, reasons in our words)."""
    out = parse_bytes("cloudaudit", data, ParseContext(registry=registry, **ctx))
    check_output("cloudaudit", data, out)
    return out


def trail_records() -> list[dict[str, Any]]:
    records = []
    for name in TRAIL_FILES:
        records += json.loads((SAMPLES / name).read_text())["Records"]
    return records


def plain_lines() -> list[dict[str, Any]]:
    """The two good records of ``cloudtrail.jsonl`` (a service's PutObject, a failed sign-in)."""
    return [json.loads(line) for line in (SAMPLES / "cloudtrail.jsonl").read_text().splitlines()[:2]]


def line(value: object) -> bytes:
    return json.dumps(value).encode()


def eventbridge(detail: object, detail_type: object = API_CALL, **more: object) -> dict[str, Any]:
    """An EventBridge event as the default bus delivers it."""
    event: dict[str, Any] = {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2024-03-05T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }
    event.update(more)
    return event


def delivery(*messages: object, message_type: str = "DATA_MESSAGE", **more: object) -> dict[str, Any]:
    """A subscription filter's delivery of ``messages`` (each a log event's message as is)."""
    document: dict[str, Any] = {
        "messageType": message_type,
        "owner": "111122223333",
        "logGroup": "aws-cloudtrail-logs",
        "logStream": "111122223333_CloudTrail_us-east-1",
        "subscriptionFilters": ["to-kafka"],
        "logEvents": [
            {"id": str(LOG_EVENT_ID + i), "timestamp": 1709633100000 + i, "message": message}
            for i, message in enumerate(messages)
        ],
    }
    document.update(more)
    return document


def alone(records: list[dict[str, Any]], registry: TenantRegistry | None = None) -> list[Event]:
    """What the records give as JSON lines of their own."""
    return parse(b"\n".join(line(r) for r in records), registry).events


# --- the samples -----------------------------------------------------------------------------------
def test_eventbridge_sample_gives_the_events_of_the_plain_records(registry):
    out = parse((SAMPLES / "cloudtrail_eventbridge.jsonl").read_bytes(), registry)
    from_file = parse((SAMPLES / "cloudtrail.json").read_bytes(), registry).events
    from_lines = parse((SAMPLES / "cloudtrail.jsonl").read_bytes(), registry).events
    assert out.events == from_file + from_lines  # ids, fields, tenants and extra alike
    assert out.dlqs == []
    assert out.skipped == {f"EventBridge {EC2_STATE!r} event: not a CloudTrail record": 1}
    assert [e.action for e in out.events if isinstance(e, AuditEvent)] == [
        "s3.GetObject",
        "ec2.ModifySnapshotAttribute",
        "iam.AttachRolePolicy",
        "s3.PutObject",
        "signin.ConsoleLogin",
    ]


def test_cloudwatch_sample_gives_the_events_of_the_plain_records(registry):
    out = parse((SAMPLES / "cloudtrail_cwl.jsonl").read_bytes(), registry)
    from_file = {
        e.extra["eventID"]: e for e in parse((SAMPLES / "cloudtrail_real.json").read_bytes(), registry).events
    }
    wanted = [f"c1000000-0000-4000-8000-0000000000{n}" for n in (12, 14, 17, 13, 15)]
    assert out.events == [from_file[i] for i in wanted]
    assert out.dlqs == []
    assert out.skipped == {"CloudWatch Logs CONTROL_MESSAGE": 1}
    # the owner's and the caller's trail copies of one cross-account call keep their roles
    assert [e.extra.get("trail_copy") for e in out.events] == ["owner", "owner", None, "caller", "caller"]


def test_the_parse_stage_reads_one_envelope_per_kafka_record():
    """A forwarder (Lambda, Firehose, an EventBridge target) writes each envelope as one record of
    ``ssa.raw.cloudaudit``, compact or pretty-printed: the stage gives what ``ssa ingest`` gives."""
    for name in ("cloudtrail_eventbridge.jsonl", "cloudtrail_cwl.jsonl"):
        want, _ = ingest_ids(SAMPLES / name, "cloudaudit")
        envelopes = (SAMPLES / name).read_bytes().splitlines()
        for batch in (envelopes, [json.dumps(json.loads(e), indent=2).encode() for e in envelopes]):
            sink = ListSink()
            ParseStage(sink, PREFIX).process(messages("cloudaudit", batch))
            assert [e.id for e in sink.events] == want and len(want) == 5
            assert sink.dlqs == []


# --- the same record whichever way it came ----------------------------------------------------------
def test_every_sample_record_is_the_same_event_in_either_envelope(registry):
    records = trail_records() + plain_lines()
    plain = alone(records, registry)
    assert len(plain) == len(records)
    via_eventbridge = parse(b"\n".join(line(eventbridge(r)) for r in records), registry)
    via_cloudwatch = parse(line(delivery(*(json.dumps(r) for r in records))), registry)
    for out in (via_eventbridge, via_cloudwatch):
        assert out.events == plain
        assert (out.dlqs, out.skipped) == ([], {})
    from_files = [e for name in TRAIL_FILES for e in parse((SAMPLES / name).read_bytes(), registry).events]
    assert {e.id for e in from_files} <= {e.id for e in plain}  # a trail file's copy collapses too


def test_the_envelope_adds_nothing_to_extra_and_its_bytes_do_not_change_the_id():
    rec = record(1)
    (plain,) = alone([rec])
    other_wrapping = eventbridge(
        rec, id="another-delivery", time="2024-03-05T10:01:02Z", account="444455556666"
    )
    compact_message = delivery(json.dumps(rec, separators=(",", ":"), indent=None), logGroup="elsewhere")
    for envelope in (eventbridge(rec), other_wrapping, delivery(json.dumps(rec, indent=2)), compact_message):
        (event,) = parse(line(envelope)).events
        assert event == plain


@pytest.mark.parametrize(
    "detail_type",
    [
        API_CALL,
        "AWS Console Sign In via CloudTrail",  # AWS's pages spell it both ways: the suffix
        "AWS Console Signin via CloudTrail",  # is what is matched
        "AWS Console Action via CloudTrail",
        "AWS Service Event via CloudTrail",
    ],
)
def test_every_detail_type_cloudtrail_sends_carries_a_record(detail_type):
    rec = plain_lines()[1]  # a console sign-in
    (event,) = parse(line(eventbridge(rec, detail_type))).events
    assert event == alone([rec])[0]


def test_an_insights_event_is_a_counted_skip_alone_and_from_eventbridge():
    """An Insights record summarises unusual API activity (its API is in insightDetails, not at the
    top): no call to detect on, so it is skipped with its reason, alone and from EventBridge."""
    insight = {
        "eventVersion": "1.08",
        "eventTime": "2024-03-05T10:00:00Z",
        "awsRegion": "us-east-1",
        "eventID": "insight-1",
        "eventType": "AwsCloudTrailInsight",
        "recipientAccountId": "111122223333",
        "sharedEventID": "shared-1",
        "insightDetails": {"state": "Start", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances"},
        "eventCategory": "Insight",
    }
    for data in (line(insight), line(eventbridge(insight, "AWS Insight via CloudTrail"))):
        out = parse(data)
        assert (out.events, out.dlqs) == ([], [])
        assert out.skipped == {
            "CloudTrail Insights event: a summary of unusual API activity, no call of its own": 1
        }


def test_an_eventbridge_event_in_a_log_group_is_read_too():
    """An EventBridge rule whose target is a log group writes each event as a log event's message."""
    rec = record(1)
    (event,) = parse(
        line(delivery(json.dumps(eventbridge(rec)), json.dumps(eventbridge({}, EC2_STATE))))
    ).events
    assert event == alone([rec])[0]


def test_pretty_printed_envelopes_are_read_whole():
    rec = record(1)
    for envelope in (eventbridge(rec), delivery(json.dumps(rec))):
        (event,) = parse(json.dumps(envelope, indent=2).encode()).events
        assert event == alone([rec])[0]


# --- skips ---------------------------------------------------------------------------------------------
def test_other_detail_types_are_skipped_naming_them():
    state_change = eventbridge({"instance-id": "i-0abcd1234ef567890", "state": "running"}, EC2_STATE)
    long_name = eventbridge({}, "Custom " + "x" * 500)
    out = parse(line(state_change) + b"\n" + line(long_name) + b"\n" + line(eventbridge(record(1))))
    assert len(out.events) == 1 and out.dlqs == []
    reasons = list(out.skipped)
    assert reasons[0] == f"EventBridge {EC2_STATE!r} event: not a CloudTrail record"
    assert reasons[1].startswith("EventBridge 'Custom xxx") and len(reasons[1]) < 130  # clipped


def test_control_messages_and_empty_deliveries_are_skipped():
    control = delivery(
        "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.", message_type="CONTROL_MESSAGE"
    )
    out = parse(line(control) + b"\n" + line(delivery()))
    assert (out.events, out.dlqs) == ([], [])
    assert out.skipped == {
        "CloudWatch Logs CONTROL_MESSAGE": 1,
        "CloudWatch Logs DATA_MESSAGE without log events": 1,
    }


# --- bad records and malformed envelopes ---------------------------------------------------------------
def test_a_bad_record_among_good_ones_goes_to_the_dlq_alone_with_its_plain_reason():
    bad = record(2, eventTime=5)
    messages = [json.dumps(record(1)), json.dumps(bad), "not json", json.dumps(record(3))]
    out = parse(line(delivery(*messages)) + b"\n" + line(eventbridge(bad)))
    assert [e.extra["eventID"] for e in out.events] == ["id-1", "id-3"]
    plain_dlq = parse(line(bad)).dlqs[0]
    assert [(d.reason, d.line) for d in out.dlqs] == [
        (plain_dlq.reason, 1),
        (f"{ENVELOPE}: logEvents[2] message: invalid JSON: not a well-formed JSON document", 1),
        (plain_dlq.reason, 2),
    ]
    assert plain_dlq.reason == "record id-2: bad eventTime 5: not a string"
    assert out.dlqs[0].raw == out.dlqs[2].raw == plain_dlq.raw  # the record, not its envelope
    assert out.dlqs[1].raw == "not json"


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (eventbridge(None), NO_DETAIL),
        ({k: v for k, v in eventbridge(None).items() if k != "detail"}, NO_DETAIL),
        (eventbridge([record(1)]), NO_DETAIL),
        (eventbridge(record(1), detail_type=5), "EventBridge event whose detail-type 5 is not a string"),
        (delivery(logEvents={"message": "{}"}), f"{ENVELOPE}: DATA_MESSAGE without a logEvents list"),
        ({"messageType": "DATA_MESSAGE"}, f"{ENVELOPE}: DATA_MESSAGE without a logEvents list"),
        (delivery(message_type="DATA"), NOT_A_KIND.format("'DATA'")),
        ({"messageType": None}, NOT_A_KIND.format("None")),
    ],
)  # fmt: skip
def test_a_malformed_envelope_goes_to_the_dlq_whole_with_its_reason(envelope, reason):
    data = line(envelope)
    out = parse(data + b"\n" + line(record(1)))
    assert [d.reason for d in out.dlqs] == [reason]
    assert out.dlqs[0].raw == data.decode()
    assert [e.extra["eventID"] for e in out.events] == ["id-1"]  # the next line is read


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"id": "1", "timestamp": 1709633100000, "message": 7}, "logEvents[0] has no message string"),
        ({"id": "1", "timestamp": 1709633100000}, "logEvents[0] has no message string"),
        ("a log event", "logEvents[0] has no message string"),
        ({"timestamp": "now", "message": json.dumps(record(2))}, "logEvents[0] timestamp 'now' is not epoch ms"),
        ({"timestamp": True, "message": json.dumps(record(2))}, "logEvents[0] timestamp True is not epoch ms"),
        ({"id": "1", "message": "[1, 2]"}, "logEvents[0] message is not a JSON object"),
        ({"message": json.dumps(delivery(json.dumps(record(2))))}, "logEvents[0] message is not a JSON object"),
        ({"id": "1", "message": ""}, "logEvents[0] message: invalid JSON: not a well-formed JSON document"),
    ],
)  # fmt: skip
def test_a_malformed_log_event_goes_to_the_dlq_alone(entry, reason):
    document = delivery(json.dumps(record(1)))
    document["logEvents"].insert(0, entry)
    out = parse(line(document))
    assert [d.reason for d in out.dlqs] == [f"{ENVELOPE}: {reason}"]
    assert [e.extra["eventID"] for e in out.events] == ["id-1"]


# --- hostile messages ------------------------------------------------------------------------------------
def test_hostile_messages_are_refused_and_the_rest_is_read():
    deep = "[" * 100_000 + "]" * 100_000  # a string in the envelope, so only its own decoding sees it
    long_number = json.dumps(record(2))[:-1] + ', "bytes": ' + "9" * 5000 + "}"
    deep_record = json.dumps(record(3, requestParameters=json.loads("[" * 70 + "]" * 70)))
    out = parse(line(delivery(deep, json.dumps(record(1)), long_number, deep_record, json.dumps(record(4)))))
    assert [e.extra["eventID"] for e in out.events] == ["id-1", "id-4"]
    assert [d.reason for d in out.dlqs] == [
        f"{ENVELOPE}: logEvents[0] message: JSON nested deeper than 64 levels",
        f"{ENVELOPE}: logEvents[2] message: invalid JSON: not a well-formed JSON document",
        f"{ENVELOPE}: logEvents[3] message: JSON nested deeper than 64 levels",
    ]
    # the same number as a JSON line of its own is refused alike
    assert parse(long_number.encode()).dlqs[0].reason == "invalid JSON: not a well-formed JSON document"


def test_hostile_envelopes_are_refused_as_lines_are():
    deep_detail = line(eventbridge(record(1)))[:-1] + b', "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    long_number = line(eventbridge(record(2)))[:-1] + b', "n": ' + b"9" * 5000 + b"}"
    oversized = line(delivery(json.dumps(record(3, padding="x" * 300_000))))
    data = b"\n".join([deep_detail, long_number, oversized, line(eventbridge(record(4)))])
    out = parse(data, max_line_bytes=200_000)
    assert [e.extra["eventID"] for e in out.events] == ["id-4"]
    assert [d.reason for d in out.dlqs] == [
        "JSON nested deeper than 64 levels",
        "invalid JSON: not a well-formed JSON document",
        f"line of {len(oversized)} bytes is over the 200000 byte limit",
    ]


# --- the envelope module on its own (VPC Flow Logs reuse it with text messages) -----------------------
def test_the_cloudwatch_module_reads_any_text_message():
    flow = "2 111122223333 eni-0a1b2c3d 10.0.1.5 10.0.2.7 443 49152 6 10 840 1709633100 1709633160 ACCEPT OK"
    document = delivery(flow, logGroup="vpc-flow-logs", logStream="eni-0a1b2c3d-all")
    assert is_delivery(document) and not is_delivery(record(1)) and not is_delivery([document])
    opened = open_delivery(document)
    assert (opened.control, opened.log_group, opened.log_stream) == (
        False,
        "vpc-flow-logs",
        "eni-0a1b2c3d-all",
    )
    assert read_log_event(opened.entries[0], 0) == LogEvent(flow, 1709633100000)
    assert read_log_event({"message": flow}, 3) == LogEvent(flow, None)
    odd_names = open_delivery(delivery(flow, logGroup=7, logStream="x" * 513))
    assert (odd_names.log_group, odd_names.log_stream) == (None, None)  # not needed to read a record
    assert open_delivery(delivery(message_type="CONTROL_MESSAGE")).control
    with pytest.raises(DeliveryRefused, match=r"logEvents\[3\] has no message string"):
        read_log_event({"message": None}, 3)
