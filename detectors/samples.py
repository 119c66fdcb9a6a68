"""Rule samples: ``detectors/rules/<threat>/<name>.events.json`` beside each rule (streamalert style).

File layout::

    {"detector": "<id>",
     "cases": [{"description": "...",
                "trigger": ["<detector id>", ...],      # [] marks a look-alike: nothing may fire
                "events": [{canonical event without id/ts}, ...],
                "repeat": {"count": 30, "step_ms": 1000, "increment": {"dst_port": 1}},   # optional
                "entity": "ip:203.0.113.9"}]}                                            # optional

``repeat`` replays the event group ``count`` times, ``step_ms`` apart, adding ``k * n`` to the
incremented fields on the k-th copy (an IPv4 address is incremented in its last octets). Events
get deterministic ids (``<file>:<case>:<copy>:<n>``) and times from ``SAMPLE_START_MS``; events of
a group are 10 ms apart. The registry they refer to is ``rules/samples_tenants.yaml``.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import msgspec

from ingest.schema import Event
from ingest.tenants import TenantRegistry

__all__ = ["SAMPLE_START_MS", "SampleCase", "load_cases", "sample_files", "samples_registry"]

SAMPLE_START_MS: Final = 1_736_150_401_000  # one second after a 10-minute boundary


@dataclass(frozen=True)
class SampleCase:
    file: str
    index: int
    description: str
    trigger: frozenset[str]
    entity: str | None
    events: list[Event]


def _rules_dir() -> Path:
    return Path(str(resources.files("detectors") / "rules"))


def sample_files() -> list[Path]:
    return sorted(_rules_dir().glob("*/*.events.json"))


def samples_registry() -> TenantRegistry:
    return TenantRegistry.load(_rules_dir() / "samples_tenants.yaml")


def _bump(value: Any, by: int, where: str) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{where}: cannot increment a boolean")
    if isinstance(value, int):
        return value + by
    if isinstance(value, str):
        return str(ipaddress.ip_address(value) + by)
    raise ValueError(f"{where}: cannot increment {value!r}")


def load_cases(path: str | Path) -> list[SampleCase]:
    p = Path(path)
    data = json.loads(p.read_text(encoding="utf-8"))
    stem = p.name.removesuffix(".events.json")
    out = []
    for ci, case in enumerate(data["cases"]):
        where = f"{p}: cases[{ci}]"
        rep = case.get("repeat") or {}
        count, step = int(rep.get("count", 1)), int(rep.get("step_ms", 1000))
        inc: dict[str, int] = rep.get("increment") or {}
        events: list[Event] = []
        for k in range(count):
            for j, template in enumerate(case["events"]):
                raw = dict(template)
                for field, by in inc.items():
                    raw[field] = _bump(raw[field], by * k, f"{where}.repeat.increment.{field}")
                raw.setdefault("id", f"{stem}:{ci}:{k}:{j}")
                raw.setdefault("ts", SAMPLE_START_MS + k * step + 10 * j)
                try:
                    events.append(msgspec.convert(raw, Event))
                except msgspec.ValidationError as exc:
                    raise ValueError(f"{where}.events[{j}]: {exc}") from None
        out.append(
            SampleCase(
                file=p.name,
                index=ci,
                description=str(case["description"]),
                trigger=frozenset(case["trigger"]),
                entity=case.get("entity"),
                events=events,
            )
        )
    return out
