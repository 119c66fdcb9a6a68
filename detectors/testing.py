"""Helpers for testing detectors (used by the project's tests; handy for new detectors too).

``hostile_events`` are events with missing, null and odd fields; ``many_keys_events`` floods every
kind with distinct keys; ``fit_small_models`` fits tiny anomaly models so anomaly detectors can be
exercised without a real baseline.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from detectors.config import DetectorConfig
from detectors.samples import SAMPLE_START_MS
from ingest.schema import Event, decode_event
from ingest.tenants import TenantRegistry

__all__ = ["anomaly_config", "fit_small_models", "hostile_events", "many_keys_events", "synthetic_stream"]


def hostile_events(start_ms: int = SAMPLE_START_MS) -> list[Event]:
    """Events decoded from JSON with unknown keys, nulls where the schema allows them, empty strings,
        foreign types inside ``extra``, IPv6 and edge addresses (malformed ones are refused by the schema
    before any detector sees them)."""
    raw: list[dict[str, Any]] = [
        {"kind": "flow", "src_ip": "10.1.1.10", "dst_ip": "172.31.0.11", "dst_port": 16509, "host": None,
         "vm": None, "tenant": None, "unknown_key": {"deep": [1, 2]}, "extra": {"tcp_flags": 2}},
        {"kind": "flow", "src_ip": "255.255.255.255", "dst_ip": "::", "dst_port": 3333, "packets_out": 0},
        {"kind": "flow", "src_ip": "2001:db8::1", "dst_ip": "::ffff:10.1.1.10", "proto": "17",
         "packets_out": 90000, "bytes_out": 10},
        {"kind": "process", "exe": "/usr/bin/qemu-system-x86_64", "syscall": "openat", "path": None, "vm": None,
         "host": None, "cmdline": ""},
        {"kind": "process", "exe": "/usr/bin/qemu-system-x86_64", "syscall": "openat", "path": "/dev/mem",
         "vm": "vm-unknown", "cmdline": "-drive file="},
        {"kind": "process", "exe": "", "syscall": "", "parent_exe": "/usr/bin/qemu-system-x86_64", "path": ""},
        {"kind": "process", "exe": "/x/xmrig", "syscall": "execve", "cmdline": "STRATUM+TCP://X", "extra": None},
        {"kind": "audit", "principal": "", "action": "snapshot.Share", "resource": "", "principal_tenant": None,
         "resource_tenant": None, "extra": {"grantee": 7, "grantees": [None, 3, "t-gamma"]}},
        {"kind": "audit", "principal": "p", "action": "storage.GetObject", "resource": "storage", "principal_tenant": "t-x",
         "resource_tenant": None},
        {"kind": "auth", "user": "", "src_ip": None, "result": "failure"},
        {"kind": "auth", "user": "root", "src_ip": "203.0.113.1", "result": "success", "vm": None, "host": None},
    ]  # fmt: skip
    out = []
    for i, r in enumerate(raw):
        r = {k: v for k, v in r.items() if not (k == "extra" and v is None)}
        r.update({"id": f"hostile-{i}", "ts": start_ms + i, "source": "test"})
        out.append(decode_event(json.dumps(r)))
    return out


def many_keys_events(n: int, start_ms: int = SAMPLE_START_MS, seed: int = 0) -> list[Event]:
    """``n`` events of each kind, each with a distinct source / user / VM, all in one minute."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        ip = f"198.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        ts = start_ms + rng.randrange(50_000)
        out += [
            {"kind": "flow", "src_ip": ip, "dst_ip": "10.1.1.10", "dst_port": 1 + i % 60000, "action": "reject",
             "packets_out": 1, "bytes_out": 40, "tenant": "t-acme", "ts": ts},
            {"kind": "flow", "src_ip": "10.1.1.10", "dst_ip": ip, "dst_port": 3333, "bytes_out": 10, "packets_out": 1,
             "tenant": "t-acme", "ts": ts},
            {"kind": "process", "exe": "/usr/bin/qemu-system-x86_64", "syscall": "openat", "path": "/dev/mem",
             "vm": f"vm-{i}", "tenant": "t-acme", "ts": ts},
            {"kind": "audit", "principal": f"iam::t-gamma:user/u{i}", "action": "storage.GetObject",
             "resource": "storage/t-acme/b/k", "principal_tenant": "t-gamma", "resource_tenant": "t-acme", "ts": ts},
            {"kind": "auth", "user": "root", "src_ip": ip, "result": "failure", "tenant": "t-acme", "ts": ts},
        ]  # fmt: skip
    events = []
    for j, r in enumerate(out):
        r.update({"id": f"many-{j}", "source": "test"})
        events.append(decode_event(json.dumps(r)))
    events.sort(key=lambda e: e.ts)
    return events


