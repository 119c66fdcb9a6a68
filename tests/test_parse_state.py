"""The parse stage's saved headers (``streams.parse_stage`` state topic, ``Parser.prime``): a column
format's rows read by a new parser primed with the header lines an earlier one saved give the
events (and ids) of the uninterrupted file, and priming counts nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.parsers import get_format
from ingest.parsers.base import ListOutput, ParseContext, Parser
from ingest.schema import Event
from streams.parse_stage import HeaderState, ParseStage, state_key
from tests.test_raw_records import PREFIX, ListSink, Msg

SAMPLES = Path(__file__).parent / "samples"

# CICFlowMeter's column names, written here (no published data set is used)
_CIC = [
    b"Flow ID,Source IP,Source Port,Destination IP,Destination Port,Protocol,Timestamp,Flow Duration,"
    b"Total Fwd Packets,Total Backward Packets,Total Length of Fwd Packets,Total Length of Bwd Packets,Label",
    b"10.1.0.5-10.2.0.7-52344-5432-6,10.1.0.5,52344,10.2.0.7,5432,6,05/03/2024 10:00:00,2504301,42,71,3644,91905,BENIGN",
    b"10.1.0.5-10.2.0.7-40000-23-6,10.1.0.5,40000,10.2.0.7,23,6,05/03/2024 10:00:01,312,1,1,0,0,BENIGN",
    b"not,a,row",
    b"198.51.100.9-10.1.0.5-33211-53-17,198.51.100.9,33211,10.1.0.5,53,17,05/03/2024 10:00:02,10000,1,1,35,51,BENIGN",
]


def _lines(fmt: str) -> list[bytes]:
    sample = {"zeek": "zeek_conn.log", "nprobe-csv": "nprobe.csv", "vpcflow": "vpcflow_custom.log",
              "argus": "argus.binetflow", "nfdump": "nfdump17.csv"}  # fmt: skip
    if fmt == "cicflowmeter":
        return list(_CIC)
    return (SAMPLES / sample[fmt]).read_bytes().splitlines()


def _parser(fmt: str, out: ListOutput) -> Parser:
    return get_format(fmt).factory(out, ParseContext())


def _total(out: ListOutput) -> int:
    return len(out.events) + len(out.dlqs) + sum(out.skipped.values())


FORMATS = ["zeek", "nprobe-csv", "vpcflow", "argus", "cicflowmeter", "nfdump"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_primed_parser_reads_the_rows_after_any_cut_as_the_whole_file(fmt: str) -> None:
    lines = _lines(fmt)
    whole = ListOutput()
    _parser(fmt, whole).feed_lines(lines)
    assert whole.events, "the sample must give events"
    want = [e.id for e in whole.events]
    for cut in range(1, len(lines)):
        first = ListOutput()
        before = _parser(fmt, first)
        before.feed_lines(lines[:cut])
        saved = list(before.header_lines.values())
        assert saved, f"{fmt}: no header kept after {cut} lines"
        second = ListOutput()
        after = _parser(fmt, second)
        after.prime(saved)
        assert _total(second) == 0  # priming reads no record
        after.feed_lines(lines[cut:])
        after.close()
        assert [e.id for e in first.events + second.events] == want, (fmt, cut)
        assert [e for e in first.events + second.events] == whole.events
        assert _total(second) == len(lines) - cut  # every row read counted once
        assert not any("header" in d.reason or "record before" in d.reason for d in second.dlqs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_without_priming_the_rows_after_the_header_are_lost(fmt: str) -> None:
    """What priming fixes (the test above could not fail otherwise)."""
    lines = _lines(fmt)
    whole = ListOutput()
    _parser(fmt, whole).feed_lines(lines)
    cut = next(i for i in range(len(lines)) if lines[i][:1] != b"#") + 1  # just past the header
    rest = ListOutput()
    _parser(fmt, rest).feed_lines(lines[cut:])
    assert len(whole.events) > 1 and rest.events == [] and rest.dlqs


def test_zeek_keeps_one_line_per_directive_and_a_new_block_forgets_the_old() -> None:
    lines = _lines("zeek")
    out = ListOutput()
    parser = _parser("zeek", out)
    parser.feed_lines(lines * 3)  # cat of three files
    kinds = list(parser.header_lines)
    assert kinds == ["separator", "set_separator", "empty_field", "unset_field", "path", "fields", "types"]
    seq = parser.header_seq
    parser.feed_lines(lines[-3:])  # rows only: no change
    assert parser.header_seq == seq
    parser.feed_lines([b"#separator \\x09"])
    assert list(parser.header_lines) == ["separator"] and parser.header_seq > seq


# --- the stage ----------------------------------------------------------------------------------
def _zeek_messages(
    lines: list[bytes], start: int = 0, source: bytes = b"sensor-1:/zeek/conn.log"
) -> list[Msg]:
    return [Msg(PREFIX + "zeek", 0, start + i, line, _key=source) for i, line in enumerate(lines)]


def _restart(
    first: ParseStage, states: list[tuple[bytes, bytes | None]], batch: list[Msg], commit: int
) -> tuple[ParseStage, ListSink]:
    sink = ListSink()
    stage = ParseStage(sink, PREFIX)
    stage.load_states(states)
    stage.process(batch[commit:])
    stage.flush_idle(everything=True)
    return stage, sink


def test_a_stage_restarted_past_the_header_parses_the_rows() -> None:
    lines = _lines("zeek")
    want = [e.id for e in _whole("zeek", lines)]
    batch = _zeek_messages(lines)
    for crash_after in range(1, len(batch)):
        sink = ListSink()
        stage = ParseStage(sink, PREFIX)
        stage.process(batch[:crash_after])
        offsets = stage.take_commits()
        states = stage.take_states(offsets)
        assert [k for k, _ in states] == [state_key((PREFIX + "zeek", 0, "sensor-1:/zeek/conn.log", None))]
        stage.committed(offsets)
        commit = offsets[(PREFIX + "zeek", 0)]
        again, second = _restart(stage, states, batch, commit)
        assert [e.id for e in sink.events + second.events] == want, crash_after
        assert not second.dlqs
        out = again.outputs["zeek"]  # records in = events + DLQ + skips, for the records read
        assert out.parsed + out.dlqs + sum(out.skipped.values()) == len(batch) - commit


def test_a_header_taken_in_an_aborted_transaction_is_not_kept() -> None:
    """The state records of a transaction that is aborted never reach the stage's saved states:
    after the rewind the rows from the last commit are read with the header in force there."""
    lines = _lines("zeek")
    dns = [line.replace(b"#path\tconn", b"#path\tdns") for line in lines[:8]]
    file = lines + dns + lines[8:] + lines  # conn, a dns block (rows skipped), conn again
    want = [e.id for e in _whole("zeek", file)]
    batch = _zeek_messages(file)
    sink = ListSink()
    stage = ParseStage(sink, PREFIX, recent_ids=0)  # the file repeats its rows: none dropped as copies
    stage.process(batch[:10])  # header + 2 rows: committed with the conn header
    positions = stage.take_positions()
    offsets = {tp: p.q for tp, p in positions.items()}
    states = stage.take_states(offsets)
    stage.committed(offsets, positions)
    kept = dict(stage.states)
    before = len(sink.events)
    stage.process(batch[10 : len(lines) + 10])  # the dns block and two of its rows
    taken = stage.take_states({tp: p.q for tp, p in stage.take_positions().items()})
    saved = HeaderState.decode(taken[0][1] or b"")
    assert saved is not None and b"#path\tdns" in saved.lines
    del sink.events[before:]  # the transaction is aborted: its output is gone
    seek = stage.rewind()
    assert seek == {(PREFIX + "zeek", 0): 10} and stage.states == kept
    stage.process(batch[10:])
    stage.flush_idle(everything=True)
    assert [e.id for e in sink.events] == want and not sink.dlqs
    assert len(states) == 1


def test_an_oversized_header_is_deleted_not_kept_stale() -> None:
    lines = _lines("zeek")
    sink = ListSink()
    stage = ParseStage(sink, PREFIX, max_header_bytes=4096)
    stage.process(_zeek_messages(lines))
    first = stage.take_states(stage.take_commits())
    assert first[0][1] is not None
    stage.committed({(PREFIX + "zeek", 0): len(lines)})
    wide = b"#fields\t" + b"\t".join(b"c%d" % i for i in range(2000))
    stage.process(_zeek_messages([lines[0], wide], start=len(lines)))
    second = stage.take_states(stage.take_commits())
    assert second == [(first[0][0], None)]  # a deletion: a restart reads without priming
    assert stage.load_states(first + second) == 0


def test_state_records_are_bounded_and_only_for_the_assigned_partitions() -> None:
    lines = _lines("zeek")
    stage = ParseStage(ListSink(), PREFIX, max_state_bytes=3000)
    records = []
    for n in range(20):
        one = ParseStage(ListSink(), PREFIX)
        one.process(_zeek_messages(lines[:8], source=b"s-%d" % n))
        records += one.take_states(one.take_commits())
    assert 0 < stage.load_states(records) < 20  # the oldest dropped past max_state_bytes
    assert stage.load_states([(b"garbage", b"{}"), (records[-1][0], b"not json")]) < 20
    stage.forget({(PREFIX + "zeek", 0)})
    assert stage.states == {}


def test_an_evicted_parser_hands_its_header_to_the_next() -> None:
    lines = _lines("zeek")
    want = _whole("zeek", lines)
    sink = ListSink()
    stage = ParseStage(sink, PREFIX, max_parsers=1, recent_ids=0)  # both sources send the same rows
    a = _zeek_messages(lines, source=b"a")
    b = _zeek_messages(lines, start=len(lines), source=b"b")
    for i in range(len(lines)):  # the two sources alternate: each record evicts the other's parser
        stage.process([a[i]])
        stage.process([b[i]])
    assert not sink.dlqs
    assert len(sink.events) == 2 * len(want)


def _whole(fmt: str, lines: list[bytes]) -> list[Event]:
    out = ListOutput()
    parser = _parser(fmt, out)
    parser.feed_lines(lines)
    parser.close()
    return out.events


def test_header_state_lines_at() -> None:
    state = HeaderState(at=100, lines=(b"new",), prev_at=40, prev=(b"old",))
    assert state.lines_at(100) == (b"new",) and state.lines_at(500) == (b"new",)
    assert state.lines_at(40) == (b"old",) and state.lines_at(99) == (b"old",)
    assert state.lines_at(39) is None
    assert HeaderState.decode(state.encode()) == state
    odd = HeaderState(at=1, lines=(b"\xff\xfe#fields",))
    assert HeaderState.decode(odd.encode()) == odd
