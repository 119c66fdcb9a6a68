"""``ssa ingest PATH --follow``: read a growing file as ``tail -F`` does, into the same pipeline.

The file is polled (``os.stat`` every ``poll_s``, 0.5 s; no inotify, so it works on any file
system, NFS included). New bytes are read up to the last complete line and handed to the parser
of ``ssa ingest`` (``ingest.pipeline.open_parser``, same output, bounds, DLQ and event ids: a
line gives the id it gets from ``ssa ingest`` of the whole file); a line is read only once its
newline is written. Rotation is seen as tail -F sees it:

- **rename** (logrotate's default ``create``): the path names another inode. The old file is read
  to its end first (it stays open), then the new one from its start;
- **truncation** (logrotate ``copytruncate``): the path's size is below the read position, so
  reading starts again at 0;
- a path that is missing (between the rename and the creation) is waited for.

**State file** (default ``<path>.ssa-follow.json``, or ``--state``): the device, inode and byte
offset of the last line whose events the sink has accepted (``flush`` returned), written
atomically (temporary file and rename) after each flush, every ``flush_every_s`` (1 s) while lines
arrive. A restart resumes there: on the same inode at the saved offset (from 0 if the file is now
shorter: truncated meanwhile); if the path is a new file (rotated while we were down), the old
inode is looked for among the files of the same folder (``auth.log.1``) and its rest is read
first. An auditd event held by its parser (lines waiting for their EOE), or an sshd notice waiting
for its Failed line, keeps the saved offset at the first line of what is held, so a crash re-reads
it; the hold is finished once the file has been quiet for ``idle_flush_s`` (auditd 15 s, syslog
120 s), or after ``MAX_HOLD_S`` (60 s) of continuous holding (``streams.parse_stage`` says why).
Lines re-read after a crash give the same event ids. The saved offset is never a line that is
part of a held parse: a restart there with an empty parser gives the events the first run would
have given.

Binary (NetFlow) and gzip input cannot be followed; CloudTrail can as JSON lines.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ingest.dlq import DLQ_RAW_CAP
from ingest.parsers import Parser, get_format
from ingest.pipeline import MAX_AHEAD_MS, CountingOutput, IngestProgress, IngestSummary, open_parser
from ingest.producer import Sink
from ingest.tenants import RegistryWatcher, TenantRegistry

__all__ = ["IDLE_FLUSH_S", "MAX_HOLD_S", "FollowState", "follow", "state_path_for"]

IDLE_FLUSH_S: Final = {"auditd": 15.0, "syslog": 120.0}
MAX_HOLD_S: Final = 60.0
_READ_BYTES: Final = 1024 * 1024


@dataclass
class FollowState:
    """Where reading resumes: the file's identity and the byte offset after the last line sent."""

    dev: int = 0
    inode: int = 0
    offset: int = 0
    lineno: int = 0

    @classmethod
    def load(cls, path: Path) -> FollowState | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(data["dev"]), int(data["inode"]), int(data["offset"]), int(data.get("lineno", 0)))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"follow state {path} is unreadable ({exc}): remove it to start over") from None

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.__dict__), encoding="utf-8")
        os.replace(tmp, path)


def state_path_for(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".ssa-follow.json")


