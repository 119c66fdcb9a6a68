"""The parse stage's exactly-once commits (``streams.parse_stage``, Kafka-free core): a transaction
holds the output, the state records and the offsets of the last quiescent point ``q``; a stage
killed at any point (its open transaction aborted) and restarted from ``q`` replays up to ``p``
with no output and then gives every event of the uninterrupted run exactly once, forced finishes
(``flush_idle``) included. The same holds for an abort and rewind inside one process."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingest.dlq import DlqRecord
from ingest.producer import SinkCounters
from ingest.schema import Event
from streams.parse_stage import (
    ParseStage,
    PartitionState,
    partition_of_state_key,
    position_key,
    slot_of_state_key,
    state_key,
)
from tests.test_raw_records import PREFIX, Msg

SAMPLES = Path(__file__).parent / "samples"


@dataclass
class TxnSink:
    """A sink whose output stays in an open transaction until ``commit``; ``abort`` drops it."""

    events: list[Event] = field(default_factory=list)  # committed
    dlqs: list[DlqRecord] = field(default_factory=list)
    open_events: list[Event] = field(default_factory=list)
    open_dlqs: list[DlqRecord] = field(default_factory=list)
    counters: SinkCounters = field(default_factory=SinkCounters)

    def send_event(self, event: Event) -> None:
        self.open_events.append(event)

    def send_dlq(self, record: DlqRecord) -> None:
        self.open_dlqs.append(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def commit(self) -> None:
        self.events += self.open_events
        self.dlqs += self.open_dlqs
        self.abort()

    def abort(self) -> None:
        self.open_events, self.open_dlqs = [], []


@dataclass
class StateTopic:
    """The compacted state topic, as a reader at an assignment sees it (committed records only)."""

    records: list[tuple[bytes, bytes | None]] = field(default_factory=list)


def commit(stage: ParseStage, sink: TxnSink, topic: StateTopic) -> dict[tuple[str, int], int]:
    """What ``run_parse_stage``'s commit does, with the transaction simulated."""
    positions = stage.take_positions()
    offsets = {tp: p.q for tp, p in positions.items()}
    records = stage.take_states(offsets) + [(position_key(tp), p.encode()) for tp, p in positions.items()]
    sink.commit()
    topic.records += records
    stage.committed(offsets, positions)
    return offsets


def _interleaved(*sources: tuple[bytes, list[bytes]], fmt: str) -> list[Msg]:
    """Several sources' lines on partition 0, interleaved (each in its own order)."""
    out: list[Msg] = []
    queues = [(key, list(lines)) for key, lines in sources]
    while any(q for _, q in queues):
        for key, q in queues:
            for _ in range(2):
                if q:
                    out.append(Msg(PREFIX + fmt, 0, len(out), q.pop(0), _key=key))
    return out


def _auditd() -> list[Msg]:
    a = (SAMPLES / "audit.log").read_bytes().splitlines()
    b = (SAMPLES / "auditd_kvm_host.log").read_bytes().splitlines()
    return _interleaved(
        (b"hv-1:/var/log/audit/audit.log", a), (b"hv-2:/var/log/audit/audit.log", b), fmt="auditd"
    )


def _auditd_chunks() -> list[Msg]:
    """Two hosts' auditd logs in long runs of one host each: with the clock moving 6 s a batch,
    one host's held event is finished for silence while the other's partition stays busy, so
    forced finishes fall between ``q`` and ``p``."""
    a = (SAMPLES / "audit.log").read_bytes().splitlines()
    b = (SAMPLES / "auditd_kvm_host.log").read_bytes().splitlines()
    out: list[Msg] = []
    keys = (b"hv-1:/var/log/audit/audit.log", b"hv-2:/var/log/audit/audit.log")
    for n in range(0, max(len(a), len(b)), 9):
        for key, lines, width in ((keys[0], a, 9), (keys[1], b, 9)):
            for line in lines[n : n + width]:
                out.append(Msg(PREFIX + "auditd", 0, len(out), line, _key=key))
    return out


def _syslog() -> list[Msg]:
    a = (SAMPLES / "auth.log").read_bytes().splitlines()
    b = (SAMPLES / "auth_bad.log").read_bytes().splitlines()
    return _interleaved((b"web-1:/var/log/auth.log", a), (b"web-2:/var/log/auth.log", b), fmt="syslog")


