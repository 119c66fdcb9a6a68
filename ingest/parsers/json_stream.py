"""Reading a large JSON document a piece at a time, within the limits of ``ingest.reader``.

``LineSource`` hands out a binary stream line by line without ever holding a whole line: a parser
peeks at the start of a line, then takes it whole (capped), or reads it (or the rest of the input)
as a stream. ``GuardedReader`` is that stream as an incremental JSON parser reads it: it refuses,
*before* the parser sees the bytes, nesting deeper than a limit (ijson's memory grows with the
square of the depth: a 200 kB document of 20,000 brackets costs 1 GB) and numbers of more than
``MAX_NUMBER_DIGITS`` digits (ijson 3.x's C backend crashes the process on an integer longer than
Python's 4,300-digit conversion limit), and more than ``record_cap`` bytes read without a record
coming out (checked per read, 64 kB for ijson), so memory is bounded by one record, not the
document.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import IO, Final

from ingest.reader import CHUNK_BYTES

__all__ = ["MAX_NUMBER_DIGITS", "DepthScanner", "GuardedReader", "LineSource", "StreamRefused"]

MAX_NUMBER_DIGITS: Final = 4000

_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STEP: Final = {0x5B: 1, 0x7B: 1, 0x5D: -1, 0x7D: -1}
_QUOTE_OR_ESCAPE: Final = re.compile(rb'\\.|"', re.S)
_DIGITS: Final = b"0123456789"
_LONG_NUMBER: Final = re.compile(rb"[0-9]{%d,}" % (MAX_NUMBER_DIGITS + 1))


class StreamRefused(Exception):
    """The input broke a limit while being read; the message is the DLQ reason."""


class DepthScanner:
    """Nesting depth (and the longest run of digits) of JSON fed in pieces, strings left out. Exact
    on well-formed input; past the first malformed byte it may be wrong, which is harmless as the
    JSON parser stops at that byte."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.held = b""  # an odd run of backslashes at the end of a piece: it escapes the next byte
        self.digits = 0  # digits at the end of what was read, outside strings

    def feed(self, piece: bytes) -> str | None:
        """Account for ``piece``: None, or why the JSON is refused."""
        started_in_string = self.in_string
        data = self.held + piece if self.held else piece
        end = len(data.rstrip(b"\\"))
        self.held = b"\\" if (len(data) - end) % 2 else b""
        data = data[:end] if end < len(data) else data
        if b'\\"' in data:
            outside = self._outside_escaped(data)
        else:  # no escaped quote: every quote opens or closes a string
            parts = data.split(b'"')
            outside = b"".join(parts[1::2] if self.in_string else parts[0::2])
            self.in_string ^= bool((len(parts) - 1) & 1)
        if self._long_number(outside, started_in_string):
            return f"a number of more than {MAX_NUMBER_DIGITS} digits"
        brackets = outside.translate(None, _NOT_BRACKET)
        if not brackets:
            return None
        opens = brackets.count(b"[") + brackets.count(b"{")
        if self.depth + opens <= self.limit:
            self.depth += 2 * opens - len(brackets)
            return None
        steps = list(accumulate(map(_STEP.__getitem__, brackets), initial=self.depth))
        self.depth = steps[-1]
        return f"JSON nested deeper than {self.limit} levels" if max(steps) > self.limit else None

    def _long_number(self, outside: bytes, started_in_string: bool) -> bool:
        lead = 0 if started_in_string else len(outside) - len(outside.lstrip(_DIGITS))
        if lead == len(outside) and not self.in_string:  # all digits: the run goes on
            self.digits += lead
            return self.digits > MAX_NUMBER_DIGITS
        long_run = self.digits + lead > MAX_NUMBER_DIGITS or _LONG_NUMBER.search(outside) is not None
        self.digits = 0 if self.in_string else len(outside) - len(outside.rstrip(_DIGITS))
        return long_run

    def _outside_escaped(self, data: bytes) -> bytes:
        pieces: list[bytes] = []
        start = 0
        for m in _QUOTE_OR_ESCAPE.finditer(data):
            if m.group() != b'"':
                continue
            if self.in_string:
                start = m.end()
            else:
                pieces.append(data[start : m.start()])
            self.in_string = not self.in_string
        if not self.in_string:
            pieces.append(data[start:])
        return b"".join(pieces)