def synthetic_stream(registry: TenantRegistry, minutes: int, start_ms: int, seed: int = 0) -> list[Event]:
    """Plain background for the tenants of ``registry``: web, DNS and east-west flows, emulator syscalls."""
    rng = random.Random(seed)
    vms = sorted(registry.vms.values(), key=lambda v: v.id)
    out: list[Event] = []
    n = 0
    for m in range(minutes):
        for _ in range(400):
            n += 1
            ts = start_ms + m * 60_000 + rng.randrange(60_000)
            vm = rng.choice(vms)
            r = rng.random()
            if r < 0.6:
                peer = rng.choice(vms)
                dst = (
                    peer.ip
                    if r < 0.2 and peer.tenant == vm.tenant
                    else f"93.184.{rng.randrange(4)}.{rng.randrange(1, 40)}"
                )
                raw: dict[str, Any] = {
                    "kind": "flow", "src_ip": vm.ip, "dst_ip": dst, "dst_port": rng.choice((443, 53, 8080)),
                    "bytes_out": int(rng.lognormvariate(7, 1)), "bytes_in": int(rng.lognormvariate(9, 1)),
                    "packets_out": rng.randrange(1, 20), "packets_in": rng.randrange(1, 20),
                    "duration_ms": rng.randrange(1, 2000), "tenant": vm.tenant, "vm": vm.id,
                }  # fmt: skip
            else:
                raw = {
                    "kind": "process", "exe": "/usr/bin/qemu-system-x86_64",
                    "syscall": rng.choice(("ioctl", "ioctl", "futex", "ppoll", "pread64", "pwrite64", "mmap")),
                    "path": vm.disk if rng.random() < 0.3 else "/dev/kvm", "tenant": vm.tenant, "vm": vm.id,
                    "host": vm.host,
                }  # fmt: skip
            raw.update({"id": f"bg-{seed}-{n}", "ts": ts, "source": "test"})
            out.append(decode_event(json.dumps(raw)))
    out.sort(key=lambda e: (e.ts, e.id))
    return out


def anomaly_config(models_dir: str | os.PathLike[str], family: str = "ecod", **engine: Any) -> DetectorConfig:
    """The default config with both anomaly detectors enabled on ``models_dir``."""
    over: dict[str, Any] = {
        "shared": {"models_dir": str(models_dir)},
        "detectors": {
            "anomaly.flow_features": {"enabled": True, "params": {"model": family, "min_baseline_rows": 10}},
            "anomaly.process_activity": {
                "enabled": True,
                "params": {"model": family, "min_baseline_rows": 10},
            },
        },
    }
    if engine:
        over["engine"] = engine
    return DetectorConfig.default().merged(over)


def fit_small_models(
    registry: TenantRegistry, models_dir: str | os.PathLike[str], family: str = "ecod", minutes: int = 60
) -> DetectorConfig:
    """Fit flow and process models on ``minutes`` of synthetic background; returns the config using them."""
    from detectors.anomaly.fit import fit_models

    cfg = anomaly_config(models_dir, family)
    events = synthetic_stream(registry, minutes, SAMPLE_START_MS - 86_400_000, seed=1)
    fit_models(events, registry, cfg, Path(models_dir), family=family)
    return cfg
