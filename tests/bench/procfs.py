"""Process figures from /proc, for the benchmarks that measure a process and what it started."""

from __future__ import annotations

from pathlib import Path

__all__ = ["rss_kib", "tree_ticks"]


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` (0 when it reports none)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_ticks(root: int) -> dict[int, int]:
    """utime + stime (clock ticks) of ``root`` and every process under it, by pid."""
    parent: dict[int, int] = {}
    cpu: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        cpu[pid] = int(fields[11]) + int(fields[12])
    out = {}
    for pid in cpu:
        walk = pid
        while walk > 1 and walk != root:
            walk = parent.get(walk, 0)
        if walk == root:
            out[pid] = cpu[pid]
    return out
