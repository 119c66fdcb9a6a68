"""What every parser must keep on any input, checked by the property tests and the fuzz target.

``check_parse(fmt, data)`` parses ``data`` with ``parse_bytes`` and raises ``InvariantBroken``
(naming the invariant) when:

- an exception escapes the parser (the exception is chained);
- the accounting breaks: the records fed (``records_fed``) differ from events + DLQ records +
  counted skips. A record is a non-blank line for line formats (header lines included: they are
  skips; blank lines are left out of both sides, as parsers may or may not count them), an element
  of ``Records`` for a CloudTrail document (a line for CloudTrail JSON lines and EventBridge events,
  a log event for CloudTrail's CloudWatch Logs deliveries), a log event of a
  CloudWatch Logs ``DATA_MESSAGE`` for VPC flow logs (an empty one: a skip); a syslog line
  ``message repeated N times`` stands for N lines, so input with one is only held to at least
  one outcome per line. Binary NetFlow input has no boundaries the harness can trust once
  mutated: there, any non-empty input must produce at least one outcome;
- an event does not survive ``decode_event(encode_event(e))`` unchanged, or breaks the bounds;
- a DLQ reason is empty or carries a Python message rather than the project's words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from ingest.bounds import violations as bound_violations
from ingest.parsers import FORMATS, ListOutput, ParseContext, parse_bytes
from ingest.parsers.cloudwatch_logs import DeliveryRefused, is_delivery, open_delivery
from ingest.reader import JsonRejected, load_json
from ingest.schema import decode_event, encode_event
from tests.fuzz.seeds import split_records

__all__ = ["InvariantBroken", "RecordsFed", "check_output", "check_parse", "records_fed"]

BLANK_SKIP: Final = "blank line"
# Fragments of CPython's own exception messages that must never reach a DLQ reason (rule 1 of
# issue 18: reasons are in the project's words). Checked for absence only.
PYTHON_WORDING: Final = (
    "invalid literal for int()",
    "Invalid isoformat string",
    "could not convert string to float",
    "object has no attribute",
    "unpack requires a buffer",
    "division by zero",
    "object is not subscriptable",
    "not supported between instances",
    "Traceback (most recent call last)",
)
_DOCUMENT_OPENERS: Final = (b"{", b'{"Records": [', b'{"Records":[')
_DOCUMENT_START: Final = re.compile(rb'\s*\{\s*"Records"')
_REPEATED: Final = re.compile(rb"message repeated \d+ times: \[")
_REFERENCE_MS: Final = 1_733_000_000_000  # a fixed "now" (2024-11-30), so runs repeat exactly


class InvariantBroken(AssertionError):
    """A parser broke one of the invariants on some input; the message says which."""


@dataclass(frozen=True)
class RecordsFed:
    """How many records an input holds: between ``low`` and ``high`` (None: no upper bound)."""

    low: int
    high: int | None

    def holds(self, produced: int) -> bool:
        return produced >= self.low and (self.high is None or produced <= self.high)

    def __str__(self) -> str:
        if self.high == self.low:
            return str(self.low)
        return f"{self.low}+" if self.high is None else f"{self.low}-{self.high}"


def records_fed(fmt: str, data: bytes) -> RecordsFed:
    if FORMATS[fmt].binary:
        return RecordsFed(1 if data else 0, None)
    lines = split_records(data)
    # Whether a line of control characters (\x1c-\x1f) is blank depends on whether the parser
    # strips bytes or text: either way is accounted for, as a skip or a record.
    solid = [line for line in lines if line.decode("utf-8", "replace").strip()]
    doubtful = sum(1 for line in lines if line.strip()) - len(solid)
    if fmt == "cloudaudit":
        fed = _cloudtrail_records(data, solid)
        return RecordsFed(fed.low, None if fed.high is None else fed.high + doubtful)
    if fmt == "vpcflow":
        records = sum(_log_events_in(line) for line in solid)
        return RecordsFed(records, records + doubtful)
    if fmt == "syslog" and any(_REPEATED.search(line) for line in solid):
        return RecordsFed(len(solid), None)  # "message repeated N times" stands for N lines
    return RecordsFed(len(solid), len(solid) + doubtful)


def _cloudtrail_records(data: bytes, lines: list[bytes]) -> RecordsFed:
    """A document (one line or pretty-printed) holds its ``Records``; JSON lines one each. A
    document that does not decode may be rejected whole or after some of its records."""
    if not lines:
        return RecordsFed(0, 0)
    if len(lines) > 1 and lines[0].strip() in _DOCUMENT_OPENERS:  # a pretty-printed document
        whole = _records_in(data)
        if whole is None:
            return RecordsFed(1, None)  # rejected whole, or after some of its records
        return RecordsFed(whole, whole) if whole else RecordsFed(0, 1)  # an empty one: maybe a skip
    low, high, bounded = 0, 0, True
    for line in lines:
        inner = _records_in(line)
        if inner is None and _DOCUMENT_START.match(line):
            low, bounded = low + 1, False  # a broken document: rejected whole or after some records
        elif inner is None:
            low, high = low + 1, high + 1  # the line itself goes to the DLQ
        elif inner == 0:
            high += 1  # an empty document: nothing, or one skip
        else:
            low, high = low + inner, high + inner
    return RecordsFed(low, max(low, high) if bounded else None)


def _log_events_in(line: bytes) -> int:
    """Records of a VPC flow log line: the log events of a CloudWatch Logs delivery it opens, else 1
    (the line, or a document refused whole)."""
    if line.lstrip()[:1] != b"{":
        return 1
    try:
        doc = load_json(line)
    except JsonRejected:
        return 1
    entries = _delivery_entries(doc)
    return 1 if entries is None else entries


def _delivery_entries(value: Any) -> int | None:
    """Outcomes of a CloudWatch Logs delivery: one per log event (each read or refused alone; none:
    one skip), 1 for a delivery refused whole or a CONTROL_MESSAGE; None if ``value`` is none."""
    if not is_delivery(value):
        return None
    try:
        return max(1, len(open_delivery(value).entries))
    except DeliveryRefused:
        return 1


def _records_in(data: bytes) -> int | None:
    """Records of one JSON value: its ``Records`` if a document, the entries of ``logEvents`` if a
    CloudWatch Logs delivery the parser opens (each entry one outcome; none: one skip), else 1 (a
    record, an EventBridge event, a refused envelope); None if not JSON."""
    try:
        value = load_json(data)
    except JsonRejected:
        return None
    if isinstance(value, dict) and isinstance(value.get("Records"), list):
        return len(value["Records"])
    entries = _delivery_entries(value)
    return 1 if entries is None else entries


def check_parse(fmt: str, data: bytes, ctx: ParseContext | None = None) -> ListOutput:
    """Parse ``data`` and check every invariant; returns what the parser produced."""
    try:
        out = parse_bytes(fmt, data, ctx or ParseContext(reference_ms=_REFERENCE_MS, year=2024))
    except Exception as exc:
        raise InvariantBroken(f"{fmt}: {type(exc).__name__} escaped the parser") from exc
    check_output(fmt, data, out)
    return out


def check_output(fmt: str, data: bytes, out: ListOutput) -> None:
    fed = records_fed(fmt, data)
    skips = sum(n for reason, n in out.skipped.items() if reason != BLANK_SKIP)
    produced = len(out.events) + len(out.dlqs) + skips
    if not fed.holds(produced):
        raise InvariantBroken(
            f"{fmt}: accounting broken: {fed} records in, "
            f"{len(out.events)} events + {len(out.dlqs)} DLQ + {skips} skips out "
            f"(skips: {dict(out.skipped)})"
        )
    for violation in bound_violations(out.events):
        raise InvariantBroken(f"{fmt}: event out of bounds: {violation[1]}")
    for event in out.events:
        _check_round_trip(fmt, event)
    for record in out.dlqs:
        reason = record.reason
        if not reason or not reason.strip():
            raise InvariantBroken(f"{fmt}: DLQ record without a reason")
        leaked = next((w for w in PYTHON_WORDING if w in reason), None)
        if leaked is not None:
            raise InvariantBroken(f"{fmt}: DLQ reason in Python's words ({leaked!r}): {reason[:200]!r}")


def _check_round_trip(fmt: str, event: Any) -> None:
    try:
        encoded = encode_event(event)
    except Exception as exc:
        raise InvariantBroken(f"{fmt}: event does not encode: {type(exc).__name__}") from exc
    try:
        decoded = decode_event(encoded)
    except Exception as exc:
        raise InvariantBroken(
            f"{fmt}: event does not decode ({type(exc).__name__}): {encoded[:300]!r}"
        ) from exc
    if decoded != event:
        raise InvariantBroken(f"{fmt}: event changes through encode/decode: {encoded[:300]!r}")
