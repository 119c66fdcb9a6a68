"""The ``python -m streams`` jobs the integration tests start, stopped after each test however it
ends. A test that fails or times out (pytest-timeout) while its job runs would otherwise leave the
job and its Flink mini-cluster running, loading the shared machine through every later test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from infra.settings import PROJECT_ROOT, Settings

_started: list[subprocess.Popen[bytes]] = []


def start_job(settings: Settings, *args: str, output: Path | None = None) -> subprocess.Popen[bytes]:
    """``python -m streams ARGS`` under ``settings``, in a session of its own (its process group
    holds the Flink gateway JVM it starts); its stdout and stderr to ``output`` if given."""
    env = {**os.environ, **settings.to_env()}
    with contextlib.ExitStack() as files:
        sink = files.enter_context(output.open("wb")) if output is not None else None
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", *args],
            cwd=PROJECT_ROOT,
            env=env,
            start_new_session=True,
            stdout=sink,
            stderr=subprocess.STDOUT if sink is not None else None,
        )
    _started.append(proc)
    return proc


def stop_leftover_jobs() -> int:
    """Kill the process group of every started job still running; returns how many there were."""
    running = [p for p in _started if p.poll() is None]
    for proc in running:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        proc.wait(timeout=30)
    _started.clear()
    return len(running)