def _zeek() -> list[Msg]:
    lines = (SAMPLES / "zeek_conn.log").read_bytes().splitlines()
    # The sample twice, its second rows other connections (their uids changed): the same rows again
    # would be a shipper's copies, which the stage drops (``ingest.recent``).
    again = [line if line.startswith(b"#") else line.replace(b"\tC", b"\tD", 1) for line in lines]
    return _interleaved((b"sensor-1:conn.log", lines + again), fmt="zeek")


class Run:
    """One stage life: batches of ``size`` records, a commit after each; forced finishes (the
    clock jumps past every allowance) before the commit of the batches in ``forced``."""

    def __init__(self, topic: StateTopic, tick: float = 1.0) -> None:
        self.tick = tick
        self.clock = [0.0]
        self.sink = TxnSink()
        self.stage = ParseStage(self.sink, PREFIX, clock=lambda: self.clock[0])
        self.stage.load_states(topic.records)
        self.topic = topic

    def batch(self, msgs: list[Msg], force: bool) -> None:
        self.stage.process(msgs)
        self.clock[0] += self.tick
        if force:
            self.clock[0] += 1000.0
        self.stage.flush_idle()
        commit(self.stage, self.sink, self.topic)


def _reference(msgs: list[Msg], size: int, forced: set[int], crash: int, tick: float = 1.0) -> list[str]:
    """The uninterrupted run with the same forced finishes (those of the crashed life's committed
    batches), the rest read at once and finished at the end."""
    run = Run(StateTopic(), tick)
    for i, start in enumerate(range(0, crash, size)):
        run.batch(msgs[start : min(start + size, crash)], i in forced)
    run.stage.process(msgs[crash:])
    run.stage.flush_idle(everything=True)
    commit(run.stage, run.sink, run.topic)
    return [e.id for e in run.sink.events] + [d.raw for d in run.sink.dlqs]


def _crashed(
    msgs: list[Msg], size: int, forced: set[int], crash: int, extra: int, tick: float = 1.0
) -> tuple[list[str], int]:
    """Run to ``crash`` committing after each batch, read ``extra`` more records (their output in
    the open transaction), die (the transaction aborted); a new stage reads from the committed
    offset to the end. Everything committed by both, and the number of records replayed."""
    topic = StateTopic()
    first = Run(topic, tick)
    for i, start in enumerate(range(0, crash, size)):
        first.batch(msgs[start : min(start + size, crash)], i in forced)
    first.stage.process(msgs[crash : crash + extra])
    first.sink.abort()  # kill -9: the open transaction is aborted
    committed = {tp: p for tp, p in first.stage.parts.items() if p.committed >= 0}
    offset = committed[(msgs[0].topic(), 0)].committed if committed else 0
    second = Run(topic, tick)
    second.stage.process(msgs[offset:])
    second.stage.flush_idle(everything=True)
    commit(second.stage, second.sink, topic)
    out = [e.id for e in first.sink.events + second.sink.events]
    out += [d.raw for d in first.sink.dlqs + second.sink.dlqs]
    return out, second.stage.stats.replayed


def test_forced_finishes_between_q_and_p_are_replayed() -> None:
    msgs = _auditd_chunks()
    closes = 0
    for crash in range(4, len(msgs), 4):
        want = Counter(_reference(msgs, 4, set(), crash, tick=6.0))
        got, _ = _crashed(msgs, 4, set(), crash, 2, tick=6.0)
        assert Counter(got) == want, crash
        topic = StateTopic()
        run = Run(topic, 6.0)
        for start in range(0, crash, 4):
            run.batch(msgs[start : start + 4], False)
        closes += len(run.stage.parts[(PREFIX + "auditd", 0)].closes)
    assert closes > 0  # some commits were made with finishes still to replay


@pytest.mark.parametrize("source", [_auditd, _syslog, _zeek])
def test_a_kill_at_any_point_gives_every_event_exactly_once(source: object) -> None:
    msgs = source()  # type: ignore[operator]
    size = 5
    forced = {1, 4, 9, 10, 17}
    replayed = 0
    for crash in range(size, len(msgs), size):
        for extra in (0, 3):
            want = Counter(_reference(msgs, size, forced, crash))
            got, n = _crashed(msgs, size, forced, crash, extra)
            replayed += n
            assert Counter(got) == want, (crash, extra)
    if source is not _zeek:  # Zeek holds nothing back: q = p at every commit
        assert replayed > 0  # some kills came while a parser held lines: the replay was exercised


