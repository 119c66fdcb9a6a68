"""Brute force on real sshd logs: loghub OpenSSH_2k.log through the ingest sshd parser (or, if the
parsers are unavailable, the structured CSV) and the default detectors; names the addresses that
raise brute-force alerts, next to every address's failure count."""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.job_order import OrderedFeed
from detectors.registry import all_detectors
from ingest.schema import AuthEvent, Event, event_id

__all__ = ["openssh", "parse_log"]

_FAILED = re.compile(r"Failed (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from (?P<ip>\S+) port")
_ACCEPTED = re.compile(r"Accepted (?P<method>\S+) for (?P<user>.*?) from (?P<ip>\S+) port")


def _from_csv(path: Path, year: int) -> list[Event]:
    out: list[Event] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            content = row["Content"]
            m = _FAILED.search(content) or _ACCEPTED.search(content)
            if m is None:
                continue
            stamp = datetime.strptime(f"{year} {row['Date']} {row['Day']} {row['Time']}", "%Y %b %d %H:%M:%S")
            out.append(
                AuthEvent(
                    id=event_id("loghub-csv", content + row["LineId"]),
                    ts=int(stamp.replace(tzinfo=UTC).timestamp() * 1000),
                    source="sshd",
                    host=row["Component"],
                    user=m["user"],
                    src_ip=m["ip"],
                    method=m["method"],
                    result="failure" if content.startswith("Failed") else "success",
                )
            )
    return out


def parse_log(folder: Path, year: int = 2017) -> tuple[list[Event], str]:
    try:
        from ingest.parsers import parse_bytes
        from ingest.parsers.base import ParseContext
    except ImportError:  # pragma: no cover - parsers are another engineer's work in progress
        return _from_csv(folder / "OpenSSH_2k.log_structured.csv", year), "structured CSV (fallback)"
    out = parse_bytes("sshd", (folder / "OpenSSH_2k.log").read_bytes(), ParseContext(year=year))
    return list(out.events), "ingest.parsers sshd (syslog_auth)"


def openssh(data_dir: Path) -> dict[str, Any]:
    folder = data_dir / "loghub_OpenSSH"
    events, parser = parse_log(folder)
    events.sort(key=lambda e: (e.ts, e.id))
    cfg = DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(None, cfg), strict=True)
    alerts = OrderedFeed(engine).run(events)
    brute = [a for a in alerts if a.category == "brute_force"]
    fails = Counter(e.src_ip for e in events if isinstance(e, AuthEvent) and e.result == "failure")
    by_ip: dict[str, dict[str, Any]] = {}
    for a in brute:
        row = by_ip.setdefault(a.entity.id, {"alerts": 0, "failures_in_alerted_windows": 0, "max_score": 0,
                                             "success_after_failures": False, "distinct_users": 0})  # fmt: skip
        row["alerts"] += 1
        row["failures_in_alerted_windows"] += int(a.evidence["failures"])
        row["max_score"] = max(row["max_score"], a.score)
        row["success_after_failures"] |= bool(a.evidence["success_after_failures"])
        row["distinct_users"] = max(row["distinct_users"], int(a.evidence["distinct_users"]))
    for ip, row in by_ip.items():
        row["failures_total"] = fails[ip]
    quiet = {ip: n for ip, n in fails.most_common() if ip not in by_ip}
    return {
        "parser": parser,
        "auth_events": sum(isinstance(e, AuthEvent) for e in events),
        "failures": sum(fails.values()),
        "span_hours": round((events[-1].ts - events[0].ts) / 3_600_000, 2) if events else 0,
        "brute_force_alerts": len(brute),
        "other_alerts": Counter(a.detector for a in alerts if a.category != "brute_force"),
        "attacking_addresses": dict(sorted(by_ip.items(), key=lambda kv: -kv[1]["failures_total"])),
        "addresses_not_alerted": dict(list(quiet.items())[:15]),
        "rule": "brute_force.auth_failures, default config (>=10 failures, or >=5 over >=3 targets, per 10 min, "
        ">=80% of the source's attempts failing)",
    }
