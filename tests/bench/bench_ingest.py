"""Ingest benchmark: parse+encode events/s per format on generated inputs (and parse alone, without
the encoding), tenant lookups/s, (when the stack is up) ``ssa ingest``-equivalent events/s
into Kafka for both Kafka clients, and, as a part of its own (``peak_rss``), the peak RSS of
``ssa ingest FILE --format F --output /dev/null`` on a 200 MB input of each format.

``run(ctx)`` returns flat numbers whose key names carry their unit. ``ctx`` has ``settings``,
``data_dir`` (the shared datasets or None) and ``stack_up``. Run by hand with
``.venv/bin/python -m tests.bench.bench_ingest [--kafka]``; ``--rss`` runs only the peak-RSS part
and writes its own dated results file.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from infra.settings import Settings, load_settings
from ingest.dlq import DlqRecord, encode_dlq
from ingest.pipeline import run_ingest
from ingest.producer import SinkCounters, TelemetryProducer
from ingest.schema import Event, encode_event
from ingest.tenants import TenantRegistry
from streams.kafka_target import kafka_target
from tests.samples.netflow_gen import ipfix_packet, v5_packet, v9_packet

__all__ = ["run"]

N_FLOWS = 200_000
N_OTHER = 50_000


class EncodeSink:
    """Serialises every event (what any real sink does) and keeps nothing."""

    def __init__(self) -> None:
        self.counters = SinkCounters()

    def send_event(self, event: Event) -> None:
        self.counters.bytes += len(encode_event(event))
        self.counters.events += 1

    def send_dlq(self, record: DlqRecord) -> None:
        self.counters.bytes += len(encode_dlq(record))
        self.counters.dlq += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class CountSink(EncodeSink):
    """Counts events without serialising them: parse+validate alone (the events are built,
    validated and enriched with the tenant; encoding is the sink's work)."""

    def send_event(self, event: Event) -> None:
        self.counters.events += 1


def _registry() -> TenantRegistry:
    tenants = [
        {
            "id": f"t-{i:03d}",
            "cidrs": [f"10.{i}.0.0/16"],
            "vms": [
                {"id": f"vm-{i}-{j}", "host": f"hv-{j % 8}", "ip": f"10.{i}.0.{j}"} for j in range(1, 20)
            ],
        }
        for i in range(100)
    ]
    return TenantRegistry.from_dict({"tenants": tenants})


def _ips(rnd: random.Random, n: int) -> list[str]:
    internal = [f"10.{rnd.randrange(100)}.0.{rnd.randrange(1, 40)}" for _ in range(3000)]
    external = [
        f"{rnd.randrange(1, 223)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
        for _ in range(3000)
    ]
    return [rnd.choice(internal) if rnd.random() < 0.7 else rnd.choice(external) for _ in range(n)]


def gen_vpcflow(n: int, rnd: random.Random) -> bytes:
    src, dst = _ips(rnd, n), _ips(rnd, n)
    t0 = 1_709_632_800
    lines = [
        f"2 123456789012 eni-0a1b2c3d{i % 97:04d} {src[i]} {dst[i]} {rnd.randrange(1024, 65535)} "
        f"{rnd.choice((22, 53, 80, 443, 3389, 5432))} {rnd.choice((6, 6, 6, 17, 1))} {rnd.randrange(1, 500)} "
        f"{rnd.randrange(40, 10**6)} {t0 + i // 50} {t0 + i // 50 + 60} {rnd.choice(('ACCEPT', 'ACCEPT', 'REJECT'))} OK"
        for i in range(n)
    ]
    return ("\n".join(lines) + "\n").encode()


def gen_nprobe(n: int, rnd: random.Random) -> bytes:
    src, dst = _ips(rnd, n), _ips(rnd, n)
    head = "IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,L7_PROTO,IN_BYTES,IN_PKTS,OUT_BYTES,OUT_PKTS,"
    head += "TCP_FLAGS,FLOW_DURATION_MILLISECONDS,FLOW_START_MILLISECONDS,FLOW_END_MILLISECONDS,Label,Attack"
    t0 = 1_709_632_800_000
    rows = [
        f"{src[i]},{rnd.randrange(1024, 65535)},{dst[i]},{rnd.choice((22, 53, 443))},6,7.0,{rnd.randrange(40, 10**6)},"
        f"{rnd.randrange(1, 500)},{rnd.randrange(40, 10**6)},{rnd.randrange(1, 500)},27,1500,{t0 + i},{t0 + i + 1500},0,Benign"
        for i in range(n)
    ]
    return (head + "\n" + "\n".join(rows) + "\n").encode()


def gen_zeek(n: int, rnd: random.Random) -> bytes:
    """conn.log rows in the mix of a real network edge: completed TCP and DNS, and the unanswered
    or refused attempts whose unset cells (``-`` duration and byte counts, no service) real logs
    are full of (about a third of the rows here)."""
    src, dst = _ips(rnd, n), _ips(rnd, n)
    sample = (Path(__file__).parents[1] / "samples" / "zeek_conn.log").read_text().splitlines()
    head = [line for line in sample if line.startswith("#") and not line.startswith("#close")]
    rows = []
    for i in range(n):
        sport, local = rnd.randrange(1024, 65535), rnd.choice(("T\tF", "F\tT", "T\tT", "-\t-"))
        pick = rnd.random()
        # the byte counts (cells 3 and 4) are "-" where Zeek left them unset
        cells: tuple[str, str, str, int | str, int | str, str, str, int, int, int, int, int]
        if pick < 0.5:  # a completed TCP session
            pkts_o, pkts_r = rnd.randrange(3, 99), rnd.randrange(2, 99)
            by_o, by_r = rnd.randrange(0, 10**5), rnd.randrange(0, 10**6)
            cells = ("tcp", rnd.choice(("ssl", "http", "-", "ssh")), f"{rnd.random() * 10:.6f}", by_o, by_r,
                     "SF", "ShADadFf", pkts_o, by_o + 40 * pkts_o, pkts_r, by_r + 40 * pkts_r, 443)  # fmt: skip
        elif pick < 0.65:  # a DNS exchange
            by_o, by_r = rnd.randrange(30, 80), rnd.randrange(40, 400)
            cells = ("udp", "dns", f"{rnd.random() / 10:.6f}", by_o, by_r, "SF", "Dd", 1, by_o + 28, 1,
                     by_r + 28, 53)  # fmt: skip
        elif pick < 0.75:  # a lone SYN: no duration, no payload counts
            cells = ("tcp", "-", "-", "-", "-", "S0", "S", 1, 60, 0, 0, rnd.choice((22, 23, 445, 3389, 8080)))
        elif pick < 0.85:  # retransmitted SYNs, never answered
            k = rnd.randrange(2, 4)
            cells = (
                "tcp",
                "-",
                f"{3 * (k - 1) + rnd.random() / 100:.6f}",
                0,
                0,
                "S0",
                "S",
                k,
                60 * k,
                0,
                0,
                443,
            )
        elif pick < 0.93:  # refused
            cells = (
                "tcp",
                "-",
                f"{rnd.random() / 1000:.6f}",
                0,
                0,
                "REJ",
                "Sr",
                1,
                60,
                1,
                40,
                rnd.randrange(1, 1024),
            )
        elif pick < 0.97:  # midstream, one packet seen
            cells = ("tcp", "-", "-", "-", "-", "OTH", "^h", 0, 0, 1, 52, 443)
        else:  # reset by the originator
            cells = ("tcp", "-", f"{rnd.random() * 30:.6f}", rnd.randrange(0, 10**4), 0, "RSTO", "ShADaR", 5, 452, 3,
                     132, 443)  # fmt: skip
        proto, service, duration, bytes_o, bytes_r, state, history, p_o, ip_o, p_r, ip_r, dport = cells
        rows.append(
            f"{1709632800 + i / 100:.6f}\tC{i:017d}\t{src[i]}\t{sport}\t{dst[i]}\t{dport}\t{proto}\t{service}\t"
            f"{duration}\t{bytes_o}\t{bytes_r}\t{state}\t{local}\t0\t{history}\t{p_o}\t{ip_o}\t{p_r}\t{ip_r}\t-"
        )
    return ("\n".join(head + rows) + "\n").encode()


def gen_netflow(n: int, rnd: random.Random, version: int) -> bytes:
    src, dst = _ips(rnd, n), _ips(rnd, n)
    out = []
    per = 30 if version == 5 else 24
    for start in range(0, n, per):
        flows = [
            (
                src[i],
                dst[i],
                rnd.randrange(1024, 65535),
                443,
                6,
                rnd.randrange(40, 10**6),
                rnd.randrange(1, 99),
                1000 + i,
                2000 + i,
            )
            for i in range(start, min(n, start + per))
        ]
        if version == 5:
            out.append(v5_packet(flows, 1709632800, 10**7, seq=start))
        elif version == 9:
            out.append(v9_packet(flows, 1709632800, 10**7, seq=start, with_template=start == 0))
        else:
            absolute = [(*f[:7], 1709632800000 + f[7], 1709632800000 + f[8]) for f in flows]
            out.append(ipfix_packet(absolute, 1709632800, seq=start, with_template=start == 0))
    return b"".join(out)


def gen_syslog(n: int, rnd: random.Random) -> bytes:
    ips = _ips(rnd, 500)
    lines = []
    for i in range(n):
        pid, ip, sec = 20000 + i // 3, rnd.choice(ips), i % 60
        msg = rnd.choice(
            (
                f"Failed password for root from {ip} port {rnd.randrange(1024, 65535)} ssh2",
                f"Failed password for invalid user admin{i % 50} from {ip} port {rnd.randrange(1024, 65535)} ssh2",
                f"Connection closed by {ip} [preauth]",
                f"Accepted publickey for deploy from {ip} port 50022 ssh2: RSA SHA256:abc",
            )
        )
        lines.append(f"Dec 10 07:{(i // 60) % 60:02d}:{sec:02d} vm-{i % 100}-1 sshd[{pid}]: {msg}")
    return ("\n".join(lines) + "\n").encode()


def gen_auditd(n: int, rnd: random.Random) -> bytes:
    lines = []
    for i in range(n):
        ts = f"{1709632800 + i // 100}.{i % 1000:03d}:{100000 + i}"
        lines.append(
            f"node=hv-{i % 8} type=SYSCALL msg=audit({ts}): arch=c000003e syscall=59 success=yes exit=0 "
            f"a0=55d5 a1=55d6 a2=55d7 a3=0 items=2 ppid={i % 3000} pid={i % 30000} auid=1000 uid=0 gid=0 "
            f'euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm="bash" exe="/usr/bin/bash" '
            f'key="exec"'
        )
        lines.append(f'node=hv-{i % 8} type=EXECVE msg=audit({ts}): argc=2 a0="bash" a1="-c{i}"')
        lines.append(f'node=hv-{i % 8} type=CWD msg=audit({ts}): cwd="/root"')
        lines.append(
            f'node=hv-{i % 8} type=PATH msg=audit({ts}): item=0 name="/usr/bin/bash" inode=1 dev=fd:00 '
            "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL"
        )
        lines.append(f"node=hv-{i % 8} type=EOE msg=audit({ts}): ")
    return ("\n".join(lines) + "\n").encode()


def gen_falco(n: int, rnd: random.Random) -> bytes:
    lines = []
    for i in range(n):
        rec = {
            "hostname": f"vm-{i % 100}-1",
            "output": "Warning Sensitive file opened",
            "priority": "Warning",
            "rule": "Read sensitive file untrusted",
            "source": "syscall",
            "tags": ["filesystem"],
            "time": f"2024-05-18T10:{(i // 60) % 60:02d}:{i % 60:02d}.408091526Z",
            "output_fields": {
                "container.id": "host",
                "evt.type": "openat",
                "fd.name": "/etc/shadow",
                "proc.cmdline": f"cat /etc/shadow {i}",
                "proc.exepath": "/usr/bin/cat",
                "proc.pid": i,
                "proc.ppid": 1,
                "proc.pname": "bash",
                "user.uid": 0,
            },
        }
        lines.append(json.dumps(rec))
    return ("\n".join(lines) + "\n").encode()


def gen_cloudtrail(n: int, rnd: random.Random) -> bytes:
    lines = []
    for i in range(n):
        acct = f"{100000000000 + i % 100}"
        rec = {
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "IAMUser",
                "arn": f"arn:aws:iam::{acct}:user/u{i % 7}",
                "accountId": acct,
            },
            "eventTime": f"2024-03-05T10:{(i // 60) % 60:02d}:{i % 60:02d}Z",
            "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "10.1.0.5",
            "requestParameters": {"bucketName": f"b{i % 13}", "key": f"k/{i}"},
            "resources": [
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::b{i % 13}/k/{i}"},
                {"accountId": acct, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::b{i % 13}"},
            ],
            "eventID": f"e-{i}",
            "recipientAccountId": acct,
        }
        lines.append(json.dumps(rec))
    return ("\n".join(lines) + "\n").encode()


def gen_cic(n: int, rnd: random.Random) -> bytes:
    """CIC-IDS2017 rows whose ~72 feature columns differ from row to row, as in the real dataset:
    integer and float statistics of plausible magnitudes, many zeros, and ``Infinity``/``NaN``
    rates of zero-length flows (about 1 row in 200)."""
    header = (Path(__file__).parents[1] / "samples" / "cicids2017.csv").read_bytes().splitlines()[0]
    src, dst = _ips(rnd, n), _ips(rnd, n)
    rows = []
    for i in range(n):
        proto = rnd.choice((6, 6, 6, 17, 17, 0))
        sport, dport = rnd.randrange(1024, 65535), rnd.choice((22, 53, 80, 123, 443, 8080, 3389))
        ts = f"7/7/2017 {8 + i // 36000 % 10}:{i // 600 % 60:02d}"
        flow_id = f"{dst[i]}-{src[i]}-{dport}-{sport}-{proto}"
        rows.append(
            ",".join([flow_id, src[i], str(sport), dst[i], str(dport), str(proto), ts, *_cic_features(rnd)])
        )
    return header + b"\n" + "\n".join(rows).encode() + b"\n"


def _cic_features(rnd: random.Random) -> list[str]:
    """Flow Duration .. Label (78 cells) of one CIC-IDS2017 row."""
    duration = 0 if rnd.random() < 0.005 else int(rnd.expovariate(1 / 2e6)) + 1
    fwd, bwd = rnd.randrange(1, 60), rnd.randrange(0, 60)
    fwd_len, bwd_len = fwd * rnd.randrange(0, 1460), bwd * rnd.randrange(0, 1460)
    if not duration and rnd.random() < 0.3:  # a lone SYN or RST
        fwd_len = bwd_len = 0
    packets, size = fwd + bwd, fwd_len + bwd_len

    def real(scale: float) -> str:  # a statistic: zero, a short or long decimal, or Java's 1.0E7 style
        x = rnd.random()
        if x < 0.3:
            return "0"
        value = rnd.expovariate(1 / scale)
        if x < 0.55:
            return f"{value:.1f}"
        if value >= 1e7 and x < 0.7:
            return f"{value / 10**7:.7f}E7"
        return repr(value)

    def count(top: int) -> str:
        return "0" if rnd.random() < 0.3 else str(rnd.randrange(top))

    if duration:
        rates = [repr(size / duration * 1e6), repr(packets / duration * 1e6)]
    else:
        rates = ["Infinity" if size else "NaN", "Infinity"]
    cells = [str(duration), str(fwd), str(bwd), str(fwd_len), str(bwd_len)]
    cells += [count(1460), count(100), real(300), real(200), count(1460), count(100), real(300), real(200)]
    cells += [*rates, real(1e5), real(2e5), str(rnd.randrange(duration + 1)), count(50)]  # Flow IAT
    for _ in range(2):  # Fwd IAT, Bwd IAT: total, mean, std, max, min
        cells += [count(duration + 1), real(1e5), real(1e5), count(duration + 1), count(1000)]
    cells += [count(2), "0", "0", "0"]  # PSH / URG flags
    header_len = str(20 * fwd) if rnd.random() > 0.001 else "-1073741824"
    cells += [header_len, str(20 * bwd), real(1e4), real(1e4)]
    cells += [count(60), count(1460), real(500), real(400), real(2e5)]  # packet length statistics
    cells += [count(2) for _ in range(8)] + [count(4), real(600), real(500), real(500), header_len]
    cells += ["0"] * 6  # bulk rates
    cells += [str(fwd), str(fwd_len), str(bwd), str(bwd_len)]
    cells += [rnd.choice(("-1", "-1", "29200", "8192", "65535", str(rnd.randrange(65536))))]
    cells += [rnd.choice(("-1", "0", "235", "28960", str(rnd.randrange(65536))))]
    cells += [str(rnd.randrange(fwd)), rnd.choice(("20", "32", "0"))]
    cells += [real(1e6) for _ in range(4)]  # Active mean, std, max, min
    cells += [real(2e7) for _ in range(4)]  # Idle mean, std, max, min
    return [*cells, rnd.choice(("BENIGN",) * 8 + ("DoS Hulk", "PortScan", "DDoS", "SSH-Patator"))]


_ROUNDS = 5


def _rate(
    fmt: str, data: bytes, registry: TenantRegistry, sink: type[EncodeSink] = EncodeSink, **options: Any
) -> tuple[float, int]:
    """One run: events per CPU second of this process (one core), and events parsed."""
    start = time.process_time()
    summary = run_ingest(io.BytesIO(data), fmt, registry=registry, sink=sink(), year=2023, **options)
    return summary.parsed / max(time.process_time() - start, 1e-9), summary.parsed


def _best_rates(runs: dict[str, Callable[[], tuple[float, int]]]) -> dict[str, tuple[float, int]]:
    """The best of ``_ROUNDS`` runs of each, as timeit takes the best: other tenants' load on this
    shared machine only ever slows a run down. The runs go round-robin, so each one's runs are
    spread over the whole benchmark rather than caught together in one busy minute (back to back,
    Zeek's best of five was 94k events/s in a full bench on a quiet host, and 121-125k in a probe
    process minutes later)."""
    best: dict[str, tuple[float, int]] = {}
    for _ in range(_ROUNDS):
        for name, run_once in runs.items():
            rate, parsed = run_once()
            if rate > best.get(name, (0.0, 0))[0]:
                best[name] = (rate, parsed)
    return best


def _calibration_us() -> float:
    """CPU speed reference: microseconds for ``sum(range(1000))`` (about 7-9 us on a current desktop
    core with CPython 3.11), so rates from different machines can be compared."""
    import timeit

    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def _lookup_rates(registry: TenantRegistry) -> dict[str, float]:
    rnd = random.Random(5)
    working_set = _ips(rnd, 20_000)
    ips = [rnd.choice(working_set) for _ in range(500_000)]
    lookup: Callable[[str], Any] = registry.tenant_of_ip
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for ip in ips:
            lookup(ip)
        best = max(best, len(ips) / (time.perf_counter() - start))
    cold = _registry()
    unique = [f"10.{rnd.randrange(100)}.{rnd.randrange(256)}.{rnd.randrange(256)}" for _ in range(60_000)]
    start = time.perf_counter()
    for ip in unique:
        cold.tenant_of_ip(ip)
    return {
        "tenant_lookup_cached_mix_per_s": round(best),
        "tenant_lookup_uncached_per_s": round(len(unique) / (time.perf_counter() - start)),
    }


def _kafka_rates(settings: Settings, data: bytes, registry: TenantRegistry) -> dict[str, float]:
    from confluent_kafka.admin import AdminClient, NewTopic

    from infra.bootstrap import topic_configs

    bench = settings.with_overrides(topic_prefix="bench.ssa.telemetry.", topic_dlq="bench.ssa.dlq")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    wanted = [*bench.telemetry_topics.values(), bench.topic_dlq]
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [
        NewTopic(
            t, num_partitions=settings.kafka_partitions, replication_factor=1, config=topic_configs(bench, t)
        )
        for t in wanted
        if t not in existing
    ]
    for future in (admin.create_topics(missing) if missing else {}).values():
        future.result(30)
    out: dict[str, float] = {}
    for client in ("confluent", "kafka-python"):
        producer = TelemetryProducer(kafka_target(bench), client)
        start = time.perf_counter()
        summary = run_ingest(io.BytesIO(data), "vpcflow", registry=registry, sink=producer)
        producer.flush()
        elapsed = time.perf_counter() - start
        producer.close()
        key = client.replace("-", "_")
        out[f"kafka_{key}_events_per_s"] = round(summary.parsed / elapsed)
        out[f"kafka_{key}_events"] = summary.parsed
    return out


RSS_INPUT_BYTES = 200 * 1024 * 1024
_RSS_CHUNK_EVENTS = 20_000


def _rss_inputs(rnd: random.Random) -> dict[str, tuple[bytes, bytes, bytes, bytes]]:
    """Per format: (head, body, separator, tail) of a 200 MB input: the body (generated records)
    is written again and again, joined by the separator, until the input reaches its size."""

    def lines(data: bytes, head_lines: int = 0) -> tuple[bytes, bytes, bytes, bytes]:
        parts = data.split(b"\n", head_lines)
        return b"\n".join(parts[:head_lines]) + (b"\n" if head_lines else b""), parts[-1], b"", b""

    zeek = gen_zeek(_RSS_CHUNK_EVENTS, rnd)
    zeek_head = sum(1 for line in zeek.splitlines() if line.startswith(b"#"))
    records = [json.loads(line) for line in gen_cloudtrail(2000, rnd).splitlines()]
    pretty = b",\n".join(json.dumps(rec, indent=2).encode() for rec in records)
    return {
        "vpcflow": lines(gen_vpcflow(_RSS_CHUNK_EVENTS, rnd)),
        "netflow": (gen_netflow(24, rnd, 9), gen_netflow(_RSS_CHUNK_EVENTS, rnd, 9), b"", b""),
        "nprobe-csv": lines(gen_nprobe(_RSS_CHUNK_EVENTS, rnd), 1),
        "zeek": lines(zeek, zeek_head),
        "cicflowmeter": lines(gen_cic(_RSS_CHUNK_EVENTS // 4, rnd), 1),
        "auditd": lines(gen_auditd(_RSS_CHUNK_EVENTS // 4, rnd)),
        "falco": lines(gen_falco(_RSS_CHUNK_EVENTS // 4, rnd)),
        "syslog": lines(gen_syslog(_RSS_CHUNK_EVENTS, rnd)),
        # one pretty-printed CloudTrail document of 200 MB (up to 256 MB are accepted)
        "cloudaudit": (b'{"Records": [\n', pretty, b",\n", b"\n]}\n"),
    }


def _write_input(path: Path, head: bytes, body: bytes, sep: bytes, tail: bytes) -> int:
    size = 0
    with path.open("wb") as fh:
        size += fh.write(head)
        while size < RSS_INPUT_BYTES:
            size += fh.write(body if size == len(head) else sep + body)
        size += fh.write(tail)
    return size


def _child_peak_rss_mb(cmd: list[str], scratch: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit status) of one command, as GNU time reports it. Not the
    rusage of a child of this process: Linux starts a child's peak at its parent's RSS at the fork
    (kept through exec), so every figure under this process's own RSS would read as that RSS."""
    report = scratch / "time.out"
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), *cmd],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)  # fmt: skip
    seconds = time.perf_counter() - start
    kb = int(report.read_text().split()[-1])
    return kb / 1024, seconds, proc.returncode


def peak_rss(
    formats: list[str] | None = None, progress: Callable[[str], None] | None = None
) -> dict[str, float]:
    """Peak RSS of ``ssa ingest`` per format on a 200 MB generated input (one at a time, each
    input deleted after its run), with the input's size, the run's wall time and exit status.
    Needs GNU time (``/usr/bin/time``)."""
    rnd = random.Random(3)
    ssa = str(Path(sys.executable).with_name("ssa"))
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ssa-rss-") as tmp:
        for fmt, parts in _rss_inputs(rnd).items():
            if formats and fmt not in formats:
                continue
            path = Path(tmp) / f"input.{fmt}"
            size = _write_input(path, *parts)
            cmd = [ssa, "ingest", str(path), "--format", fmt, "--output", os.devnull, "--year", "2024"]
            rss, seconds, status = _child_peak_rss_mb(cmd, Path(tmp))
            path.unlink()
            key = fmt.replace("-", "_")
            results[f"ingest_peak_rss_{key}_mb"] = round(rss, 1)
            results[f"ingest_peak_rss_{key}_input_mb"] = round(size / 2**20, 1)
            results[f"ingest_peak_rss_{key}_seconds"] = round(seconds, 1)
            results[f"ingest_peak_rss_{key}_exit_status"] = status
            if progress is not None:
                progress(
                    f"{fmt}: peak RSS {rss:.1f} MB on {size / 2**20:.1f} MB in {seconds:.1f} s, exit {status}"
                )
    return results


def run(ctx: Any) -> dict[str, float]:
    rnd = random.Random(1)
    registry = _registry()
    results: dict[str, float] = {"cpu_calibration_sum_range_1000_us": round(_calibration_us(), 2)}
    inputs = {
        "vpcflow": gen_vpcflow(N_FLOWS, rnd),
        "nprobe-csv": gen_nprobe(N_FLOWS, rnd),
        "zeek": gen_zeek(N_FLOWS, rnd),
        "netflow_v5": gen_netflow(N_FLOWS, rnd, 5),
        "netflow_v9": gen_netflow(N_FLOWS, rnd, 9),
        "netflow_ipfix": gen_netflow(N_FLOWS, rnd, 10),
        "syslog": gen_syslog(N_OTHER, rnd),
        "auditd": gen_auditd(N_OTHER, rnd),
        "falco": gen_falco(N_OTHER, rnd),
        "cloudaudit": gen_cloudtrail(N_OTHER, rnd),
        "cicflowmeter": gen_cic(N_OTHER, rnd),
    }
    keys = {name: name.replace("-", "_") for name in inputs}
    runs: dict[str, Callable[[], tuple[float, int]]] = {}
    for name, data in inputs.items():
        fmt, key = "netflow" if name.startswith("netflow") else name, keys[name]
        runs[f"parse_{key}"] = functools.partial(_rate, fmt, data, registry)
        # the same without the JSON encoding of each event (parse and validate only)
        runs[f"parse_no_encode_{key}"] = functools.partial(_rate, fmt, data, registry, CountSink)
    # CICFlowMeter's ~72 statistical columns, kept only when asked (ssa ingest --cic-features)
    cic = inputs["cicflowmeter"]
    runs["parse_cicflowmeter_all_features"] = functools.partial(_rate, "cicflowmeter", cic, registry,
                                                                cic_features=True)  # fmt: skip
    runs["parse_no_encode_cicflowmeter_all_features"] = functools.partial(
        _rate, "cicflowmeter", cic, registry, CountSink, cic_features=True
    )
    best = _best_rates(runs)
    results.update((f"{name}_events_per_s", round(rate)) for name, (rate, _) in best.items())
    results.update((f"parse_{key}_events", best[f"parse_{key}"][1]) for key in keys.values())
    results.update(_lookup_rates(registry))
    data_dir = getattr(ctx, "data_dir", None)
    ssh = Path(data_dir) / "loghub_OpenSSH" / "OpenSSH_2k.log" if data_dir else None
    if ssh is not None and ssh.exists():
        summary = run_ingest(ssh, "syslog", year=2015)
        results.update(
            loghub_openssh_parsed_events=summary.parsed,
            loghub_openssh_dlq_records=summary.dlq,
            loghub_openssh_skipped_lines=summary.skipped,
        )
    if getattr(ctx, "stack_up", False):
        results.update(_kafka_rates(ctx.settings, inputs["vpcflow"], registry))
    del inputs, runs, best, cic
    results.update(peak_rss())
    return results


def _rss_only() -> None:
    """``--rss [FORMAT ...]``: the peak-RSS part alone, in a dated results file of its own."""
    from tests.bench.__main__ import RESULTS, machine_facts

    figures = peak_rss(sys.argv[sys.argv.index("--rss") + 1 :] or None, lambda line: print(line, flush=True))
    for key, value in figures.items():
        print(f"{key:45s} {value:>14,}")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = RESULTS / f"bench-{stamp}-ingest_rss.json"
    report = {"machine": machine_facts(), "results": {"bench_ingest": figures}, "errors": {}}
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    print(f"results written to {path}")


if __name__ == "__main__":
    from tests.paths import SHARED_DATA as shared

    if "--rss" in sys.argv:
        _rss_only()
        raise SystemExit(0)
    ctx = SimpleNamespace(
        settings=load_settings(), data_dir=shared if shared.is_dir() else None, stack_up="--kafka" in sys.argv
    )
    for key, value in run(ctx).items():
        print(f"{key:45s} {value:>14,}")
