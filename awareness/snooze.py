"""Analysts' snoozes: "this detector's alerts about this entity are noise until then".

A snooze is written by ``ssa incidents snooze`` to a YAML file (one per deployment, like the tenant
registry: a path from settings) and read by the awareness stage, which still attaches a snoozed
alert to its incident but lets it neither raise the incident's severity nor open a new one; the
incident's audit trail says who snoozed what, why and until when.

The file is read with ``yaml.safe_load`` under a size limit and checked entry by entry: a bad
entry is refused with the reason, never half-read. It is rewritten atomically (a temporary file
renamed over it), so the job never reads a torn file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = ["MAX_SNOOZE_FILE_BYTES", "Snooze", "SnoozeError", "SnoozeWatcher", "add_snooze", "load_snoozes"]

MAX_SNOOZE_FILE_BYTES: Final = 1 << 20
MAX_TEXT: Final = 500


class SnoozeError(ValueError):
    """The snooze file or a snooze request is not valid; the message says which entry and why."""


@dataclass(frozen=True)
class Snooze:
    tenant: str
    detector: str
    entity_id: str
    until_ms: int
    reason: str
    by: str
    at_ms: int

    def covers(self, tenant: str, detector: str, entity_id: str, ts: int) -> bool:
        return (
            ts < self.until_ms
            and tenant == self.tenant
            and detector == self.detector
            and entity_id == self.entity_id
        )


def _entry(raw: Any, where: str) -> Snooze:
    if not isinstance(raw, dict):
        raise SnoozeError(f"{where}: expected a mapping")
    fields = {"tenant": str, "detector": str, "entity_id": str, "until_ms": int, "reason": str, "by": str,
              "at_ms": int}  # fmt: skip
    unknown = set(raw) - set(fields)
    if unknown:
        raise SnoozeError(f"{where}: unknown keys {sorted(unknown)}")
    for name, kind in fields.items():
        value = raw.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SnoozeError(f"{where}.{name}: expected {kind.__name__}, got {type(value).__name__}")
        if isinstance(value, str) and (len(value) > MAX_TEXT or (name != "reason" and not value.strip())):
            raise SnoozeError(f"{where}.{name}: empty or longer than {MAX_TEXT} characters")
    return Snooze(**raw)


def load_snoozes(path: str | os.PathLike[str]) -> list[Snooze]:
    """Every snooze in the file (an absent file holds none)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return []
    if size > MAX_SNOOZE_FILE_BYTES:
        raise SnoozeError(f"{p}: {size} bytes is over the {MAX_SNOOZE_FILE_BYTES} byte limit")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SnoozeError(f"{p}: not valid YAML ({type(exc).__name__})") from None
    entries = data.get("snoozes") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SnoozeError(f"{p}: expected a mapping with a list under 'snoozes'")
    return [_entry(raw, f"{p}: snoozes[{i}]") for i, raw in enumerate(entries)]


def add_snooze(path: str | os.PathLike[str], snooze: Snooze, *, now_ms: int) -> list[Snooze]:
    """Add ``snooze`` (replacing one of the same tenant, detector and entity) and drop the ones
    that ended before ``now_ms``; written atomically. Returns the snoozes now in force."""
    _entry(asdict(snooze), "snooze")
    p = Path(path)
    kept = [
        s for s in load_snoozes(p)
        if s.until_ms > now_ms and (s.tenant, s.detector, s.entity_id) != (snooze.tenant, snooze.detector, snooze.entity_id)
    ]  # fmt: skip
    current = [*kept, snooze]
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".snoozes-", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yaml.safe_dump({"snoozes": [asdict(s) for s in current]}, out, sort_keys=True)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return current


class SnoozeWatcher:
    """The file's snoozes, read again when its modification time or size changes. A file that
    became invalid keeps the last good list in force (and says so through ``error``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._snoozes: list[Snooze] = []
        self.error: str | None = None

    def current(self) -> list[Snooze]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            try:
                self._snoozes = load_snoozes(self.path)
                self.error = None
            except SnoozeError as exc:
                self.error = str(exc)
            self._stamp = stamp
        return self._snoozes
