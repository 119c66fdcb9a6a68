"""Small helpers the flow parsers share: protocol names, cheap cached address checks, and strict
readers of numeric cells whose errors are DLQ reasons in our words (``BadField``)."""

from __future__ import annotations

import csv
import ipaddress
import math
import re
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from operator import itemgetter
from typing import Annotated, Any, Final

import msgspec

from ingest.schema import TS_MAX_MS, TS_MIN_MS

__all__ = [
    "COUNT_MAX",
    "INT64",
    "INT64_MIN",
    "PORT",
    "PROTO_NAMES",
    "PROTO_NUMBERS",
    "BadField",
    "clip",
    "count_cell",
    "csv_cells",
    "decimal_cell",
    "event_time",
    "int64_cell",
    "ip_from_int",
    "number_or_text",
    "picker",
    "proto_name",
    "second_reading",
    "unexpected",
    "valid_ip",
]

COUNT_MAX: Final = 2**63 - 1  # the canonical counters' bound (ingest.schema), an Elasticsearch long
INT64_MIN: Final = -(2**63)
# a TCP/UDP port as the fast paths' msgspec decoders check it
PORT = Annotated[int, msgspec.Meta(ge=0, le=65535)]
# an integer kept in ``extra`` (Elasticsearch maps it as a long)
INT64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=COUNT_MAX)]
PROTO_NAMES: Final = {1: "icmp", 6: "tcp", 17: "udp"}
PROTO_NUMBERS: Final = {v: k for k, v in PROTO_NAMES.items()}
_PROTO_STR: Final = {n: PROTO_NAMES.get(n, str(n)) for n in range(256)}
_CACHE_MAX: Final = 65536
_valid: dict[str, bool] = {}
# a plain decimal number as exporters write it: no "inf", "nan", "1_000", or non-ASCII digits
_DECIMAL: Final = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)


class BadField(ValueError):
    """A field of one record that cannot be read; its message is the record's DLQ reason, in the
    project's words and naming the field and its value."""


def clip(value: object, width: int = 40) -> str:
    """``repr`` of a value for a DLQ reason, cut short (a hostile cell can be megabytes)."""
    shown = repr(value)
    return shown if len(shown) <= width else shown[: width - 3] + "..."


def unexpected(exc: BaseException, what: str) -> str:
    """The DLQ reason of a record whose reading raised something no check foresaw: the exception's
    type only, as its message is some library's wording."""
    return f"unexpected {type(exc).__name__} while reading a {what} record"


def count_cell(name: str, text: str, high: int = COUNT_MAX) -> int:
    """A cell that must hold an integer from 0 to ``high``: ASCII digits (spaces around and a
    ``+`` allowed), so ``1_000``, ``80.9`` or ``true`` are refused rather than read as numbers
    they do not spell."""
    s = text.strip()
    s = s[1:] if s[:1] == "+" else s
    if not (s.isascii() and s.isdigit()):
        if s[:1] == "-" and s[1:].isascii() and s[1:].isdigit():
            raise BadField(f"{name} is negative: {clip(s)}")
        raise BadField(f"{name} is not an integer: {clip(text)}")
    if len(s) > 20 or int(s) > high:  # a length check first: int() of 5,000 digits refuses
        raise BadField(f"{name} out of range: {clip(s)}")
    return int(s)


def int64_cell(name: str, text: str) -> int:
    """A cell that must hold a signed 64-bit integer (an Elasticsearch long): ASCII digits, a sign
    and spaces around allowed."""
    s = text.strip()
    digits = s[1:] if s[:1] in ("-", "+") else s
    if not (digits.isascii() and digits.isdigit()):
        raise BadField(f"{name} is not an integer: {clip(text)}")
    number = int(s) if len(digits) <= 20 else COUNT_MAX + 1
    if not INT64_MIN <= number <= COUNT_MAX:
        raise BadField(f"{name} out of range: {clip(s)}")
    return number


