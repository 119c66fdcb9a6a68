"""The canonical event's bounds (ingest.schema types and SHAPES), as ingest.bounds checks them on
what parsers emit: the batch check, the single-event check and the named reason agree."""

from __future__ import annotations

import msgspec
import pytest

from ingest.bounds import violations
from ingest.parsers.base import BoundedOutput, ListOutput
from ingest.schema import (
    TS_MIN_MS,
    AuditEvent,
    AuthEvent,
    Event,
    FlowEvent,
    ProcessEvent,
    decode_event,
    encode_event,
)

TS = 1_716_027_750_500
FLOW = FlowEvent(id="f", ts=TS, source="zeek", tenant="t-acme", src_ip="10.0.0.1", dst_ip="2001:db8::1")
PROC = ProcessEvent(id="p", ts=TS, source="auditd", exe="/bin/sh", syscall="execve", uid=None)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (msgspec.structs.replace(FLOW, src_port=70000), "src_port"),
        (msgspec.structs.replace(FLOW, dst_port=-1), "dst_port"),
        (msgspec.structs.replace(FLOW, src_port=True), "src_port"),  # true is not a port
        (msgspec.structs.replace(FLOW, dst_port=80.9), "dst_port"),  # nor is 80.9
        (msgspec.structs.replace(FLOW, bytes_out=10**300), "bytes_out"),
        (msgspec.structs.replace(FLOW, duration_ms=-5), "duration_ms"),
        (msgspec.structs.replace(FLOW, ts=0), "ts"),
        (msgspec.structs.replace(FLOW, ts=-62_135_596_800_000), "ts"),  # year 1
        (msgspec.structs.replace(FLOW, proto="999"), "proto"),
        (msgspec.structs.replace(FLOW, proto="18446744073709551616"), "proto"),
        (msgspec.structs.replace(FLOW, src_ip="abc"), "src_ip"),
        (msgspec.structs.replace(FLOW, src_ip=12345), "src_ip"),
        (msgspec.structs.replace(FLOW, tenant=1), "tenant"),
        (msgspec.structs.replace(FLOW, tenant="../etc"), "tenant"),
        (msgspec.structs.replace(FLOW, action="maybe"), "action"),
        (msgspec.structs.replace(PROC, uid=-1), "uid"),
        (msgspec.structs.replace(PROC, pid=-7), "pid"),
        (
            AuditEvent(
                id="a",
                ts=TS,
                source="cloudtrail",
                principal="p",
                action="s3.GetObject",
                resource="r",
                src_ip="not-an-ip",
            ),
            "src_ip",
        ),
        (
            AuthEvent(id="u", ts=TS, source="sshd", user="root", result="failure", src_ip="300.1.1.1"),
            "src_ip",
        ),
    ],
)
def test_out_of_bounds_is_named_alone_and_among_good_events(event, field):
    (_, reason), *more = violations([FLOW, event, FLOW]) if type(event) is FlowEvent else violations([event])
    assert not more and reason.startswith(f"{event.kind_name()} event field {field} out of bounds")
    assert violations([event]) == [(0, reason)]


def test_good_events_pass_and_round_trip():
    events: list[Event] = [
        FLOW,
        msgspec.structs.replace(FLOW, proto="17", src_ip="::ffff:10.1.1.10", ts=TS_MIN_MS),
    ]
    assert violations(events) == [] and violations([PROC, msgspec.structs.replace(PROC, uid=0)]) == []
    assert [decode_event(encode_event(e)) for e in events] == events


def test_the_decoder_enforces_the_numeric_bounds_too():
    with pytest.raises(msgspec.ValidationError):
        decode_event(encode_event(msgspec.structs.replace(FLOW, src_port=70000)))


def test_bounded_output_sends_the_bad_event_to_the_dlq_and_keeps_order():
    out = ListOutput()
    bounded = BoundedOutput(out, file="x.log")
    bad = msgspec.structs.replace(FLOW, id="bad", src_port=70000)
    bounded.event_batch([FLOW, bad, msgspec.structs.replace(FLOW, id="g2")])
    bounded.event(bad)
    assert [e.id for e in out.events] == ["f", "g2"]
    assert [d.reason for d in out.dlqs] == [
        "flow event field src_port out of bounds or of the wrong type: 70000"
    ] * 2
    assert out.dlqs[0].file == "x.log" and b'"src_port":70000' in out.dlqs[0].raw.encode()


def test_a_value_good_for_one_shaped_field_is_not_good_for_another():
    # "999" is a well-formed tenant id (an unmapped account id may be one) but no protocol.
    assert violations([msgspec.structs.replace(FLOW, tenant="999")]) == []
    (_, reason), *_ = violations([msgspec.structs.replace(FLOW, proto="999")])
    assert reason.startswith("flow event field proto out of bounds")


def test_events_are_left_out_of_the_cyclic_collector_with_or_without_extra() -> None:
    import gc

    with_extra = msgspec.structs.replace(FLOW, extra={"tcp_flags": 2, "labels": ["a", {"b": 1}]})
    events = [FLOW, PROC, with_extra, *(decode_event(encode_event(e)) for e in (FLOW, PROC, with_extra))]
    events += [AuditEvent(id="a", ts=TS, source="cloudtrail", principal="p", action="x", resource="r"),
               AuthEvent(id="u", ts=TS, source="sshd", user="root", result="failure")]  # fmt: skip
    assert not any(gc.is_tracked(e) for e in events)
    assert decode_event(encode_event(with_extra)) == with_extra  # the decoded extra is intact
