"""Reading canonical events and writing alerts as JSON lines (plain or gzip)."""

from __future__ import annotations

import gzip
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import msgspec

from detectors.alert import Alert, encode_alert
from ingest.schema import Event, decode_event

__all__ = ["ReadStats", "iter_events", "open_output", "write_alerts"]

log = logging.getLogger(__name__)
_MAX_LOGGED = 20


@dataclass
class ReadStats:
    lines: int = 0
    events: int = 0
    rejected: int = 0
    first_errors: list[str] = field(default_factory=list)


def _open(path: str | os.PathLike[str]) -> IO[bytes]:
    p = Path(path)
    if p.suffix == ".gz":
        return cast(IO[bytes], gzip.open(p, "rb"))
    return p.open("rb")


def iter_events(path: str | os.PathLike[str], stats: ReadStats | None = None) -> Iterator[Event]:
    """Events of a JSON-lines file (``-`` for stdin). A line that does not decode is counted and
    logged with its line number, never fatal."""
    st = stats if stats is not None else ReadStats()
    fh = sys.stdin.buffer if str(path) == "-" else _open(path)
    try:
        for lineno, line in enumerate(fh, 1):
            st.lines += 1
            if not line.strip():
                continue
            try:
                ev = decode_event(line)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                st.rejected += 1
                if len(st.first_errors) < _MAX_LOGGED:
                    msg = f"{path}:{lineno}: {exc}"
                    st.first_errors.append(msg)
                    log.warning("skipping undecodable event: %s", msg)
                continue
            st.events += 1
            yield ev
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


@contextmanager
def open_output(output: str | os.PathLike[str] | None) -> Iterator[IO[bytes]]:
    """A binary sink: a file path, ``-``/None for stdout."""
    if output is None or str(output) == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    p = Path(output)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("wb") as fh:
        yield fh


def write_alerts(alerts: Iterable[Alert], sink: IO[bytes]) -> int:
    n = 0
    for a in alerts:
        sink.write(encode_alert(a) + b"\n")
        n += 1
    return n
