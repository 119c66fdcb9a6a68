"""Records a shipper sends again (``ingest.recent``): the parse stage drops an exact copy of a record
whose event it produced lately, counts it as skipped with the reason, and never drops a record
whose first output was in an aborted transaction (read again, it must be produced again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.recent import DUPLICATE, RecentIds
from ingest.tenants import TenantRegistry
from streams.parse_stage import ParseStage
from tests.test_parse_exactly_once import StateTopic, TxnSink, commit
from tests.test_raw_records import PREFIX, ListSink, Msg

SAMPLES = Path(__file__).parent / "samples"
TOPIC = PREFIX + "syslog"


def _msgs(lines: list[bytes], start: int = 0, topic: str = TOPIC) -> list[Msg]:
    return [Msg(topic, 0, start + i, line) for i, line in enumerate(lines)]


def _auth() -> list[bytes]:
    return (SAMPLES / "auth.log").read_bytes().splitlines()


def _read(msgs: list[Msg], recent_ids: int = 65_536) -> tuple[ParseStage, ListSink]:
    """A stage that reads ``msgs`` in one go and finishes: what one reading gives."""
    sink = ListSink()
    stage = ParseStage(sink, PREFIX, recent_ids=recent_ids)
    stage.process(msgs)
    stage.flush_idle(everything=True)
    return stage, sink


# --- RecentIds ---------------------------------------------------------------------------------
def test_an_id_is_a_copy_once_produced_and_forgotten_if_its_transaction_aborts() -> None:
    recent = RecentIds(8)
    assert not recent.seen("a") and recent.seen("a")  # a copy within the open transaction
    recent.abort()
    assert not recent.seen("a")  # its output was aborted: produced again
    recent.commit()
    assert recent.seen("a") and len(recent) == 1


def test_the_ids_are_bounded_by_the_capacity_the_newest_kept() -> None:
    recent = RecentIds(8)
    for i in range(100):
        assert not recent.seen(str(i))
        recent.commit()
        assert len(recent) <= 8
    assert recent.seen("99") and recent.seen("96")  # the last few are remembered
    assert not recent.seen("0")  # long gone: a copy this late passes
    with pytest.raises(ValueError, match="at least 2"):
        RecentIds(1)


def test_an_open_transaction_holds_at_most_the_capacity() -> None:
    recent = RecentIds(4)
    for i in range(10):
        recent.seen(str(i))
    assert len(recent) == 4  # beyond it, ids are not noted (their copies pass)


# --- the stage ---------------------------------------------------------------------------------
def test_a_shippers_copies_are_dropped_and_counted() -> None:
    """A shipper sends 15 lines, restarts, and sends again the 5 it had no acknowledgement for,
    then goes on: every event once (as one reading of the file gives them), the copies' events
    skipped with the reason, as many as a stage that remembers nothing produces twice."""
    lines = _auth()
    resent = _msgs(lines[:15]), _msgs(lines[10:], start=15)  # the copies, then the new lines
    sink, topic = TxnSink(), StateTopic()
    stage = ParseStage(sink, PREFIX)
    assert stage.metrics(now_ms=60_000) == []  # the minute's counts start
    stage.process(resent[0])
    commit(stage, sink, topic)
    stage.process(resent[1])
    stage.flush_idle(everything=True)
    commit(stage, sink, topic)
    _, once = _read(_msgs(lines))
    forgetful, twice = _read([*resent[0], *resent[1]], recent_ids=0)
    assert [e.id for e in sink.events] == [e.id for e in once.events]
    copies = len(twice.events) - len(once.events)
    assert copies > 0 and stage.outputs["syslog"].skipped[DUPLICATE] == copies
    (doc,) = stage.metrics(now_ms=60_000, final=True)
    assert doc["skipped"] == sum(forgetful.outputs["syslog"].skipped.values()) + copies
    assert (doc["records"], doc["events"]) == (len(lines) + 5, len(once.events))


def test_a_record_whose_output_was_aborted_is_produced_again() -> None:
    lines = _auth()[:20]
    sink, topic = TxnSink(), StateTopic()
    stage = ParseStage(sink, PREFIX)
    stage.process(_msgs(lines[:10]))
    commit(stage, sink, topic)
    stage.process(_msgs(lines[10:], start=10))
    sink.abort()  # the transaction with lines 10-19's events is aborted
    seek = stage.rewind()
    assert seek == {(TOPIC, 0): 10}
    stage.process(_msgs(lines[10:], start=10))  # read again from the last commit
    stage.flush_idle(everything=True)
    commit(stage, sink, topic)
    _, whole = _read(_msgs(lines))
    assert [e.id for e in sink.events] == [e.id for e in whole.events]
    assert not stage.outputs["syslog"].skipped[DUPLICATE]


def test_a_copy_on_another_tenants_topic_is_not_a_copy() -> None:
    """Each tenant's raw topic remembers its own ids: B sending A's lines (it could only guess them)
    drops nothing of A's."""
    registry = TenantRegistry.load(SAMPLES / "tenants.yaml")
    routes: dict[str, ListSink] = {}

    def route(tenant: str) -> ListSink:
        return routes.setdefault(tenant, ListSink())

    stage = ParseStage(ListSink(), registry=registry, tenant_topics=True, route=route)
    lines = [line for line in _auth() if b"vm-" not in line][:10]  # lines no tenant's VM wrote
    stage.process(_msgs(lines, topic="ssa.t-beta.raw.syslog"))
    stage.process(_msgs(lines, topic="ssa.t-acme.raw.syslog"))
    stage.process(_msgs(lines, start=10, topic="ssa.t-acme.raw.syslog"))  # A's shipper again
    stage.flush_idle(everything=True)
    a, b = routes["t-acme"].events, routes["t-beta"].events
    assert a and [e.id for e in a] == [e.id for e in b]
    assert {e.tenant for e in a} == {"t-acme"} and {e.tenant for e in b} == {"t-beta"}
    assert sum(g.out.skipped[DUPLICATE] for g in stage._gates.values()) == len(a)


def test_the_stage_can_be_told_to_remember_nothing() -> None:
    lines = _auth()[:10]
    _, sink = _read(_msgs(lines) + _msgs(lines, start=10), recent_ids=0)
    assert len(sink.events) == 2 * len({e.id for e in sink.events})
