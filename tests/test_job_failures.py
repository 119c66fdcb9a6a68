"""streams.job_failures: the one line ``ssa detect`` says when its job restarts, and the failure
it stops on instead of restarting (a checkpoint that lost a state file). The response shape is
Flink 2's ``GET /jobs/<id>/exceptions`` (``exceptionHistory.entries``, newest first); the stack
trace is the one a CI run's restore met (tests/integration/test_faults.py runs the real case)."""

from __future__ import annotations

import socket
from pathlib import Path

from streams.job_failures import failure_of, free_port, missing_checkpoint_file, root_cause

CHK = "/data/checkpoints/bb2ae5c73cfe36a23105d31fed9d460f/chk-2"
TRACE = f"""java.lang.Exception: Exception while creating StreamOperatorStateContext.
\tat org.apache.flink.streaming.api.operators.StreamTaskStateInitializerImpl.streamOperatorStateContext(StreamTaskStateInitializerImpl.java:361)
Caused by: org.apache.flink.util.FlinkException: Could not restore keyed state backend for WindowAggOperator_b6d2_(1/1) from any of the 1 provided restore options.
\tat org.apache.flink.streaming.api.operators.BackendRestorerProcedure.createAndRestore(BackendRestorerProcedure.java:165)
\t... 12 more
Caused by: org.apache.flink.runtime.state.BackendBuildingException: Failed when trying to restore heap backend
\t... 12 more
Caused by: java.io.FileNotFoundException: {CHK}/803916d9-ac9f-44b4-91b3-c24e8859e3a5 (No such file or directory)
\tat org.apache.flink.core.fs.local.LocalDataInputStream.<init>(LocalDataInputStream.java:52)
"""


def test_the_root_cause_is_the_innermost_exception_in_one_line() -> None:
    assert (
        root_cause(TRACE)
        == f"java.io.FileNotFoundException: {CHK}/803916d9-ac9f-44b4-91b3-c24e8859e3a5 (No such file or directory)"
    )
    assert root_cause("org.apache.kafka.common.errors.TimeoutException: Timed out\n\tat x") == (
        "org.apache.kafka.common.errors.TimeoutException: Timed out"
    )
    long = root_cause("java.lang.RuntimeException: " + "x" * 1000)
    assert len(long) == 300 and long.endswith("...")


def test_the_newest_entry_of_the_exception_history_is_read() -> None:
    older = {"exceptionName": "java.lang.RuntimeException", "stacktrace": "java.lang.RuntimeException: old"}
    newest = {"exceptionName": "java.lang.Exception", "stacktrace": TRACE, "timestamp": 1, "taskName": "w"}
    body = {"exceptionHistory": {"entries": [newest, older], "truncated": False}}
    assert "FileNotFoundException" in (failure_of(body) or "")
    assert failure_of(
        {"exceptionHistory": {"entries": [{"exceptionName": "java.lang.OutOfMemoryError"}]}}
    ) == ("java.lang.OutOfMemoryError")
    nothings: list[object] = [
        {},
        {"exceptionHistory": {"entries": []}},
        [],
        {"exceptionHistory": None},
        {"exceptionHistory": {"entries": [{"stacktrace": "  "}]}},
    ]
    for nothing in nothings:
        assert failure_of(nothing) is None


def test_a_missing_file_names_its_checkpoint_only_under_the_checkpoint_folder(tmp_path: Path) -> None:
    chk = tmp_path / "checkpoints" / "bb2ae5" / "chk-2"
    cause = f"java.io.FileNotFoundException: {chk}/803916d9 (No such file or directory)"
    assert missing_checkpoint_file(cause, str(tmp_path / "checkpoints")) == chk
    assert missing_checkpoint_file(cause.replace(": /", ": file:/"), str(tmp_path / "checkpoints")) == chk
    assert missing_checkpoint_file(cause, str(tmp_path / "elsewhere")) is None  # a file of something else
    other = f"java.io.FileNotFoundException: {tmp_path}/tenants.yaml (No such file or directory)"
    assert missing_checkpoint_file(other, str(tmp_path)) is None  # not a checkpoint's file
    assert missing_checkpoint_file("java.io.IOException: disk full", str(tmp_path)) is None


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