def event_time(name: str, ms: int, written: object) -> int:
    """``ms`` (epoch milliseconds read from the field ``name`` as ``written``) if it is a plausible
    event time (``ingest.schema``: 2000 to 2100), else ``BadField``."""
    if not TS_MIN_MS <= ms < TS_MAX_MS:
        raise BadField(f"{name} out of range: {clip(written)}")
    return ms


def second_reading(zone: tzinfo, first_ms: int) -> int | None:
    """Epoch ms of the second reading of the local time in ``zone`` that ``first_ms`` is the first
    reading of, where the clocks went back over it (the hour DST ends; the parsers read such a time
    as its first), else None. A flow's end read so is what keeps a flow across that hour from
    ending before it began."""
    wall = datetime.fromtimestamp(first_ms // 1000, zone)
    again = wall.replace(fold=1).timestamp()
    return int(again) * 1000 + first_ms % 1000 if again > wall.timestamp() else None


def decimal_cell(name: str, text: str) -> float:
    """A cell that must hold a finite decimal number (a time in seconds, a duration)."""
    s = text.strip()
    if _DECIMAL.fullmatch(s) is None:
        raise BadField(f"{name} is not a number: {clip(text)}")
    value = float(s)
    if not math.isfinite(value):
        raise BadField(f"{name} out of range: {clip(s)}")
    return value


def csv_cells(text: str, sep: str = ",") -> list[str]:
    """The cells of one CSV line, quoted or not. Raises BadField for a line the csv module
    refuses (a bare carriage return in a quoted line, ...): a DLQ record, never a crash."""
    if '"' not in text:
        return text.split(sep)
    try:
        return next(csv.reader([text], delimiter=sep))
    except csv.Error:  # its message is the csv module's wording
        raise BadField("not a valid CSV line (a stray quote or carriage return)") from None


def proto_name(number: int) -> str:
    """``tcp``/``udp``/``icmp``, or the IANA protocol number as text (DESIGN.md)."""
    name = _PROTO_STR.get(number)
    if name is None:
        raise BadField(f"protocol number {clip(number)} out of range")
    return name


def valid_ip(text: str) -> bool:
    """True for an IPv4 dotted quad or an IPv6 address (memoised: flow data repeats addresses)."""
    hit = _valid.get(text)
    if hit is not None:
        return hit
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
        ok = True
    except (OSError, ValueError):
        try:
            ipaddress.ip_address(text)  # scoped IPv6 ("fe80::1%eth0")
            ok = True
        except ValueError:
            ok = False
    if len(_valid) >= _CACHE_MAX:
        _valid.clear()
    _valid[text] = ok
    return ok


def ip_from_int(value: int, v6: bool = False) -> str:
    return str(ipaddress.IPv6Address(value)) if v6 else socket.inet_ntoa(value.to_bytes(4, "big"))


def number_or_text(text: str, name: str = "number") -> Any:
    """CSV cell as int, else float, else the stripped text; ``Infinity``/``NaN`` -> None (JSON has
    no such numbers). An integer beyond 64 bits raises ``BadField`` naming the column ``name``:
    Elasticsearch refuses it."""
    s = text.strip()
    if s.count(".") > 1 or ":" in s:  # a flow id or an address (CICFlowMeter's Flow ID is unique
        return s  # per flow): text, without the cost of two failed conversions
    if len(s) > 20 and s.lstrip("+-").isdigit():  # int() refuses 4,300 digits and more
        raise BadField(f"{name} out of range: {clip(s)}")
    try:
        value = int(s)
    except ValueError:
        pass
    else:
        if not INT64_MIN <= value <= COUNT_MAX:
            raise BadField(f"{name} out of range: {clip(s)}")
        return value
    try:
        number = float(s)
    except ValueError:
        return s
    return number if math.isfinite(number) else None


def picker(indexes: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """The items at ``indexes`` as a tuple, in one C call (``itemgetter`` returns a bare item for a
    single index; this always returns a tuple)."""
    if len(indexes) >= 2:
        return itemgetter(*indexes)
    if len(indexes) == 1:
        only = indexes[0]
        return lambda row: (row[only],)
    return lambda row: ()
