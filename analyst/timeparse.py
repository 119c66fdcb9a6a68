"""``--from``/``--to``/``--since`` values for the report and alert commands, as epoch milliseconds.

Accepted: epoch milliseconds (``1736935200000``), ISO 8601 dates or datetimes (UTC unless an
offset is given: ``2025-01-15``, ``2025-01-15T10:00``, ``2025-01-15T10:00:00+02:00``), ``now`` and
``now-<n><unit>`` with unit ``m``, ``h``, ``d`` or ``w`` (``now-7d``).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Final

__all__ = ["parse_duration", "parse_time"]

_UNITS: Final = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RELATIVE: Final = re.compile(r"^now(?:-(\d+)([mhdw]))?$")
_DURATION: Final = re.compile(r"^(\d+)([mhdw])$")


def parse_duration(text: str) -> int:
    """``30m``, ``2h``, ``1d``, ``1w`` as milliseconds."""
    if m := _DURATION.match(text.strip()):
        return int(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"cannot read duration {text!r}: use a number and m, h, d or w (e.g. 2h)")


def parse_time(text: str, now_ms: int | None = None) -> int:
    value = text.strip()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if m := _RELATIVE.match(value):
        return now - (int(m.group(1)) * _UNITS[m.group(2)] if m.group(1) else 0)
    if value.isdigit():
        return int(value)
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use epoch ms, ISO 8601 (2025-01-15T10:00Z) or now-7d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)
