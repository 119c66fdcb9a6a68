"""Windowed features: flow statistics per tenant address, syscall/executable vectors per VM emulator.

Both are accumulated per (tenant, entity) and window by the anomaly detectors (and by the fitting
code, which replays a baseline period through the same accumulators), then turned into fixed-size
float vectors. Counts are log-scaled (``log1p``) so a model sees orders of magnitude.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Final

import numpy as np

__all__ = [
    "FLOW_FEATURES",
    "FlowStats",
    "ProcessStats",
    "process_feature_names",
    "process_vectors",
]

FLOW_FEATURES: Final = (
    "flows_out",
    "bytes_out",
    "bytes_in",
    "packets_out",
    "packets_in",
    "fan_out_hosts",
    "dst_ports",
    "rejected_out",
    "duration_mean_ms",
    "duration_max_ms",
    "flows_in",
    "fan_in_hosts",
    "bytes_received",
    "packets_received",
)


class FlowStats:
    """Flow activity of one tenant address in one window, as a source (out) and as a destination (in)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "bytes_recv",
        "dst_hosts",
        "dst_ports",
        "dur_max",
        "dur_sum",
        "first",
        "flows_in",
        "flows_out",
        "ids",
        "last",
        "packets_in",
        "packets_out",
        "packets_recv",
        "rejected",
        "src_hosts",
    )

    def __init__(self) -> None:
        self.flows_out = self.bytes_out = self.bytes_in = self.packets_out = self.packets_in = 0
        self.rejected = self.dur_sum = self.dur_max = 0
        self.flows_in = self.bytes_recv = self.packets_recv = 0
        self.dst_hosts: set[str] = set()
        self.dst_ports: set[int] = set()
        self.src_hosts: set[str] = set()
        self.first = self.last = 0
        self.ids: list[str] = []

    def touch(self, ts: int, event_id: str, max_ids: int) -> None:
        if self.flows_out + self.flows_in == 0:
            self.first = self.last = ts
        elif ts < self.first:
            self.first = ts
        elif ts > self.last:
            self.last = ts
        if len(self.ids) < max_ids:
            self.ids.append(event_id)

    def add_out(self, dst: str, port: int, sent: int, recv: int, pk_out: int, pk_in: int, dur: int,
                rejected: bool, cap: int) -> None:  # fmt: skip
        self.flows_out += 1
        self.bytes_out += sent
        self.bytes_in += recv
        self.packets_out += pk_out
        self.packets_in += pk_in
        self.dur_sum += dur
        if dur > self.dur_max:
            self.dur_max = dur
        if rejected:
            self.rejected += 1
        if len(self.dst_hosts) < cap:
            self.dst_hosts.add(dst)
        if len(self.dst_ports) < cap:
            self.dst_ports.add(port)

    def add_in(self, src: str, sent: int, pk_out: int, cap: int) -> None:
        self.flows_in += 1
        self.bytes_recv += sent
        self.packets_recv += pk_out
        if len(self.src_hosts) < cap:
            self.src_hosts.add(src)

    def merge(self, o: FlowStats, cap: int, max_ids: int) -> None:
        if o.flows_out + o.flows_in == 0:
            return
        if self.flows_out + self.flows_in == 0:
            self.first, self.last = o.first, o.last
        else:
            self.first, self.last = min(self.first, o.first), max(self.last, o.last)
        for name in ("flows_out", "bytes_out", "bytes_in", "packets_out", "packets_in", "rejected",
                     "dur_sum", "flows_in", "bytes_recv", "packets_recv"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(o, name))
        self.dur_max = max(self.dur_max, o.dur_max)
        for mine, theirs in ((self.dst_hosts, o.dst_hosts), (self.dst_ports, o.dst_ports),
                             (self.src_hosts, o.src_hosts)):  # fmt: skip
            for x in theirs:
                if len(mine) >= cap:
                    break
                mine.add(x)  # type: ignore[arg-type]
        self.ids.extend(i for i in o.ids[: max(0, max_ids - len(self.ids))] if i not in self.ids)

    @property
    def activity(self) -> int:
        return self.flows_out + self.flows_in

    def vector(self) -> list[float]:
        mean = self.dur_sum / self.flows_out if self.flows_out else 0.0
        raw = (
            self.flows_out, self.bytes_out, self.bytes_in, self.packets_out, self.packets_in,
            len(self.dst_hosts), len(self.dst_ports), self.rejected, mean, self.dur_max,
            self.flows_in, len(self.src_hosts), self.bytes_recv, self.packets_recv,
        )  # fmt: skip
        return [math.log1p(x) for x in raw]

    def __getstate__(self) -> tuple[object, ...]:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)


