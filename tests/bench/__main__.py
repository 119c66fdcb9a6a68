"""`make bench`: run every tests/bench/bench_*.py module's ``run(ctx)`` and write one JSON file of
results with the machine's facts under results/. Benchmarks report figures; they never assert
timings (the machines are shared and noisy: compare ratios measured in the same run)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.settings import PROJECT_ROOT, Settings, load_settings
from tests.bench.versions import service_versions

RESULTS = PROJECT_ROOT / "results"


@dataclass
class BenchContext:
    settings: Settings
    data_dir: Path | None
    stack_up: bool


def _cmd_version(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return "not found"
    return (proc.stdout + proc.stderr).strip().splitlines()[0] if (proc.stdout + proc.stderr).strip() else ""


def machine_facts() -> dict[str, Any]:
    from importlib.metadata import version

    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    commit = _cmd_version(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"])
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": commit,
        "cores": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "load_avg_at_start": os.getloadavg(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": _cmd_version(["java", "-version"]),
        "apache_flink": version("apache-flink"),
        "kafka_python": version("kafka-python"),
        "confluent_kafka": version("confluent-kafka"),
        "elasticsearch_client": version("elasticsearch"),
        "pyod": version("pyod"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("only", nargs="*", help="bench module names to run (default: all)")
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--no-stack", action="store_true", help="skip benchmarks that need Kafka/Elasticsearch"
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"folder of the results files ({RESULTS})"
    )
    args = parser.parse_args(argv)

    settings = load_settings()
    stack_up = False
    started_here = False
    if not args.no_stack:
        from infra.services import status, up
        from tests.leftovers import Leftovers

        # A stack this run starts is stopped at its end: one left running holds the ports that
        # another checkout's tests would launch their own on.
        started_here = not any(s.running for s in status(settings))
        up(settings, progress=lambda msg: print(f"[stack] {msg}"))
        stack_up = True
        leftovers = Leftovers(settings)
    ctx = BenchContext(settings, args.data if args.data.is_dir() else None, stack_up)
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if m in args.only or m.removeprefix("bench_") in args.only]
    machine = machine_facts()
    # the services' versions as they answer now, not as the build meant them to be
    machine |= service_versions(settings) if stack_up else {"services": "not asked (--no-stack)"}
    report: dict[str, Any] = {"machine": machine, "results": {}, "errors": {}}
    for name in modules:
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"tests.bench.{name}")
            report["results"][name] = module.run(ctx)
        except Exception:  # a failing benchmark is reported, and the others still run
            report["errors"][name] = traceback.format_exc()
            print(report["errors"][name], file=sys.stderr)
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    if stack_up:
        print(f"[stack] {leftovers.remove()}")
    if started_here:
        from infra.services import down

        down(settings, progress=lambda msg: print(f"[stack] {msg}"))
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    text = json.dumps(report, indent=2, sort_keys=True, default=str)
    # a partial run is named by what it ran and never replaces bench-latest (the last full run)
    names = [] if not args.only else [m.removeprefix("bench_") for m in modules]
    written = [args.results / f"bench-{'-'.join([stamp, *names])}.json"]
    if not args.only:
        written.append(args.results / "bench-latest.json")
    for path in written:
        path.write_text(text)
    print(json.dumps(report["results"], indent=2, default=str))
    print(f"[bench] results written to {', '.join(str(p) for p in written)}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
