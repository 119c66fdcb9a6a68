"""Issue 18's hostile records for the host and control-plane parsers (auditd, Falco, syslog,
CloudTrail): each goes to the DLQ with a reason in our words naming the field (or is read as
unset), the rest of its file is parsed, and nothing out of bounds is emitted."""

from __future__ import annotations

import json

from ingest.bounds import violations
from ingest.parsers import ListOutput, ParseContext, parse_bytes
from ingest.parsers.json_stream import DepthScanner
from ingest.schema import AuthEvent, Event, ProcessEvent, decode_event, encode_event

GOOD_FALCO = (
    b'{"hostname":"hv-01","output_fields":{"proc.pid":7,"user.uid":0,"evt.type":"openat"},'
    b'"rule":"r","time":"2024-05-18T10:20:05Z"}'
)


def parse(fmt: str, data: bytes, **ctx) -> ListOutput:
    out = parse_bytes(fmt, data, ParseContext(reference_ms=1_733_000_000_000, **ctx))
    assert violations(out.events) == []
    for event in out.events:
        assert decode_event(encode_event(event)) == event
    return out


def process(event: Event) -> ProcessEvent:
    assert isinstance(event, ProcessEvent), event
    return event


def outcomes(out: ListOutput) -> int:
    return len(out.events) + len(out.dlqs) + sum(out.skipped.values())


# --- Falco ---------------------------------------------------------------------------------------
def falco_line(time: object = "2024-05-18T10:20:05Z", **fields: object) -> bytes:
    return json.dumps({"hostname": "hv-01", "output_fields": fields, "time": time}).encode()


def test_falco_time_not_a_string_is_rejected_and_the_file_goes_on():
    out = parse("falco", b'{"time":5,"output_fields":{}}\n' + GOOD_FALCO + b"\n")
    assert [d.reason for d in out.dlqs] == ["bad time 5"]
    assert len(out.events) == 1 and process(out.events[0]).pid == 7


def test_falco_ids_are_not_coerced():
    lines = [
        falco_line(**{"proc.pid": -5}),
        falco_line(**{"proc.ppid": True}),
        falco_line(**{"proc.pid": 80.9}),
        falco_line(**{"user.uid": -7}),
        falco_line(**{"evt.count": 10**300}),
        falco_line(time="1970-01-01T00:00:00Z"),
        falco_line(**{"user.uid": -1}),
        falco_line(**{"user.uid": 4294967295}),
        falco_line(**{"user.uid": "1000"}),
    ]
    out = parse("falco", b"\n".join(lines))
    reasons = [d.reason for d in out.dlqs]
    assert reasons[:5] == [
        "bad proc.pid -5: out of range",
        "bad proc.ppid True: not an integer",
        "bad proc.pid 80.9: not an integer",
        "bad user.uid -7: out of range",
        "bad evt.count " + repr(10**300)[:37] + "...: beyond 64 bits",
    ]
    assert "field ts" in reasons[5] and reasons[5].endswith(": 0")  # epoch 0 is not a plausible time
    uids = [process(e).uid for e in out.events]
    assert uids == [None, None, 1000]  # Falco's unknown uid is unset, never root


# --- CloudTrail ----------------------------------------------------------------------------------
def trail_record(n: int, **changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "eventTime": f"2024-03-05T10:0{n}:00Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "eventID": f"id-{n}",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/bob"},
        "sourceIPAddress": "10.2.0.7",
        "recipientAccountId": "111122223333",
    }
    record.update(changes)
    return record


def test_cloudtrail_bad_event_time_mid_file_keeps_the_rest():
    records = [trail_record(1), trail_record(2, eventTime=5), trail_record(3)]
    one_line = json.dumps({"Records": records}).encode()
    pretty = json.dumps({"Records": records}, indent=2).encode()
    json_lines = b"\n".join(json.dumps(r).encode() for r in records)
    for data in (one_line, pretty, json_lines):
        out = parse("cloudaudit", data)
        assert [e.extra["eventID"] for e in out.events] == ["id-1", "id-3"]
        assert [d.reason for d in out.dlqs] == ["record id-2: bad eventTime 5: not a string"]


def test_cloudtrail_wrong_types_are_rejected_naming_the_field():
    records = [
        trail_record(1, recipientAccountId=1),
        trail_record(2, sourceIPAddress=12345),
        trail_record(3, eventTime="1970-01-01T00:00:00Z"),
        trail_record(4, userIdentity={"type": "Root", "accountId": 444455556666}),
        trail_record(5),
    ]
    out = parse("cloudaudit", json.dumps({"Records": records}).encode())
    reasons = [d.reason for d in out.dlqs]
    assert reasons[:2] == [
        "record id-1: bad recipientAccountId 1: not a string",
        "record id-2: bad sourceIPAddress 12345: not a string",
    ]
    assert "field ts" in reasons[2]  # epoch 0: refused by the schema's bounds, naming the field
    assert reasons[3] == "record id-4: bad userIdentity.accountId 444455556666: not a string"
    assert [e.extra["eventID"] for e in out.events] == ["id-5"]
    assert outcomes(out) == len(records)


