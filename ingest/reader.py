"""Bounded reading of hostile input: long lines, binary garbage, invalid UTF-8, deep JSON.

``iter_lines`` reads fixed-size chunks and never holds more than one chunk plus one capped line,
so a 100 MB line costs a few MB of memory: only ``keep`` bytes of it are kept (for the DLQ record),
the rest is counted and skipped. ``load_json`` refuses nesting deeper than a limit *before*
decoding, so a 10,000-deep array is rejected with a reason instead of a ``RecursionError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Any, Final

import msgspec

from ingest.dlq import DLQ_RAW_CAP

__all__ = [
    "CHUNK_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_LINE_BYTES",
    "JsonRejected",
    "iter_line_batches",
    "iter_lines",
    "json_too_deep",
    "load_json",
]

MAX_LINE_BYTES: Final = 1024 * 1024
CHUNK_BYTES: Final = 1024 * 1024
MAX_JSON_DEPTH: Final = 64

LineItem = tuple[int, int, bytes, int]
"""(1-based line number, byte offset of the line, line bytes, full length). When the full length is
over the cap, the bytes are only a prefix and the line must be rejected."""


def iter_lines(
    stream: IO[bytes],
    max_line_bytes: int = MAX_LINE_BYTES,
    chunk_bytes: int = CHUNK_BYTES,
    keep: int = DLQ_RAW_CAP,
) -> Iterator[LineItem]:
    """Lines of a binary stream without their ``\\n`` (and a trailing ``\\r``), bounded in memory."""
    for batch in iter_line_batches(stream, max_line_bytes, chunk_bytes, keep):
        yield from batch


def iter_line_batches(
    stream: IO[bytes],
    max_line_bytes: int = MAX_LINE_BYTES,
    chunk_bytes: int = CHUNK_BYTES,
    keep: int = DLQ_RAW_CAP,
) -> Iterator[list[LineItem]]:
    """``iter_lines`` one read at a time: the lines each chunk completes, as a list (parsers with a
    fast path loop over it without resuming a generator per line)."""
    read = getattr(stream, "read1", None) or stream.read
    lineno = 0
    offset = 0  # offset of the first byte of ``pending``
    pending = b""
    skipping = False
    skip_prefix = b""
    skip_len = 0
    while True:
        chunk = read(chunk_bytes)
        if not chunk:
            break
        batch: list[LineItem] = []
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                skip_len += len(chunk)
                continue
            skip_len += nl
            lineno += 1
            batch.append((lineno, offset, skip_prefix, skip_len))
            offset += skip_len + 1
            chunk = chunk[nl + 1 :]
            skipping = False
            skip_prefix = b""
        buf = pending + chunk if pending else chunk
        parts = buf.split(b"\n")
        pending = parts.pop()
        append = batch.append
        for part in parts:
            lineno += 1
            size = len(part)
            if size > max_line_bytes:
                append((lineno, offset, part[:keep], size))
            elif part[-1:] == b"\r":
                append((lineno, offset, part[:-1], size - 1))
            else:
                append((lineno, offset, part, size))
            offset += size + 1
        if len(pending) > max_line_bytes:
            skipping = True
            skip_prefix = pending[:keep]
            skip_len = len(pending)
            pending = b""
        if batch:
            yield batch
    if skipping:
        yield [(lineno + 1, offset, skip_prefix, skip_len)]
    elif pending:
        if pending[-1:] == b"\r":
            pending = pending[:-1]
        yield [(lineno + 1, offset, pending, len(pending))]


# A JSON string: its plain runs taken whole between escapes (the "unrolled" form of "(?:[^"\\]|\\.)*",
# which matches the same strings, about 4x faster on documents with many short strings).
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when arrays/objects nest deeper than ``limit`` (brackets inside strings do not count)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class JsonRejected(ValueError):
    """The input is not a JSON document this project accepts; the message is the DLQ reason."""


def load_json(data: bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """Decode JSON after checking the nesting depth; raises ``JsonRejected`` with a short reason."""
    if json_too_deep(data, limit):
        raise JsonRejected(f"JSON nested deeper than {limit} levels")
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        # The reason is in our words, whatever the decoder's wording (it changes between releases).
        raise JsonRejected(_json_fault(data)) from None
    except RecursionError:
        raise JsonRejected("JSON nested too deeply") from None


def _json_fault(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 in JSON at byte {exc.start}"
    return "invalid JSON: not a well-formed JSON document"
