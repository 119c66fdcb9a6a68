"""``ssa ingest --follow`` (ingest.follow): a growing file read as tail -F reads it, rotation by
rename and by truncation, and a restart resuming from the state file, all with the event ids
``ssa ingest`` gives the same lines."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest.follow import FollowState, follow, state_path_for
from ingest.pipeline import run_ingest
from tests.test_raw_records import ListSink

SAMPLES = Path(__file__).parent / "samples"
AUTH = (SAMPLES / "auth.log").read_bytes().splitlines(keepends=True)
AUDIT = (SAMPLES / "audit.log").read_bytes().splitlines(keepends=True)


def ids_of(data: bytes, fmt: str, tmp: Path) -> set[str]:
    path = tmp / f"whole-{fmt}.log"
    path.write_bytes(data)
    sink = ListSink()
    run_ingest(path, fmt, sink=sink)
    return {e.id for e in sink.events}


@contextmanager
def following(path: Path, fmt: str, sink: ListSink, **kw: object) -> Iterator[threading.Event]:
    stop = threading.Event()
    done: list[object] = []
    thread = threading.Thread(
        target=lambda: done.append(
            follow(path, fmt, sink, stop=stop, poll_s=0.02, flush_every_s=0.02, **kw)  # type: ignore[arg-type]
        ),
        daemon=True,
    )
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive() and done


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def append(path: Path, lines: list[bytes]) -> None:
    with open(path, "ab") as f:
        f.writelines(lines)


def test_follows_a_growing_file_line_by_line(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"".join(AUTH[:10]))
    sink = ListSink()
    with following(log, "syslog", sink):
        wait_for(lambda: len(sink.events) >= 1)
        first = len(sink.events)
        append(log, [AUTH[10][:20]])  # half a line: not read until its newline is written
        time.sleep(0.1)
        assert len(sink.events) == first
        append(log, [AUTH[10][20:], *AUTH[11:]])
        want = ids_of(b"".join(AUTH), "syslog", tmp_path)
        wait_for(lambda: {e.id for e in sink.events} == want)
    assert len(sink.events) == len(want)


def test_rotation_by_rename_reads_the_old_file_to_its_end_then_the_new(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"".join(AUTH[:8]))
    sink = ListSink()
    with following(log, "syslog", sink):
        wait_for(lambda: len(sink.events) >= 1)
        append(log, AUTH[8:12])  # written just before the rename: still read from the old file
        os.rename(log, tmp_path / "auth.log.1")
        log.write_bytes(b"".join(AUTH[12:]))
        want = ids_of(b"".join(AUTH), "syslog", tmp_path)
        wait_for(lambda: {e.id for e in sink.events} == want)
    assert len(sink.events) == len(want)  # nothing read twice


def test_truncation_starts_again_from_the_top(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"".join(AUTH))
    sink = ListSink()
    with following(log, "syslog", sink):
        want_all = ids_of(b"".join(AUTH), "syslog", tmp_path)
        wait_for(lambda: {e.id for e in sink.events} == want_all)
        n = len(sink.events)
        with open(log, "r+b") as f:  # copytruncate
            f.truncate(0)
        time.sleep(0.1)
        log.write_bytes(b"".join(AUTH[:6]))
        want = ids_of(b"".join(AUTH[:6]), "syslog", tmp_path)
        wait_for(lambda: {e.id for e in sink.events[n:]} == want)


def test_a_restart_resumes_at_the_saved_offset(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(AUDIT[:13]))
    first = ListSink()
    with following(log, "auditd", first, idle_flush_s=30.0):
        wait_for(lambda: len(first.events) >= 2)
        time.sleep(0.1)
    state = FollowState.load(state_path_for(log))
    assert state is not None and state.inode == log.stat().st_ino
    # Line 13 ends an event (EOE): nothing is held, the state is the end of the file.
    assert state.offset == len(b"".join(AUDIT[:13])) and state.lineno == 13
    append(log, AUDIT[13:])
    second = ListSink()
    with following(log, "auditd", second, idle_flush_s=0.05):
        want = ids_of(b"".join(AUDIT), "auditd", tmp_path)
        wait_for(lambda: {e.id for e in first.events} | {e.id for e in second.events} == want)
    assert not {e.id for e in first.events} & {e.id for e in second.events}  # nothing twice


def test_a_held_event_keeps_the_saved_offset_before_its_lines(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(AUDIT[:9]))  # the second event without its EOE
    sink = ListSink()
    with following(log, "auditd", sink, idle_flush_s=30.0):
        wait_for(lambda: len(sink.events) >= 1)
        time.sleep(0.1)
    state = FollowState.load(state_path_for(log))
    assert state is not None and state.offset == len(b"".join(AUDIT[:7])) and state.lineno == 7


def test_rotated_while_stopped_reads_the_rest_of_the_old_file_first(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"".join(AUTH[:10]))
    first = ListSink()
    with following(log, "syslog", first):
        wait_for(lambda: len(first.events) >= 1)
        time.sleep(0.1)
    append(log, AUTH[10:14])
    os.rename(log, tmp_path / "auth.log.1")
    log.write_bytes(b"".join(AUTH[14:]))
    second = ListSink()
    with following(log, "syslog", second):
        want = ids_of(b"".join(AUTH), "syslog", tmp_path)
        wait_for(lambda: {e.id for e in first.events} | {e.id for e in second.events} == want)


def test_binary_formats_cannot_be_followed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="binary"):
        follow(tmp_path / "x.pcap", "netflow", ListSink())
