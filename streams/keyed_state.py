"""Each key's detection state in Flink keyed state, written cheaply enough for one step a second.

Pickling a key's whole engine (50-150 KB) on every one-second step was most of the job's Python
time. Instead the state lives in Flink as a *snapshot* plus a *log* of the steps taken since
(each step's raw payloads and the event time it advanced to: bytes, cheap to write); every
``snapshot_every`` steps the snapshot is rewritten and the log cleared. A checkpoint captures
both, and a restored key replays its logged steps on the snapshot: the engine is deterministic,
so it ends in the state it had, and the replayed outputs (emitted before that checkpoint) are
dropped.

Between steps the deserialized state stays in a small in-process cache, valid only while the
step counter (``version``, also in Flink state) matches, so a restore or anything else that
changed the state underneath is read from Flink again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import msgspec

from streams.detect_fn import KeyState, MicroBatchDetector, StepOutput

__all__ = ["KeyStateStore", "StateCache"]


class ValueHandle(Protocol):
    def value(self) -> Any: ...
    def update(self, value: Any) -> None: ...


class ListHandle(Protocol):
    def get(self) -> Iterable[Any] | None: ...
    def add(self, value: Any) -> None: ...
    def clear(self) -> None: ...


_pack = msgspec.msgpack.Encoder().encode  # one bytes value: cheaper to pickle than a list of them
_unpack = msgspec.msgpack.Decoder().decode  # msgpack keeps bytes as bytes and text as str


class StateCache:
    """Deserialized key states, least recently used out first, each valid for one version."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[int, KeyState]] = OrderedDict()

    def get(self, key: str, version: int) -> KeyState | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, version: int, state: KeyState) -> None:
        self._entries[key] = (version, state)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class KeyStateStore:
    """Runs steps of the current key against its state in Flink (handles scoped to that key)."""

    def __init__(
        self,
        logic: MicroBatchDetector,
        *,
        snapshot: ValueHandle,
        log: ListHandle,
        version: ValueHandle,
        cache_keys: int = 512,
        snapshot_every: int,
    ) -> None:
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self.logic = logic
        self.snapshot = snapshot
        self.log = log
        self.version = version
        self.cache = StateCache(cache_keys)
        self.snapshot_every = snapshot_every
        self.replayed_steps = 0

    def step(
        self, key: str, payloads: Sequence[bytes | str] | None, advance_to: int
    ) -> tuple[StepOutput, bool]:
        """One step of ``key``; returns its output and whether the key still has open work."""
        state, version = self._load(key)
        out = self.logic.step(state, key, payloads, advance_to)
        self._record(key, state, version + 1, payloads, advance_to)
        return out, self.logic.has_open_work(state)

    def _load(self, key: str) -> tuple[KeyState, int]:
        version = self.version.value() or 0
        state = self.cache.get(key, version)
        if state is not None:
            return state, version
        state = self.snapshot.value() if version else None
        if state is None:
            state = self.logic.new_state()
        self.logic.attach(state)
        for packed, advance_to in self.log.get() or ():
            payloads = None if packed is None else _unpack(packed)
            self.logic.step(state, key, payloads, advance_to)
            self.replayed_steps += 1
        return state, version

    def _record(
        self, key: str, state: KeyState, version: int, payloads: Sequence[bytes | str] | None, advance_to: int
    ) -> None:
        if version - state.snapshot_version >= self.snapshot_every:
            state.snapshot_version = version
            self.logic.detach(state)
            self.snapshot.update(state)
            self.logic.attach(state)
            self.log.clear()
        else:
            self.log.add((None if payloads is None else _pack(payloads), advance_to))
        self.version.update(version)
        self.cache.put(key, version, state)
