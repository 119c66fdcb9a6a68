"""Dead-letter records: raw input that could not become a canonical event, with the reason.

Nothing that fails to parse is lost (DESIGN.md): every rejected line, packet or record becomes one
``DlqRecord`` on the ``ssa.dlq`` topic (or beside the ``--output`` file). The raw input is kept as
UTF-8 text when it is valid text, otherwise as base64, and is capped so a hostile 100 MB line
never becomes a 100 MB Kafka message: ``raw_len`` keeps the original size and ``truncated``
says the prefix is all that is kept.
"""

from __future__ import annotations

import base64
import time
from typing import Final, Literal

import msgspec

__all__ = ["DLQ_RAW_CAP", "DlqRecord", "decode_dlq", "encode_dlq", "make_dlq", "raw_bytes"]

DLQ_RAW_CAP: Final = 64 * 1024
"""Most raw bytes a DLQ record keeps (Kafka's default message limit is 1 MB)."""


class DlqRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One rejected input record. ``line`` (1-based) for text input, ``offset`` (bytes) for both."""

    source: str
    reason: str
    raw: str
    encoding: Literal["utf-8", "base64"] = "utf-8"
    raw_len: int = 0
    truncated: bool = False
    line: int | None = None
    offset: int | None = None
    file: str | None = None
    time_ms: int = 0


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(DlqRecord)


def make_dlq(
    source: str,
    reason: str,
    raw: bytes | str,
    *,
    line: int | None = None,
    offset: int | None = None,
    file: str | None = None,
    raw_len: int | None = None,
    cap: int = DLQ_RAW_CAP,
) -> DlqRecord:
    """Build a record, keeping at most ``cap`` raw bytes (text if valid UTF-8, else base64)."""
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    total = len(data) if raw_len is None else raw_len
    kept = data[:cap]
    truncated = total > len(kept)
    try:
        text = kept.decode("utf-8")
        encoding: Literal["utf-8", "base64"] = "utf-8"
    except UnicodeDecodeError as exc:
        # A cut in the middle of a multi-byte character is still text: drop the partial tail.
        if truncated and exc.start >= len(kept) - 3 and exc.reason == "unexpected end of data":
            text = kept[: exc.start].decode("utf-8", "replace")
            encoding = "utf-8"
        else:
            text = base64.b64encode(kept).decode("ascii")
            encoding = "base64"
    return DlqRecord(
        source=source,
        reason=reason,
        raw=text,
        encoding=encoding,
        raw_len=total,
        truncated=truncated,
        line=line,
        offset=offset,
        file=file,
        time_ms=time.time_ns() // 1_000_000,
    )


def raw_bytes(record: DlqRecord) -> bytes:
    """The kept raw input as bytes (decodes base64 when needed), for replay."""
    if record.encoding == "base64":
        return base64.b64decode(record.raw)
    return record.raw.encode("utf-8")


def encode_dlq(record: DlqRecord) -> bytes:
    return _encoder.encode(record)


def decode_dlq(data: bytes | str) -> DlqRecord:
    return _decoder.decode(data)