def test_without_the_replay_a_kill_duplicates() -> None:
    """What the saved position fixes (the test above could not fail otherwise): a restarted stage
    that reads from ``q`` with its output on gives events twice."""
    msgs = _auditd()
    dupes = 0
    for crash in range(5, len(msgs), 5):
        topic = StateTopic()
        first = Run(topic)
        for start in range(0, crash, 5):
            first.batch(msgs[start : start + 5], False)
        q = first.stage.parts[(PREFIX + "auditd", 0)].committed
        topic.records = [r for r in topic.records if partition_of_state_key(r[0]) is None]  # no positions
        second = Run(topic)
        second.stage.process(msgs[q:])
        second.stage.flush_idle(everything=True)
        commit(second.stage, second.sink, topic)
        ids = Counter(e.id for e in first.sink.events + second.sink.events)
        dupes += sum(n - 1 for n in ids.values())
    assert dupes > 0


def test_an_abort_rewinds_to_the_last_commit() -> None:
    """A producer error aborts the open transaction: the same stage reads again from ``q``,
    replays to ``p`` and goes on; every event once."""
    msgs = _auditd()
    want = Counter(_reference(msgs, 5, set(), len(msgs)))
    for fail in range(7, len(msgs), 6):
        run = Run(StateTopic())
        for start in range(0, fail, 5):
            run.batch(msgs[start : min(start + 5, fail)], False)
        run.stage.process(msgs[fail : fail + 4])
        run.sink.abort()
        seek = run.stage.rewind()
        tp = (PREFIX + "auditd", 0)
        assert seek[tp] <= fail
        run.stage.process(msgs[seek[tp] :])
        run.stage.flush_idle(everything=True)
        commit(run.stage, run.sink, run.topic)
        got = Counter([e.id for e in run.sink.events] + [d.raw for d in run.sink.dlqs])
        assert got == want, fail


def test_a_replaying_partition_is_not_finished_by_the_clock_and_keeps_its_position() -> None:
    msgs = _auditd()
    topic = StateTopic()
    first = Run(topic)
    for start in range(0, 40, 5):
        first.batch(msgs[start : start + 5], False)
    state = first.stage.take_positions() or {}
    part = first.stage.parts[(PREFIX + "auditd", 0)]
    assert not state and part.committed < part.committed_p == 40  # a parser holds lines: q < p
    second = Run(topic)
    second.stage.process(msgs[part.committed : part.committed + 1])
    second.clock[0] += 1000.0
    assert second.stage.flush_idle() == 0  # replaying: nothing is finished by the clock
    positions = second.stage.take_positions()
    assert positions[(PREFIX + "auditd", 0)].p == 40  # a commit mid-replay keeps p
    assert second.sink.open_events == []
    second.stage.process(msgs[part.committed + 1 : 40])  # the replay ends at p, nothing after it
    assert second.sink.open_events == []
    second.clock[0] += 1000.0
    assert second.stage.flush_idle() > 0  # now the clock finishes what the writer held at p
    assert second.sink.open_events


def test_positions_and_keys_round_trip() -> None:
    state = PartitionState(10, 25, (("hv-1:/a", None, 12), ("hv-2:/a", "t-acme", 20)))
    assert PartitionState.decode(state.encode()) == state
    assert PartitionState.decode(b'{"q": 5, "p": 2}') is None  # p before q: not a position
    assert PartitionState.decode(b"not json") is None
    assert PartitionState.decode(b'{"q": 1, "p": 2, "closes": [[1, null, 3]]}') is None
    key = position_key(("ssa.raw.auditd", 3))
    assert partition_of_state_key(key) == ("ssa.raw.auditd", 3) and slot_of_state_key(key) is None
    slot = state_key(("ssa.raw.auditd", 3, "hv-1:/a", None))
    assert partition_of_state_key(slot) is None and slot_of_state_key(slot) is not None


def test_a_parser_holding_lines_is_never_evicted() -> None:
    lines = (SAMPLES / "audit.log").read_bytes().splitlines()
    sink = TxnSink()
    stage = ParseStage(sink, PREFIX, max_parsers=2)
    held = [Msg(PREFIX + "auditd", 0, i, lines[7 + (i % 2)], _key=b"h-%d" % i) for i in range(4)]
    stage.process(held)  # four sources each holding an event with no EOE yet
    assert len(stage.slots) == 4 and all(s.busy for s in stage.slots.values())
    stage.flush_idle(everything=True)
    stage.process([Msg(PREFIX + "auditd", 0, 4, lines[0], _key=b"h-new")])
    assert len(stage.slots) <= 3  # idle ones dropped down to the bound (the new one included)
