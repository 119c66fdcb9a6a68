"""Small helpers the flow parsers share: protocol names and cheap, cached address checks."""

from __future__ import annotations

import csv
import ipaddress
import math
import socket
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Annotated, Any, Final

import msgspec

__all__ = [
    "PORT",
    "PROTO_NAMES",
    "PROTO_NUMBERS",
    "csv_cells",
    "ip_from_int",
    "number_or_text",
    "picker",
    "proto_name",
    "valid_ip",
]

# a TCP/UDP port as the fast paths' msgspec decoders check it
PORT = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PROTO_NAMES: Final = {1: "icmp", 6: "tcp", 17: "udp"}
PROTO_NUMBERS: Final = {v: k for k, v in PROTO_NAMES.items()}
_PROTO_STR: Final = {n: PROTO_NAMES.get(n, str(n)) for n in range(256)}
_CACHE_MAX: Final = 65536
_valid: dict[str, bool] = {}


def csv_cells(text: str, sep: str = ",") -> list[str]:
    """The cells of one CSV line, quoted or not. Raises ValueError for a line the csv module
    refuses (a bare carriage return in a quoted line, ...): a DLQ record, never a crash."""
    if '"' not in text:
        return text.split(sep)
    try:
        return next(csv.reader([text], delimiter=sep))
    except csv.Error as exc:
        raise ValueError(f"not a valid CSV line: {exc}") from None


def proto_name(number: int) -> str:
    """``tcp``/``udp``/``icmp``, or the IANA protocol number as text (DESIGN.md)."""
    name = _PROTO_STR.get(number)
    if name is None:
        raise ValueError(f"protocol number {number} out of range")
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


def number_or_text(text: str) -> Any:
    """CSV cell as int, else float, else the stripped text; ``Infinity``/``NaN`` -> None (JSON has
    no such numbers)."""
    s = text.strip()
    if s.count(".") > 1 or ":" in s:  # a flow id or an address (CICFlowMeter's Flow ID is unique
        return s  # per flow): text, without the cost of two failed conversions
    try:
        return int(s)
    except ValueError:
        pass
    try:
        value = float(s)
    except ValueError:
        return s
    return value if math.isfinite(value) else None


def picker(indexes: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """The items at ``indexes`` as a tuple, in one C call (``itemgetter`` returns a bare item for a
    single index; this always returns a tuple)."""
    if len(indexes) >= 2:
        return itemgetter(*indexes)
    if len(indexes) == 1:
        only = indexes[0]
        return lambda row: (row[only],)
    return lambda row: ()