def test_cloudtrail_document_too_deep_stops_with_a_reason_and_next_lines_go_on():
    # ijson's memory grows with the square of the depth: this would take gigabytes
    first = json.dumps(trail_record(1)).encode()
    deep = b'{"Records":[' + first + b"," + b" " * 70_000 + b"[" * 100_000
    out = parse("cloudaudit", deep + b"\n" + json.dumps(trail_record(2)).encode() + b"\n")
    assert [e.extra["eventID"] for e in out.events] == ["id-1", "id-2"]
    (dlq,) = out.dlqs
    assert dlq.reason.startswith("CloudTrail document unreadable after 1 records: JSON nested deeper than 64")


def test_cloudtrail_record_over_the_limit_and_broken_json_are_reported():
    big = trail_record(2, padding="x" * 400_000)
    doc = json.dumps({"Records": [trail_record(1), big, trail_record(3)]}).encode()
    out = parse("cloudaudit", doc, max_line_bytes=200_000)
    assert [e.extra["eventID"] for e in out.events] == ["id-1"]
    assert "record over the 200000 byte limit" in out.dlqs[0].reason
    broken = json.dumps({"Records": [trail_record(1), trail_record(2)]}).encode()[:-30]
    out = parse("cloudaudit", broken)
    assert [e.extra["eventID"] for e in out.events] == ["id-1"]
    assert out.dlqs[0].reason.startswith("CloudTrail document unreadable after 1 records: invalid JSON")


def test_cloudtrail_mixed_json_lines_and_documents():
    data = b"\n".join(
        [
            json.dumps(trail_record(1)).encode(),
            json.dumps({"Records": [trail_record(2), trail_record(3)]}).encode(),
            b"",
            b"not json",
            json.dumps(trail_record(4)).encode(),
        ]
    )
    out = parse("cloudaudit", data)
    assert [e.extra["eventID"] for e in out.events] == ["id-1", "id-2", "id-3", "id-4"]
    assert [(d.line, d.reason) for d in out.dlqs] == [(4, "invalid JSON: not a well-formed JSON document")]
    assert out.skipped == {"blank line": 1}


def test_depth_scanner_ignores_brackets_in_strings_across_pieces():
    doc = json.dumps({"a": ["[[[[", '\\"[[{{', {"b": "]]]"}]}).encode()
    for cut in range(len(doc)):
        scanner = DepthScanner(3)
        assert scanner.feed(doc[:cut]) is None and scanner.feed(doc[cut:]) is None
        assert scanner.depth == 0 and not scanner.in_string
    assert DepthScanner(3).feed(b'{"a":[[[1]]]}') == "JSON nested deeper than 3 levels"


def test_depth_scanner_refuses_numbers_too_long_for_ijson_across_pieces():
    number = b"1" * 4001
    doc = b'{"a":"' + b"2" * 5000 + b'","b":' + number + b"}"
    assert DepthScanner(64).feed(doc) == "a number of more than 4000 digits"
    for cut in (7, 5010, 5015, 9000):
        scanner = DepthScanner(64)
        assert scanner.feed(doc[:cut]) is None
        assert scanner.feed(doc[cut:]) == "a number of more than 4000 digits"
    assert DepthScanner(64).feed(b'{"a":"' + b"2" * 5000 + b'","b":' + number[:4000] + b"}") is None


def test_cloudtrail_numbers_beyond_64_bits_do_not_end_the_document():
    records = [trail_record(1, bytes=10**300), trail_record(2, big=1e300), trail_record(3)]
    doc = json.dumps({"Records": records, "digest": 10**80}).encode()
    doc = doc.replace(b"1e+300", b"1e999")  # a float no JSON decoder holds
    out = parse("cloudaudit", doc)
    assert [e.extra["eventID"] for e in out.events] == ["id-1", "id-3"]
    assert out.events[0].extra["bytes"] == 10**300  # as the JSON-lines path reads it
    assert [d.reason for d in out.dlqs] == ["record: invalid JSON: not a well-formed JSON document"]
    huge = json.dumps({"Records": [trail_record(1)]}).encode()[:-2] + b', "x": ' + b"9" * 5000 + b"}"
    out = parse("cloudaudit", huge + b"\n" + json.dumps(trail_record(2)).encode())
    assert [e.extra["eventID"] for e in out.events] == ["id-2"]  # record 1 was in the refused read
    assert "a number of more than 4000 digits" in out.dlqs[0].reason


