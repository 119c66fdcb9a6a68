"""The event ids an output produced lately, to drop an exact copy of a record sent again.

Shippers deliver at least once: Filebeat, Fluent Bit and rsyslog over RELP send again, after a
restart or a lost acknowledgement, what the receiver had not acknowledged (Elastic's Filebeat
reference, "Deduplicate data": the Beats framework guarantees at-least-once delivery, and a
shutdown during processing or a connection lost before events are acknowledged gives duplicates;
elastic/beats issues 30061 and 36541 are restarts that sent whole files again). The copies are the
same bytes, so the parser gives them the same event ids (``ingest.schema.event_id`` hashes the
source and the raw record), and the detectors would count them twice (a held connection's time,
an upload's bytes, a failed login). Distinct records with the same bytes are not expected: sshd
writes the client's port and its own pid on each line and pam_unix waits 2 s after a failed
password; Zeek names each connection (``uid``), auditd numbers each event, flow records carry
their times and counters (no line repeats in loghub's 2,000 sshd lines of a password-guessing
campaign, nor in an hour of RITA's Zeek conn log).

``RecentIds`` remembers the ids of the last ``capacity / 2`` to ``capacity`` events (two
generations of ``capacity / 2``: the newer becomes the older when it fills, and the older is
forgotten), as 64-bit hashes of the id strings (``hash``: random per process, which is all an
in-memory set needs), so memory is bounded whatever the rate: about 4.5 MB at the default
capacity (tracemalloc's peak over 300,000 ids committed 3,000 at a time). A copy sent again after
more newer events than that passes (a whole file sent again, as in those issues, is mostly
counted twice), as does any copy after a restart of the reader.

Ids produced in an open transaction are ``pending``: a copy of one is dropped, but they join the
remembered ids only at ``commit``, and ``abort`` forgets them, since an aborted transaction's
records are read again and must then be produced again.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ingest.schema import Event

__all__ = ["DEFAULT_CAPACITY", "DUPLICATE", "RecentIds"]

DEFAULT_CAPACITY: Final = 65_536
DUPLICATE: Final = "the same record as one sent lately (a shipper's delivery again)"
"""The skip reason of a dropped copy."""

_ID: Final = attrgetter("id")


class RecentIds:
    """Event ids produced lately (module docstring); ``seen`` is called once per event produced."""

    __slots__ = ("_capacity", "_half", "_new", "_old", "_pending")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError(f"capacity of recent event ids must be at least 2, not {capacity}")
        self._half = capacity // 2
        self._capacity = 2 * self._half  # what the two generations hold at most
        self._new: set[int] = set()
        self._old: set[int] = set()
        self._pending: set[int] = set()

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` was produced lately (the event is a copy); else it is noted as produced
        in the open transaction (while it holds fewer than ``capacity`` ids) and False."""
        h = hash(event_id)
        pending = self._pending
        if h in pending or h in self._new or h in self._old:
            return True
        if len(pending) < self._capacity:
            pending.add(h)
        return False

    def fresh(self, events: list[Event]) -> list[Event]:
        """The events of ``events`` that are not copies (``seen`` of each, in order). A batch with
        none, the common case, is checked by set operations in C, with no Python call per event."""
        hashes = set(map(hash, map(_ID, events)))
        pending = self._pending
        if len(hashes) == len(events) and hashes.isdisjoint(pending) and hashes.isdisjoint(self._new) \
                and hashes.isdisjoint(self._old):  # fmt: skip
            if len(pending) < self._capacity:
                pending |= hashes
            return events
        seen = self.seen
        return [ev for ev in events if not seen(ev.id)]

    def commit(self) -> None:
        """The open transaction's output is committed: its ids are remembered."""
        if not self._pending:
            return
        self._new |= self._pending
        self._pending = set()
        if len(self._new) >= self._half:
            self._old, self._new = self._new, set()

    def abort(self) -> None:
        """The open transaction's output is gone: its records will be produced again."""
        self._pending = set()

    def __len__(self) -> int:
        return len(self._new) + len(self._old) + len(self._pending)