class _Reader:
    """One open file: its identity, the position read up to, and the unterminated tail."""

    def __init__(self, path: Path, offset: int, lineno: int) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 - closed by close()
        st = os.fstat(self.file.fileno())
        self.dev, self.inode = st.st_dev, st.st_ino
        if offset > st.st_size:
            offset = lineno = 0  # truncated while we were away
        self.file.seek(offset)
        self.pos = offset  # offset of the first byte not yet read
        self.line_start = offset  # offset of the first byte of the unterminated tail
        self.lineno = lineno
        self.tail = b""
        self.tail_len = 0  # full length of an over-long tail (only its prefix is kept)

    def close(self) -> None:
        self.file.close()

    def restart(self) -> None:
        self.file.seek(0)
        self.pos = self.line_start = self.lineno = 0
        self.tail, self.tail_len = b"", 0

    def read_lines(self, cap: int) -> list[tuple[int, int, bytes, int]]:
        """The complete lines written since the last call, as the reader's ``LineItem``s."""
        chunk = self.file.read(_READ_BYTES)
        if not chunk:
            return []
        self.pos += len(chunk)
        items: list[tuple[int, int, bytes, int]] = []
        data = self.tail + chunk if self.tail else chunk
        parts = data.split(b"\n")
        rest = parts.pop()
        extra = self.tail_len - len(self.tail) if self.tail_len > len(self.tail) else 0
        for part in parts:
            size = len(part) + extra
            self.lineno += 1
            if size > cap:
                items.append((self.lineno, self.line_start, part[:DLQ_RAW_CAP], size))
            else:
                line = part[:-1] if part[-1:] == b"\r" else part
                items.append((self.lineno, self.line_start, line, len(line)))
            self.line_start += size + 1
            extra = 0
        self.tail_len = len(rest) + extra
        self.tail = rest if len(rest) <= cap else rest[:DLQ_RAW_CAP]
        return items


