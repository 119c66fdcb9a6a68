"""Hostile input: a 100 MB line, binary garbage, invalid UTF-8, 10,000-deep JSON. Every case must
finish, stay within bounded memory, and account for every record (events + DLQ + skipped)."""

from __future__ import annotations

import io
import random
import time
import tracemalloc
from pathlib import Path

import pytest

from ingest.dlq import DLQ_RAW_CAP, decode_dlq, encode_dlq, make_dlq, raw_bytes
from ingest.pipeline import run_ingest
from ingest.reader import MAX_LINE_BYTES, JsonRejected, iter_lines, json_too_deep, load_json

VPC_LINE = b"2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1700000000 1700000001 ACCEPT OK"


def test_iter_lines_numbers_offsets_and_crlf():
    data = b"a\r\nbb\n\nccc"
    assert list(iter_lines(io.BytesIO(data), chunk_bytes=2)) == [
        (1, 0, b"a", 1),
        (2, 3, b"bb", 2),
        (3, 6, b"", 0),
        (4, 7, b"ccc", 3),
    ]


def test_iter_lines_caps_long_lines_across_chunks():
    data = b"x" * 50 + b"\nshort\n" + b"y" * 30
    items = list(iter_lines(io.BytesIO(data), max_line_bytes=20, chunk_bytes=7, keep=5))
    assert items == [(1, 0, b"xxxxx", 50), (2, 51, b"short", 5), (3, 57, b"yyyyy", 30)]


def test_dlq_record_text_base64_and_cap():
    rec = make_dlq("vpcflow", "bad", b"caf\xc3\xa9", line=3)
    assert (rec.raw, rec.encoding, rec.raw_len, rec.truncated, rec.line) == ("café", "utf-8", 5, False, 3)
    binary = make_dlq("netflow", "bad", b"\x00\xff\x10", offset=9)
    assert (binary.encoding, raw_bytes(binary), binary.offset) == ("base64", b"\x00\xff\x10", 9)
    big = make_dlq("zeek", "long", b"\xc3\xa9" * DLQ_RAW_CAP)
    assert big.truncated and big.encoding == "utf-8" and len(big.raw.encode()) <= DLQ_RAW_CAP
    assert decode_dlq(encode_dlq(big)) == big
    assert rec.time_ms > 1_600_000_000_000


def test_json_depth_guard():
    assert not json_too_deep(
        b'{"a": [1, {"b": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}'
    )
    assert json_too_deep(b"[" * 65 + b"]" * 65)
    assert not json_too_deep(b"[" * 64 + b"]" * 64)
    with pytest.raises(JsonRejected, match="nested deeper than 64"):
        load_json(b"[" * 10_000 + b"]" * 10_000)
    with pytest.raises(JsonRejected, match="invalid UTF-8"):
        load_json(b'{"a": "\xff"}')
    assert load_json(b'{"a": [1, 2]}') == {"a": [1, 2]}


def test_json_depth_guard_skips_strings_as_json_reads_them() -> None:
    """The strings the guard leaves out are JSON's: escaped quotes and backslashes inside, brackets
    inside; an unterminated string leaves its brackets counted. Checked against the plain
    alternation pattern on random strings of the characters that matter."""
    import re

    from ingest.reader import _STRING

    plain = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
    rnd = random.Random(7)
    for _ in range(20_000):
        text = bytes(rnd.choice(b'ab"\\[]{}\n') for _ in range(rnd.randrange(0, 40)))
        assert _STRING.sub(b"", text) == plain.sub(b"", text), text
    nested = b"[" * 40 + b'"\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"' + b"]" * 40
    assert not json_too_deep(nested)  # the string's brackets are not nesting
    assert json_too_deep(b"[" * 40 + b'"\\"' + b"[" * 30 + b"]" * 70)  # unterminated: they count


def test_100mb_line_is_capped_with_bounded_memory(tmp_path: Path):
    path = tmp_path / "huge.log"
    with path.open("wb") as fh:
        fh.write(VPC_LINE + b"\n")
        block = b"A" * (1024 * 1024)
        for _ in range(100):
            fh.write(block)
        fh.write(b"\n" + VPC_LINE + b"\n")
    dlqs = []

    class Keep:
        def __init__(self):
            from ingest.producer import SinkCounters

            self.counters = SinkCounters()
            self.events = 0

        def send_event(self, event):
            self.events += 1

        def send_dlq(self, record):
            dlqs.append(record)

        def flush(self):
            pass

        def close(self):
            pass

    sink = Keep()
    tracemalloc.start()
    start = time.monotonic()
    summary = run_ingest(path, "vpcflow", sink=sink)
    elapsed = time.monotonic() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (summary.parsed, summary.dlq, summary.skipped) == (2, 1, 0)
    (rec,) = dlqs
    assert rec.reason == f"line of {100 * 1024 * 1024} bytes is over the {MAX_LINE_BYTES} byte limit"
    assert (rec.line, rec.offset, rec.raw_len, rec.truncated) == (
        2,
        len(VPC_LINE) + 1,
        100 * 1024 * 1024,
        True,
    )
    assert rec.raw == "A" * DLQ_RAW_CAP
    assert peak < 12 * 1024 * 1024, f"peak traced memory {peak / 1e6:.1f} MB"
    assert elapsed < 30


def test_binary_garbage_every_line_accounted(tmp_path: Path):
    data = random.Random(7).randbytes(4 * 1024 * 1024)
    path = tmp_path / "garbage.bin"
    path.write_bytes(data)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    formats = ("vpcflow", "zeek", "syslog", "auditd", "falco", "cloudaudit", "cicflowmeter", "nprobe-csv", "nfdump",
               "suricata")  # fmt: skip
    for fmt in formats:
        summary = run_ingest(path, fmt)
        assert summary.parsed == 0, fmt
        assert summary.dlq + summary.skipped == lines, (fmt, summary)
        assert summary.dlq > 0.9 * lines


def test_binary_garbage_as_netflow_completes():
    data = random.Random(11).randbytes(2 * 1024 * 1024)
    start = time.monotonic()
    summary = run_ingest(io.BytesIO(data), "netflow")
    assert time.monotonic() - start < 30
    assert summary.parsed == 0 and summary.dlq > 0


def test_deeply_nested_json_lines_are_rejected_fast(tmp_path: Path):
    deep = b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    path = tmp_path / "deep.jsonl"
    path.write_bytes((deep + b"\n") * 50 + b"[" * 200_000 + b"\n")
    for fmt in ("falco", "zeek", "cloudaudit"):
        start = time.monotonic()
        summary = run_ingest(path, fmt)
        assert time.monotonic() - start < 10
        assert (summary.parsed, summary.dlq) == (0, 51), fmt
        assert summary.dlq_reasons == {"JSON nested deeper than levels": 51} or fmt == "zeek", (
            summary.dlq_reasons
        )


def test_invalid_utf8_counts():
    data = (
        b"\n".join([VPC_LINE, b"\xc3\x28 broken", VPC_LINE.replace(b"eni-1", b"eni-\xff"), VPC_LINE]) + b"\n"
    )
    summary = run_ingest(io.BytesIO(data), "vpcflow")
    assert (summary.parsed, summary.dlq, summary.skipped) == (2, 2, 0)
    assert summary.dlq_reasons == {"invalid UTF-8 at byte": 2}
