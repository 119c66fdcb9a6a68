"""What reading a bounded replay without watermark alignment costs: the same simulated
multi-tenant backlog through ``run_bounded`` as it is (unaligned) and with the live job's split
alignment put back into its sources, interleaved, each run in a process of its own.

Bounded runs read unaligned because the connector's alignment could fail a source whose split
had just ended (FLINK-39728), and a bounded job restarted from a checkpoint never finishes
(FLINK-31006). Alignment bounds how far one partition reads ahead of another in event time, so
without it a skewed backlog's windows may wait in state longer: this measures whether that shows
in the peak resident memory of the run's process tree (this process, its mini-cluster JVM and
the Python workers in it) and in its time, and checks that both give the same alerts. A run with
alignment may fail on the race; that is reported, not retried. Reports figures, asserts nothing.

One run: ``python -m tests.bench.bench_bounded --mode aligned|unaligned --tenants N --minutes M
--rate R`` prints one JSON line."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from infra.settings import PROJECT_ROOT
from tests.bench.procfs import rss_kib, tree_ticks

__all__ = ["run"]

BACKLOGS = ((3, 30, 300), (6, 30, 300))  # tenants, simulated minutes, events per second asked
REPEATS = 2


def _tree_rss_mib(root: int) -> int:
    """Resident memory of ``root`` and every process under it (the mini-cluster's JVM)."""
    kib = 0
    for pid in tree_ticks(root):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            kib += rss_kib(pid)
    return kib // 1024


def _align_bounded_sources() -> None:
    """Put the live job's alignment options back into bounded source tables (this process only)."""
    import streams.sql as sql

    plain = sql.source_ddl

    def aligned(settings: Any, **kw: Any) -> str:
        ddl = plain(settings, **kw)
        if not kw.get("bounded"):
            return ddl
        group = kw.get("alignment_group", sql.ALIGNMENT_GROUP)
        extra = ",\n  ".join(f"'{k}' = '{v}'" for k, v in sql._alignment(settings, group).items())
        bounded = "'scan.bounded.mode' = 'latest-offset'"
        return ddl.replace(bounded, f"{bounded},\n  {extra}")

    sql.source_ddl = aligned


def _one(mode: str, tenants: int, minutes: int, rate: int) -> dict[str, Any]:
    from infra.settings import load_settings
    from ingest.simulator import SimConfig, simulate
    from streams.demo import (
        alert_ids_in_topic,
        demo_settings,
        drop_run_scaffolding,
        new_run_id,
        produce_simulation,
    )
    from streams.runner import run_bounded

    if mode == "aligned":
        _align_bounded_sources()
    base = load_settings()
    s = demo_settings(base, new_run_id(base))
    sim = simulate(SimConfig(seed=5, tenants=tenants, duration_s=minutes * 60, events_per_s=rate))
    events = produce_simulation(s, sim, lambda _m: None)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_mib(os.getpid()))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    failure = None
    try:
        run_bounded(s, index=False, say=lambda _m: None)
    except Exception as exc:  # the race with alignment: reported as a figure
        failure = str(exc).splitlines()[0][:300]
    seconds = time.monotonic() - t0
    done.set()
    sampler.join()
    alerts = sorted(alert_ids_in_topic(s, s.topic_alerts))
    drop_run_scaffolding(s)
    return {
        "mode": mode, "tenants": tenants, "events": events, "job_seconds": round(seconds, 1),
        "peak_rss_mib": peak, "alert_ids": len(alerts),
        "alerts_digest": hashlib.sha256("\n".join(alerts).encode()).hexdigest()[:16],
        "failure": failure,
    }  # fmt: skip


def run(ctx: Any) -> dict[str, Any]:
    if not ctx.stack_up:
        return {"skipped": "needs the local stack (Kafka)"}
    out: dict[str, Any] = {"runs": []}
    for tenants, minutes, rate in BACKLOGS:
        for _ in range(REPEATS):
            for mode in ("unaligned", "aligned"):  # interleaved: the machine's load drifts
                proc = subprocess.run(
                    [sys.executable, "-m", "tests.bench.bench_bounded", "--mode", mode, "--tenants", str(tenants),
                     "--minutes", str(minutes), "--rate", str(rate)],
                    cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
                )  # fmt: skip
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                out["runs"].append(
                    json.loads(lines[-1]) if lines else {"mode": mode, "error": proc.stderr[-500:]}
                )
    for tenants, _minutes, _rate in BACKLOGS:
        mine = [r for r in out["runs"] if r.get("tenants") == tenants and r.get("failure") is None]
        for mode in ("unaligned", "aligned"):
            rss = [r["peak_rss_mib"] for r in mine if r["mode"] == mode]
            out[f"tenants_{tenants}_{mode}_peak_rss_mib_max"] = max(rss) if rss else None
        out[f"tenants_{tenants}_same_alerts"] = len({r["alerts_digest"] for r in mine}) == 1 if mine else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_bounded")
    parser.add_argument("--mode", choices=("aligned", "unaligned"), required=True)
    parser.add_argument("--tenants", type=int, default=6)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--rate", type=int, default=300)
    args = parser.parse_args(argv)
    print(json.dumps(_one(args.mode, args.tenants, args.minutes, args.rate)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
