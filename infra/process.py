"""Supervision of one local service process: pid file, log file, port checks, start, stop.

A service is ours only if its pid file names a live process whose command line carries our
marker (``-Dssa.service=<name>``), so ``ssa down`` never signals a stranger that reused a pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ManagedProcess", "ServiceError", "port_in_use"]


class ServiceError(RuntimeError):
    """An expected failure of a local service, with a message that says what to do next."""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class ManagedProcess:
    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def marker(self) -> str:
        return f"-Dssa.service={self.name}"

    def pid(self) -> int | None:
        """The pid of our live process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self.marker in _cmdline(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- ssa: starting {self.name} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI; not killed by the terminal's ^C
            )
        self.pid_file.write_text(str(proc.pid))
        self._popen = proc
        return proc.pid

    def alive(self) -> bool:
        popen = getattr(self, "_popen", None)
        if popen is not None:
            return popen.poll() is None
        return self.pid() is not None

    def wait_until(self, healthy: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll ``healthy`` until true; fail fast if the process dies. Returns seconds waited."""
        start = time.monotonic()
        delay = 0.2
        while True:
            if not self.alive():
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(f"{self.name} exited during start-up; read {self.log_file}")
            with contextlib.suppress(Exception):
                if healthy():
                    return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise ServiceError(
                    f"{self.name} did not become {what} within {timeout_s:.0f} s; read {self.log_file}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``. Returns False when nothing of ours ran."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.marker in _cmdline(pid):
            _reap(pid)
            time.sleep(0.2)
        if self.marker in _cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    # A child of this process lingers as a zombie (whose cmdline reads empty) until reaped.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
