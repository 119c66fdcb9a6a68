"""Each key's detection state in Flink keyed state, written cheaply enough for one step a second.

Pickling a key's whole engine on every one-second step was most of the job's Python time.
Instead the state lives in Flink as a *snapshot* plus a *log* of the steps taken since (each
step's raw payloads and the event time it advanced to: bytes, cheap to write); from time to time
the snapshot is rewritten and the log cleared. A checkpoint captures both, and a restored key
replays its logged steps on the snapshot: the engine is deterministic, so it ends in the state
it had, and the replayed outputs (emitted before that checkpoint) are dropped.

When to rewrite the snapshot: after at least ``snapshot_every`` steps, and (``log_ratio``) not
before the log holds that many times the snapshot's bytes. Pickling an engine costs ~35 ns per
byte of the pickle, copying the log's bytes far less; a tenant's flow engine (its hours of beacon
panes, its guessing windows) is 3 MB after 10 simulated minutes (105 ms to pickle), so at a fixed
count of steps the pickling grew with the state (``streams.detect_fn.DetectionJobConfig``).
Tied to the log's size, it costs the same per logged byte whatever the state's size.
``max_log_steps`` and ``max_log_bytes`` bound the replay after a restore and the log's share of
Flink's heap all the same.

Between steps the deserialized state stays in a small in-process cache. Only this store writes
its keys' state, and Flink restores state (after a failure, a rescale, a restart from a
checkpoint) only into a new operator, whose function opens a new store with an empty cache: a
cached state is the one in Flink. So a cached key's step makes one call into Flink state, the
log's append (or, now and then, the snapshot's rewrite and the log's clear), and what its timers
ask (how far the key has advanced, ``KeyState.advanced_to``) needs none. Calls are what cost: in
thread mode the job's Python operators share one interpreter, and every call into Java gives up
its lock, which the caller then waits to get back while another operator runs. Over the streams
bench's backlog the log's appends took 29.8 s in all and ran 1.1 s of that; a step counter and
the advanced time, which this store once kept in Flink beside them, cost three calls more a step.
"""

from __future__ import annotations

import pickle
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
# What a step without payloads (a timer) counts for in the log's bytes.
_STEP_BYTES = 16


class StateCache:
    """Deserialized key states, least recently used out first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, KeyState] = OrderedDict()

    def get(self, key: str) -> KeyState | None:
        state = self._entries.get(key)
        if state is not None:
            self._entries.move_to_end(key)
        return state

    def put(self, key: str, state: KeyState) -> None:
        self._entries[key] = state
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
        cache_keys: int = 512,
        snapshot_every: int,
        log_ratio: float = 0.0,
        max_log_steps: int = 0,
        max_log_bytes: int = 0,
    ) -> None:
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        if log_ratio < 0:
            raise ValueError("log_ratio must not be negative")
        self.logic = logic
        self.snapshot = snapshot
        self.log = log
        self.cache = StateCache(cache_keys)
        self.snapshot_every = snapshot_every
        self.log_ratio = log_ratio
        # 0: no bound of their own (the step count alone decides when log_ratio is 0)
        self.max_log_steps = max_log_steps or (1 << 62)
        self.max_log_bytes = max_log_bytes or (1 << 62)
        self.replayed_steps = 0

    def step(
        self, key: str, payloads: Sequence[bytes | str] | None, advance_to: int
    ) -> tuple[StepOutput, bool]:
        """One step of ``key``; returns its output and whether the key still has open work."""
        state = self.state(key)
        out = self.logic.step(state, key, payloads, advance_to)
        self._record(state, payloads, advance_to)
        return out, self.logic.has_open_work(state)

    def state(self, key: str) -> KeyState:
        """``key``'s state as of its last step (read from Flink unless cached)."""
        state = self.cache.get(key)
        if state is None:
            state = self._load(key)
            self.cache.put(key, state)
        return state

    def _load(self, key: str) -> KeyState:
        stored = self.snapshot.value()
        if isinstance(stored, bytes):  # the pickle this store wrote (KeyState: older checkpoints)
            snapshot_bytes = len(stored)
            stored = pickle.loads(stored)  # noqa: S301 - the job's own state, as Flink's pickled type
        else:
            snapshot_bytes = 0
        state = stored if stored is not None else self.logic.new_state()
        state.snapshot_bytes, state.log_bytes, state.logged_steps = snapshot_bytes, 0, 0
        self.logic.attach(state)
        for packed, advance_to in self.log.get() or ():
            payloads = None if packed is None else _unpack(packed)
            self.logic.step(state, key, payloads, advance_to)
            _count_logged(state, packed)
            self.replayed_steps += 1
        return state

    def _due(self, state: KeyState) -> bool:
        steps = state.logged_steps + 1  # this step's included
        if steps < self.snapshot_every:
            return False
        return (
            state.log_bytes >= self.log_ratio * state.snapshot_bytes
            or steps >= self.max_log_steps
            or state.log_bytes >= self.max_log_bytes
        )

    def _record(self, state: KeyState, payloads: Sequence[bytes | str] | None, advance_to: int) -> None:
        if self._due(state):
            state.logged_steps = state.log_bytes = 0
            self.logic.detach(state)
            try:
                # Pickled here, not by Flink's PICKLED_BYTE_ARRAY converter (which only wraps
                # these bytes, a copy): its size schedules the next snapshot.
                pickled = pickle.dumps(state)
            finally:
                self.logic.attach(state)
            state.snapshot_bytes = len(pickled)
            self.snapshot.update(pickled)
            self.log.clear()
        else:
            packed = None if payloads is None else _pack(payloads)
            self.log.add((packed, advance_to))
            _count_logged(state, packed)


def _count_logged(state: KeyState, packed: bytes | None) -> None:
    """Count one more step in ``state``'s log (written now, or replayed on load)."""
    state.logged_steps += 1
    state.log_bytes += _STEP_BYTES if packed is None else len(packed)