class GuardedReader:
    """A ``read(n)`` stream for an incremental JSON parser over ``read_piece``, raising
    ``StreamRefused`` when the depth or the bytes since the last record (``record_done``) go over
    their limits. ``position`` is how many bytes the parser has been given; ``last`` the latest
    piece (context for a DLQ record)."""

    def __init__(self, read_piece: IO[bytes] | LineReader, depth_limit: int, record_cap: int) -> None:
        self._read = read_piece.read
        self.scanner = DepthScanner(depth_limit)
        self.record_cap = record_cap
        self.position = 0
        self.since_record = 0
        self.last = b""

    def record_done(self) -> None:
        self.since_record = 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson's probe of the stream's type: nothing may be consumed
            return b""
        piece = self._read(size if size > 0 else CHUNK_BYTES)
        if not piece:
            return piece
        self.last = piece
        self.position += len(piece)
        self.since_record += len(piece)
        refused = self.scanner.feed(piece)
        if refused is not None:
            raise StreamRefused(f"{refused} (near byte {self.position})")
        if self.since_record > self.record_cap:
            raise StreamRefused(f"record over the {self.record_cap} byte limit (near byte {self.position})")
        return piece


class LineReader:
    """``read(n)`` over the rest of the current line of a ``LineSource`` (or, with ``to_end``, over
    the rest of the input); empty at its end."""

    def __init__(self, source: LineSource, to_end: bool) -> None:
        self.source = source
        self.to_end = to_end
        self.done = False

    def read(self, size: int = -1) -> bytes:
        if self.done or size == 0:
            return b""
        piece, finished = self.source.read_piece(size if size > 0 else CHUNK_BYTES, self.to_end)
        self.done = finished
        return piece

    def drain(self) -> None:
        while self.read(CHUNK_BYTES):
            pass


class LineSource:
    """A binary stream read line by line in bounded memory; ``lineno`` and ``offset`` are those of
    the current line. Lines end at ``\\n``; a ``\\r`` before it is left to the JSON parser (it is
    whitespace there) and stripped from lines taken whole."""

    def __init__(self, stream: IO[bytes], chunk_bytes: int = CHUNK_BYTES) -> None:
        self._read = getattr(stream, "read1", None) or stream.read
        self.chunk_bytes = chunk_bytes
        self.buf = b""
        self.pos = 0  # next unread byte of buf
        self.eof = False
        self.lineno = 1
        self.offset = 0  # input offset of buf[pos]

    def _fill(self) -> bool:
        """Read one more chunk into the buffer; False at end of input."""
        if self.eof:
            return False
        chunk = self._read(self.chunk_bytes)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def at_end(self) -> bool:
        return self.pos >= len(self.buf) and not self._fill()

    def peek_line(self, limit: int) -> tuple[bytes, bool]:
        """Up to ``limit`` bytes of the current line, and whether that is the whole line."""
        while True:
            nl = self.buf.find(b"\n", self.pos, self.pos + limit)
            if nl >= 0:
                return self.buf[self.pos : nl], True
            if len(self.buf) - self.pos >= limit or not self._fill():
                end = min(len(self.buf), self.pos + limit)
                return self.buf[self.pos : end], self.eof and end == len(self.buf)

    def peek(self, limit: int) -> bytes:
        """Up to ``limit`` bytes from here, newlines included."""
        while len(self.buf) - self.pos < limit and self._fill():
            pass
        return self.buf[self.pos : self.pos + limit]

    def pass_line(self, head: bytes) -> bytes:
        """Move past the current line, which ``peek_line`` returned whole as ``head``; the line
        without a trailing ``\\r``."""
        self._advance(len(head) + 1)
        return head[:-1] if head[-1:] == b"\r" else head

    def take_line(self, cap: int, keep: int) -> tuple[bytes, int]:
        """The current line without its newline, and its length; over ``cap`` bytes, only its
        first ``keep`` bytes are returned, the rest is read past without being kept."""
        head, whole = self.peek_line(cap + 1)
        size = len(head)
        if whole and size <= cap:
            self._advance(size + 1)
            line = head[:-1] if head[-1:] == b"\r" else head
            return line, len(line)
        kept = head[:keep]
        reader = LineReader(self, to_end=False)
        size = 0
        while piece := reader.read(self.chunk_bytes):
            size += len(piece)
        return kept, size

    def read_piece(self, size: int, to_end: bool) -> tuple[bytes, bool]:
        """Up to ``size`` bytes of the current line (consuming its newline at the end) or of the
        input; and whether the line (or input) is finished."""
        if self.pos >= len(self.buf) and not self._fill():
            return b"", True
        if to_end:
            piece = self.buf[self.pos : self.pos + size]
            self._advance(len(piece), count_lines=True)
            return piece, False
        nl = self.buf.find(b"\n", self.pos, self.pos + size)
        if nl >= 0:
            piece = self.buf[self.pos : nl]
            self._advance(len(piece) + 1)
            return piece, True
        piece = self.buf[self.pos : self.pos + size]
        self.pos += len(piece)
        self.offset += len(piece)
        return piece, False

    def _advance(self, n: int, count_lines: bool = False) -> None:
        if count_lines:
            self.lineno += self.buf.count(b"\n", self.pos, self.pos + n)
        else:
            self.lineno += 1
        self.pos += n
        self.offset += n
