"""Why a running job restarts, in one line, from the mini-cluster's REST API.

Flink restarts a failed job without end and says why only in its own log. ``ssa detect`` gives
the mini-cluster a REST port of its own choosing (``free_port``) so that each restart it sees can
name the failure's root cause (``latest_failure``: ``GET /jobs/<id>/exceptions``, whose
``exceptionHistory`` Flink 2 keeps newest first), and recognise the one failure no restart heals:
a checkpoint whose state files are gone (``missing_checkpoint_file``), met when a job was killed
while Flink removed a checkpoint, or when files were deleted or copied incompletely.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path
from typing import Final

__all__ = ["failure_of", "free_port", "latest_failure", "missing_checkpoint_file", "root_cause"]

_CAUSED_BY: Final = "Caused by: "
_MAX_LINE: Final = 300
# java.io.FileNotFoundException: /path/chk-2/<uuid> (No such file or directory)
_NOT_FOUND: Final = re.compile(r"java\.io\.FileNotFoundException: (?:file:)?(/\S+)")


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def root_cause(stacktrace: str) -> str:
    """The innermost exception of a Java stack trace, one line, clipped."""
    lines = stacktrace.splitlines()
    causes = [line.strip()[len(_CAUSED_BY) :] for line in lines if line.strip().startswith(_CAUSED_BY)]
    line = causes[-1] if causes else (lines[0].strip() if lines else "")
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def latest_failure(rest_port: int, job_id: str, timeout_s: float = 3.0) -> str | None:
    """The root cause of the job's latest failure, or None when the REST API does not say (not
    up yet, or nothing recorded)."""
    url = f"http://127.0.0.1:{rest_port}/jobs/{job_id}/exceptions?maxExceptions=1"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = json.loads(response.read(1 << 20))
    except (OSError, ValueError):  # URLError is an OSError
        return None
    return failure_of(body)


def failure_of(body: object) -> str | None:
    """The root cause of the newest entry of a ``/jobs/<id>/exceptions`` response, if any."""
    history = body.get("exceptionHistory") if isinstance(body, dict) else None
    entries = history.get("entries") if isinstance(history, dict) else None
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        return None
    trace = entries[0].get("stacktrace") or entries[0].get("exceptionName")
    return root_cause(trace) if isinstance(trace, str) and trace.strip() else None


def missing_checkpoint_file(cause: str, checkpoint_dir: str) -> Path | None:
    """The checkpoint folder (``.../chk-N``) whose file ``cause`` says is missing, when it is one
    under ``checkpoint_dir``; else None."""
    found = _NOT_FOUND.search(cause)
    if found is None:
        return None
    path = Path(found[1])
    root = Path(checkpoint_dir).resolve()
    for folder in path.parents:
        if folder.name.startswith("chk-") and folder.resolve().is_relative_to(root):
            return folder
    return None