def follow(
    path: str | Path,
    fmt: str,
    sink: Sink,
    *,
    tenant: str | None = None,
    registry: TenantRegistry | RegistryWatcher | None = None,
    state_path: str | Path | None = None,
    stop: threading.Event | None = None,
    poll_s: float = 0.5,
    flush_every_s: float = 1.0,
    idle_flush_s: float | None = None,
    max_hold_s: float = MAX_HOLD_S,
    year: int | None = None,
    timezone: str | None = None,
    vpc_fields: tuple[str, ...] | None = None,
    max_ahead_ms: int = MAX_AHEAD_MS,
    progress: Callable[[IngestProgress], None] | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> IngestSummary:
    """Follow ``path`` until ``stop`` is set (or Ctrl-C), parsing it as ``fmt`` into ``sink``."""
    spec = get_format(fmt)
    if spec.binary:
        raise ValueError(f"{spec.name} is binary: --follow reads line formats only")
    target = Path(path)
    state_file = Path(state_path) if state_path else state_path_for(target)
    stop = stop or threading.Event()
    out = CountingOutput(sink, progress, 2.0, max_ahead_ms, str(target))
    parser = open_parser(spec.name, out, tenant=tenant, registry=registry, file=str(target), year=year,
                         timezone=timezone, vpc_fields=vpc_fields)  # fmt: skip
    cap = parser.ctx.max_line_bytes or parser.max_line_bytes
    idle = IDLE_FLUSH_S.get(spec.name, 0.0) if idle_flush_s is None else idle_flush_s
    state = FollowState.load(state_file)
    reader = _open_resuming(target, state, say, parser, cap)
    holds = hasattr(parser, "pending")  # auditd, syslog: a parse may wait for later lines
    held_from: tuple[int, int, int, int] | None = None  # state at the first line of a held parse
    saved = (reader.dev, reader.inode, reader.line_start, reader.lineno) if reader else None
    last_data = held_since = time.monotonic()
    next_flush = last_data + flush_every_s

    def checkpoint() -> None:
        nonlocal saved
        if reader is None:
            return
        sink.flush()
        where = held_from or (reader.dev, reader.inode, reader.line_start, reader.lineno)
        if where != saved:
            FollowState(*where).save(state_file)
            saved = where

    try:
        while not stop.is_set():
            if reader is None:
                reader = _open_new(target, 0, 0)
                if reader is None:
                    stop.wait(poll_s)
                    continue
                say(f"follow: reading {target} (inode {reader.inode})")
            items = reader.read_lines(cap)
            if items:
                last_data = time.monotonic()
                if not holds:
                    parser.feed_batch(items, cap)
                else:  # line by line, to know the last line after which nothing was held
                    for item in items:
                        parser.feed_batch([item], cap)
                        if not parser.pending:  # type: ignore[attr-defined]
                            held_from = None
                        elif held_from is None:
                            held_from = (reader.dev, reader.inode, item[1], item[0] - 1)
                            held_since = last_data
                continue_reading = True
            else:
                continue_reading = False
            now = time.monotonic()
            if held_from is not None and (now - last_data >= idle or now - held_since >= max_hold_s):
                parser.close()  # finish what is held: the parser stays usable
                held_from = None
            if now >= next_flush:
                checkpoint()
                next_flush = now + flush_every_s
            if continue_reading:
                continue
            # At the end of the file: has it been rotated or truncated?
            try:
                st = os.stat(target)
            except FileNotFoundError:
                stop.wait(poll_s)
                continue
            if (st.st_dev, st.st_ino) != (reader.dev, reader.inode):
                if reader.read_lines(cap):  # written after our last read: read it first
                    continue
                say(f"follow: {target} was rotated; reading the new file from its start")
                _finish_file(reader, parser, cap)  # its last line, if unterminated; what is held
                reader.close()
                reader = _open_new(target, 0, 0)
                held_from = None
                checkpoint()
                continue
            if st.st_size < reader.pos:
                say(f"follow: {target} was truncated; reading it again from its start")
                reader.restart()
                held_from = None
                checkpoint()
                continue
            stop.wait(poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            checkpoint()
        finally:
            if reader is not None:
                reader.close()
    snap = out.snapshot()
    return IngestSummary(
        parsed=out.parsed, dlq=out.dlqs, skipped=snap.skipped, by_kind=dict(out.by_kind), elapsed=snap.elapsed,
        fmt=spec.name, source=str(target), dlq_reasons=dict(out.dlq_reasons), skip_reasons=dict(out.skipped),
    )  # fmt: skip


def _open_new(path: Path, offset: int, lineno: int) -> _Reader | None:
    try:
        return _Reader(path, offset, lineno)
    except FileNotFoundError:
        return None


def _open_resuming(
    target: Path, state: FollowState | None, say: Callable[[str], None], parser: Parser, cap: int
) -> _Reader | None:
    """The reader to start with: the saved file at its offset, else the path from its start."""
    if state is None:
        return _open_new(target, 0, 0)
    try:
        st = os.stat(target)
        if (st.st_dev, st.st_ino) == (state.dev, state.inode):
            return _Reader(target, state.offset, state.lineno)
    except FileNotFoundError:
        pass
    # Rotated while we were away: the saved inode under another name in the same folder.
    old = _find_inode(target.parent, state.dev, state.inode)
    if old is not None:
        say(f"follow: {target} was rotated while stopped; reading the rest of {old} first")
        reader = _Reader(old, state.offset, state.lineno)
        while items := reader.read_lines(cap):
            parser.feed_batch(items, cap)
        _finish_file(reader, parser, cap)
        reader.close()
    else:
        say(f"follow: the file of {target} last read is gone; reading {target} from its start")
    return _open_new(target, 0, 0)


def _finish_file(reader: _Reader, parser: Parser, cap: int) -> None:
    """The end of a file that will not grow again: its unterminated last line (as ``ssa ingest``
    reads it) and whatever the parser holds."""
    if reader.tail_len:
        reader.lineno += 1
        tail = reader.tail[:-1] if reader.tail[-1:] == b"\r" and reader.tail_len <= cap else reader.tail
        size = len(tail) if reader.tail_len <= cap else reader.tail_len
        parser.feed_batch([(reader.lineno, reader.line_start, tail, size)], cap)
        reader.tail, reader.tail_len = b"", 0
    parser.close()


def _find_inode(folder: Path, dev: int, inode: int) -> Path | None:
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if (
                    entry.inode() == inode
                    and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_dev == dev
                ):
                    return Path(entry.path)
    except OSError:
        return None
    return None