# --- syslog --------------------------------------------------------------------------------------
def test_syslog_repeated_zero_times_goes_to_the_dlq():
    data = (
        b"Dec 10 06:55:46 h sshd[1]: message repeated 0 times: [ Failed password for root from 1.2.3.4 port 2 ssh2]\n"
        b"Dec 10 06:55:47 h sshd[1]: message repeated 3 times: [ Failed password for root from 1.2.3.4 port 2 ssh2]\n"
        b"Dec 10 06:55:48 h CRON[2]: message repeated 4 times: [ (root) CMD (true)]\n"
        b"Dec 10 06:55:49 h sshd[1]: Failed password for root from 1.2.3.4 port 70000 ssh2\n"
        b"1970-01-01T00:00:00Z h sshd[1]: Failed password for root from 1.2.3.4 port 2 ssh2\n"
    )
    out = parse("syslog", data, year=2023)
    reasons = [d.reason for d in out.dlqs]
    assert reasons[:2] == ["bad repeat count 0 in 'message repeated N times'", "bad port 70000"]
    assert "field ts" in reasons[2]
    assert len(out.events) == 3
    assert out.skipped == {"CRON: repeated non-auth message": 1}  # one line, one skip


def test_a_huge_repeat_count_becomes_at_most_100_events_and_says_so():
    line = b"Dec 10 06:55:47 h sshd[1]: message repeated %s times: [ Failed password for root from 1.2.3.4 port 2 ssh2]\n"
    out = parse("syslog", line % b"4000000000" + line % b"100" + line % b"101", year=2023)
    assert len(out.events) == 300
    assert len({e.id for e in out.events}) == 300
    assert out.skipped == {"sshd: repeat count over 100, read as 100": 2}
    assert not out.dlqs


# --- auditd --------------------------------------------------------------------------------------
def syscall_group(serial: int, fields: str, secs: str = "1709632900") -> bytes:
    return (
        f"type=SYSCALL msg=audit({secs}.000:{serial}): arch=c000003e syscall=59 success=yes exit=0 "
        f'{fields} comm="x" exe="/x"\ntype=EOE msg=audit({secs}.000:{serial}): \n'
    ).encode()


def test_auditd_unset_uids_are_none_and_bad_ids_go_to_the_dlq():
    data = b"".join(
        [
            syscall_group(1, "pid=2 ppid=1 uid=-1"),
            syscall_group(2, "pid=2 ppid=1 uid=4294967295"),
            syscall_group(3, "pid=2 ppid=1 uid=abc"),
            syscall_group(4, "pid=-3 ppid=1 uid=0"),
            syscall_group(5, "pid=2 ppid=1 uid=1000 auid=" + "1" + "0" * 300),
            syscall_group(6, "pid=2 ppid=1 uid=0", secs="0"),
            syscall_group(7, "pid=2 ppid=1 uid=0", secs="9" * 5000),
        ]
    )
    out = parse("auditd", data)
    assert [process(e).uid for e in out.events] == [None, None, 1000]  # unset, never 0 (root)
    assert out.events[2].extra["auid"] == "1" + "0" * 300  # beyond 64 bits: kept as text
    reasons = [d.reason for d in out.dlqs]
    assert reasons[:2] == ["auditd SYSCALL/EOE: bad uid 'abc'", "auditd SYSCALL/EOE: bad pid '-3'"]
    assert "field ts" in reasons[2] and reasons[3].startswith("bad audit timestamp or serial")
    # 7 groups of 2 lines but the last, rejected on its own line and on its EOE line
    assert outcomes(out) == data.count(b"\n")


def test_auditd_addr_that_is_not_an_address_is_unset():
    line = (
        b"type=USER_AUTH msg=audit(1709632900.000:9): pid=1 uid=0 auid=4294967295 ses=4294967295 "
        b'msg=\'op=PAM:authentication acct="root" exe="/usr/sbin/sshd" hostname=? addr=abc '
        b"terminal=ssh res=failed'\n"
    )
    out = parse("auditd", line)
    (event,) = out.events
    assert isinstance(event, AuthEvent), event
    assert event.src_ip is None and event.extra["addr"] == "abc"


def test_cloudtrail_crlf_lines_and_an_over_long_line():
    good = json.dumps(trail_record(1)).encode()
    long_line = json.dumps(trail_record(2, padding="x" * 300_000)).encode()
    out = parse("cloudaudit", good + b"\r\n" + long_line + b"\r\n" + good + b"\r\n", max_line_bytes=100_000)
    assert [e.extra["eventID"] for e in out.events] == ["id-1", "id-1"]
    (dlq,) = out.dlqs
    assert (dlq.line, dlq.raw_len) == (2, len(long_line) + 1)  # its \r counted, over the limit
    assert dlq.reason == f"line of {len(long_line) + 1} bytes is over the 100000 byte limit"