class ProcessStats:
    """Syscall and executable counts of one VM's host-side processes in one window."""

    __slots__ = ("exes", "first", "ids", "last", "syscalls", "total")

    def __init__(self) -> None:
        self.total = 0
        self.syscalls: dict[str, int] = {}
        self.exes: dict[str, int] = {}
        self.first = self.last = 0
        self.ids: list[str] = []

    def add(self, ts: int, event_id: str, syscall: str, exe: str, cap: int, max_ids: int) -> None:
        if self.total == 0:
            self.first = self.last = ts
        elif ts < self.first:
            self.first = ts
        elif ts > self.last:
            self.last = ts
        self.total += 1
        calls = self.syscalls
        if syscall in calls:
            calls[syscall] += 1
        elif len(calls) < cap:
            calls[syscall] = 1
        exes = self.exes
        if exe in exes:
            exes[exe] += 1
        elif len(exes) < cap:
            exes[exe] = 1
        if len(self.ids) < max_ids:
            self.ids.append(event_id)

    def merge(self, o: ProcessStats, cap: int, max_ids: int) -> None:
        if o.total == 0:
            return
        if self.total == 0:
            self.first, self.last = o.first, o.last
        else:
            self.first, self.last = min(self.first, o.first), max(self.last, o.last)
        self.total += o.total
        for mine, theirs in ((self.syscalls, o.syscalls), (self.exes, o.exes)):
            for k, v in theirs.items():
                if k in mine:
                    mine[k] += v
                elif len(mine) < cap:
                    mine[k] = v
        self.ids.extend(i for i in o.ids[: max(0, max_ids - len(self.ids))] if i not in self.ids)

    def __getstate__(self) -> tuple[object, ...]:
        return (self.total, self.syscalls, self.exes, self.first, self.last, self.ids)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.total, self.syscalls, self.exes, self.first, self.last, self.ids = s  # type: ignore[assignment]


def _bucket(name: str, buckets: int) -> int:
    return zlib.crc32(name.encode("utf-8", "surrogateescape")) % buckets


def process_feature_names(vocab: Sequence[str], exe_buckets: int) -> list[str]:
    return (
        ["log_events"]
        + [f"syscall:{s}" for s in vocab]
        + ["syscall:<other>"]
        + [f"exe_bucket:{i}" for i in range(exe_buckets)]
    )


def process_vectors(
    rows: Sequence[tuple[int, dict[str, int], dict[str, int]]], vocab: Sequence[str], exe_buckets: int
) -> np.ndarray:
    """(total, syscall counts, exe counts) rows -> [log1p(total), syscall shares..., other share,
    exe bucket shares...]. Shares make windows of different activity comparable; the total keeps
    the level. Executables are hashed (crc32, stable across runs) into ``exe_buckets`` buckets."""
    index = {s: i for i, s in enumerate(vocab)}
    width = 1 + len(vocab) + 1 + exe_buckets
    out = np.zeros((len(rows), width), dtype=np.float64)
    other = 1 + len(vocab)
    for r, (total, calls, exes) in enumerate(rows):
        if total <= 0:
            continue
        out[r, 0] = math.log1p(total)
        for name, n in calls.items():
            out[r, 1 + index[name] if name in index else other] += n / total
        if exe_buckets:
            for name, n in exes.items():
                out[r, other + 1 + _bucket(name, exe_buckets)] += n / total
    return out
