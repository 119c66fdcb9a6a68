"""rsyslog, for real, as a feeder: Debian's rsyslog with ``imfile`` following an sshd log and an audit
log and ``omkafka`` writing to the raw topics (``infra.rsyslog``), the parse stage (``ssa parse``), the
streaming detection job with its indexer (``ssa detect``), and the brute-force alert in
Elasticsearch, with no ``ssa`` command on the feeding side. The same sshd log through ``ssa ingest``
into a run of its own, with a job of its own, gives the same alert ids.

rsyslog is fetched as packages (``apt-get download``, unpacked under ``<data_dir>/rsyslog/dist``,
nothing installed); where that cannot be done the test is skipped with the reason.

Times: the lines are stamped 20-30 minutes ago (RFC 3164 syslog has no year: both paths take the
current one; the parse stage refuses events ahead of its clock), the burst inside one 10-minute
window of ``brute_force.auth_failures``, and a later login 90 s past the window's end moves the
auth path's watermark past it, so the streaming job closes the window while running; the silent
partitions are idle after ``source_idle_timeout_ms`` (2 s here). The audit lines are written, parsed
and read by the job before the sshd lines: both kinds share one watermark, and a partition silent for
the idle timeout no longer holds it back, so audit events read after the sshd burst would be late."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from infra.rsyslog import (
    FollowedFile,
    RsyslogBundle,
    RsyslogProcess,
    RsyslogUnavailable,
    ensure_rsyslog,
    render_config,
)
from infra.settings import PROJECT_ROOT, Settings
from ingest.pipeline import run_ingest
from ingest.raw import raw_topic
from tests.test_raw_records import ListSink

pytestmark = pytest.mark.integration

T = TypeVar("T")
WINDOW_MS = 600_000  # brute_force.auth_failures' window (detectors/config/default.yaml)
ATTACKER = "198.51.100.23"
ADMIN = "10.77.0.9"
REGISTRY = """\
management_cidrs: [172.31.0.0/16]
hosts:
  - {id: hv-feed-01, mgmt_ip: 172.31.9.1}
tenants:
  - id: t-feed
    name: Feed Telecom
    industry: telecom
    cidrs: [10.77.0.0/16]
    hosts: [hv-feed-01]
    vms:
      - {id: vm-feed-01, host: hv-feed-01, ip: 10.77.0.5, disk: /var/lib/libvirt/images/vm-feed-01.qcow2}
"""


@pytest.fixture(scope="session")
def rsyslog(stack: Settings) -> RsyslogBundle:
    try:
        return ensure_rsyslog(stack.data_path / "rsyslog" / "dist", say=print)
    except RsyslogUnavailable as exc:
        pytest.skip(f"rsyslog cannot be fetched here: {exc}")


# --- the logs ------------------------------------------------------------------------------------
def _bsd(ms: int) -> str:
    """An RFC 3164 stamp in UTC (the parsers' zone unless --tz): ``Dec  3 16:05:01``."""
    return time.strftime("%b %e %H:%M:%S", time.gmtime(ms // 1000))


def _sshd_log(start: int) -> list[list[bytes]]:
    """sshd's lines as an auth.log holds them, in the writes a daemon would make: a login of the
    operator, four connections of a password guesser (12 failed passwords, invalid users among
    them) inside the window starting at ``start``, and the operator's next login after it."""
    host = "vm-feed-01"

    def line(ms: int, pid: int, msg: str) -> bytes:
        return f"{_bsd(ms)} {host} sshd[{pid}]: {msg}".encode()

    key = "ED25519 SHA256:p3WqN0f6mTqB1kq9yXvV2cJ0x1Vv7o5wLrZ8h2dQe4s"
    writes = [[line(start + 60_000, 2100, f"Accepted publickey for ops from {ADMIN} port 50122 ssh2: {key}"),
               line(start + 60_000, 2100, "pam_unix(sshd:session): session opened for user ops(uid=1000) by (uid=0)")]]  # fmt: skip
    t = start + 120_000
    for conn, user in enumerate(("root", "admin", "oracle", "root")):
        pid, port = 3000 + conn, 41000 + 7 * conn
        invalid = user != "root"
        lines = [line(t, pid, f"Invalid user {user} from {ATTACKER} port {port}")] if invalid else []
        for attempt in range(3):
            ms = t + 1000 + 6000 * attempt
            who = f"invalid user {user}" if invalid else user
            lines.append(line(ms, pid, "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
                                       f"tty=ssh ruser= rhost={ATTACKER}" + ("" if invalid else f"  user={user}")))  # fmt: skip
            lines.append(line(ms + 2000, pid, f"Failed password for {who} from {ATTACKER} port {port} ssh2"))
        lines.append(line(t + 20_000, pid, f"Connection closed by {'invalid' if invalid else 'authenticating'} "
                                           f"user {user} {ATTACKER} port {port} [preauth]"))  # fmt: skip
        writes.append(lines)
        t += 30_000
    writes.append(
        [
            line(
                start + WINDOW_MS + 90_000,
                2200,
                f"Accepted publickey for ops from {ADMIN} port 50188 ssh2: {key}",
            )
        ]
    )
    return writes


def _audit_log(start: int) -> list[bytes]:
    """An operator's commands on the hypervisor, as auditd writes them (benign: no rule fires),
    before the first sshd line: the two kinds share a watermark."""
    lines: list[bytes] = []
    for n, (exe, argv) in enumerate((("/usr/bin/ls", "ls -la /etc"), ("/usr/bin/uptime", "uptime"),
                                     ("/usr/bin/df", "df -h"))):  # fmt: skip
        stamp = f"audit({(start + 10_000 + 5000 * n) / 1000:.3f}:{7100 + n})"
        args = argv.split()
        head = f"node=hv-feed-01 type={{}} msg={stamp}: "
        lines += [
            (head.format("SYSCALL") + f"arch=c000003e syscall=59 success=yes exit=0 a0=55d5c2f0a0b0 a1=55d5c2f0a0d0 "
             f"a2=55d5c2f0a0f0 a3=0 items=2 ppid=2101 pid={2300 + n} auid=1000 uid=1000 gid=1000 euid=1000 "
             f"suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=9 comm=\"{args[0]}\" "
             f"exe=\"{exe}\" subj=unconfined key=\"exec\"").encode(),
            (head.format("EXECVE") + f"argc={len(args)} " + " ".join(f'a{i}="{a}"' for i, a in enumerate(args))).encode(),
            (head.format("CWD") + 'cwd="/home/ops"').encode(),
            (head.format("PATH") + f'item=0 name="{exe}" inode={4100 + n} dev=fd:00 mode=0100755 ouid=0 ogid=0 '
             "rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0").encode(),
            (head.format("PROCTITLE") + "proctitle=" + "00".join(a.encode().hex().upper() for a in args)).encode(),
            head.format("EOE").encode(),
        ]  # fmt: skip
    return lines


def _append(path: Path, lines: list[bytes]) -> None:
    with path.open("ab") as out:
        out.write(b"".join(ln + b"\n" for ln in lines))


def _ingest_ids(path: Path, fmt: str) -> set[str]:
    sink = ListSink()
    run_ingest(path, fmt, sink=sink)
    assert not sink.dlqs, [d.reason for d in sink.dlqs]
    return {e.id for e in sink.events}


# --- processes and reads ---------------------------------------------------------------------------
def _spawn(args: list[str], s: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ssa.cli", *args], cwd=PROJECT_ROOT, env={**os.environ, **s.to_env()},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else f"(no {path})"


def _wait(what: str, check: Callable[[], T], alive: Callable[[], None], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        alive()
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s"
        time.sleep(1)
    return result


def _raw_records(s: Settings, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """(partition, key, value) of every record of ``topic``, in offset order per partition."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    from infra.clients import kafka_config

    consumer = KafkaConsumer(**kafka_config(s), enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        got: list[tuple[int, bytes | None, bytes]] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for tp, batch in consumer.poll(timeout_ms=1000).items():
                got += [(tp.partition, r.key, r.value) for r in batch]
        return sorted(got, key=lambda r: r[0])  # stable: offset order kept within a partition
    finally:
        consumer.close()


def _telemetry_ids(s: Settings) -> set[str]:
    from streams.demo import records_in_topic

    return {
        json.loads(v)["id"] for topic in s.telemetry_topics.values() for _, v in records_in_topic(s, topic)
    }


def _read_all(s: Settings, ends: dict[Any, int]) -> bool:
    """Whether the job's group committed every record before ``ends`` (a checkpoint of them all; the
    parse stage writes in transactions, so the last offset before an end is a commit marker)."""
    from streams.offsets import group_lag

    try:
        return not any(group_lag(s, s.detect_group_id, ends).values())
    except Exception:  # no group before the job's first checkpoint
        return False


def _es_alerts(s: Settings) -> dict[str, dict[str, Any]]:
    from elasticsearch.helpers import scan

    from infra.clients import es_client

    es = es_client(s)
    try:
        es.indices.refresh(index=s.index_alerts_pattern, ignore_unavailable=True)
        hits = scan(
            es, index=s.index_alerts_pattern, query={"query": {"match_all": {}}}, ignore_unavailable=True
        )
        return {h["_id"]: h["_source"] for h in hits}
    finally:
        es.close()


# --- the test ----------------------------------------------------------------------------------------
def test_lines_rsyslog_follows_become_alerts_and_ssa_ingest_gives_the_same_ids(
    stack: Settings, rsyslog: RsyslogBundle, tmp_path: Path
) -> None:
    from infra.bootstrap import ensure_topics
    from streams.demo import (
        alert_ids_in_topic,
        demo_settings,
        drop_run_scaffolding,
        new_run_id,
        records_in_topic,
    )
    from streams.offsets import end_offsets

    t_start = time.monotonic()
    now = int(time.time() * 1000)
    start = (now - 20 * 60_000) // WINDOW_MS * WINDOW_MS  # the window ended 10-20 min ago
    sshd_writes, audit_lines = _sshd_log(start), _audit_log(start)

    # Two runs, each with its own topics, groups, indices and registry copy, and its own streaming
    # job (started together: a job takes its minute to start). Run A: rsyslog -> raw topics ->
    # ssa parse -> telemetry -> ssa detect -> Elasticsearch. Run B: ssa ingest of the same sshd log.
    runs: list[Settings] = []
    for name in ("a", "b"):
        run = new_run_id(stack)
        s = demo_settings(stack, run).with_overrides(
            topic_raw_prefix=f"ssa.run.{run}.raw.", parse_group_id=f"test-{run}-parse",
            source_idle_timeout_ms=2000, checkpoint_interval_ms=1000,
        )  # fmt: skip
        Path(s.tenants_file).write_text(REGISTRY)
        runs.append(s)
    a, b = runs
    raw_syslog, raw_auditd = raw_topic(a.topic_raw_prefix, "syslog"), raw_topic(a.topic_raw_prefix, "auditd")
    ensure_topics(a, [*a.all_topics, raw_syslog, raw_auditd])
    ensure_topics(b)
    logs = tmp_path / "var" / "log"
    (logs / "audit").mkdir(parents=True)
    auth, audit = logs / "auth.log", logs / "audit" / "audit.log"
    auth.touch()
    audit.touch()
    (tmp_path / "rsyslog-work").mkdir()
    conf = tmp_path / "ssa-feeder.conf"
    conf.write_text(
        render_config(
            [FollowedFile(str(auth), "syslog"), FollowedFile(str(audit), "auditd")],
            brokers=[a.kafka_bootstrap], topic_prefix=a.topic_raw_prefix,
            work_dir=str(tmp_path / "rsyslog-work"),
        )
    )  # fmt: skip
    feeder = RsyslogProcess(rsyslog, conf, tmp_path / "run", tmp_path / "logs")
    logs_of = {name: tmp_path / f"{name}.log" for name in ("detect-a", "detect-b", "parse")}
    procs = {
        "detect-a": _spawn(["detect", "--no-restore"], a, logs_of["detect-a"]),
        "detect-b": _spawn(["detect", "--no-restore"], b, logs_of["detect-b"]),
        "parse": _spawn(["parse"], a, logs_of["parse"]),
    }

    def alive() -> None:
        for name, proc in procs.items():
            assert proc.poll() is None, f"ssa {name} ended: {_tail(logs_of[name])}"
        assert feeder.alive(), f"rsyslogd ended: {_tail(feeder.log_file)}"

    def brute_force(s: Settings) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [d for d in _es_alerts(s).values() if d["detector"] == "brute_force.auth_failures"]

    try:
        feeder.start()
        _append(audit, audit_lines)
        want_audit = _ingest_ids(audit, "auditd")
        assert len(want_audit) == len(audit_lines) // 6
        _wait("audit events", lambda: want_audit <= _telemetry_ids(a), alive, 90)
        # ... and read by the job (its checkpoint commits them) before any sshd line is written.
        audit_ends = end_offsets(a, [a.telemetry_topics["process"]])
        _wait("the job's checkpoint of the audit events", lambda: _read_all(a, audit_ends), alive, 180)
        for lines in sshd_writes:
            _append(auth, lines)
            time.sleep(0.2)
        want = want_audit | _ingest_ids(auth, "syslog")
        assert len(want) == len(want_audit) + 12 + 2  # 12 failed passwords, 2 logins
        _wait("every event", lambda: _telemetry_ids(a) == want, alive, 90)
        t_parsed = time.monotonic()
        found = _wait("brute-force alert in Elasticsearch", brute_force(a), alive, 180)
        t_alert = time.monotonic()

        # The lines reached Kafka exactly as written, one file on one partition, keyed by it.
        for topic, path, lines in ((raw_syslog, auth, [ln for w in sshd_writes for ln in w]),
                                   (raw_auditd, audit, audit_lines)):  # fmt: skip
            records = _raw_records(a, topic)
            assert [v for _, _, v in records] == lines
            assert len({p for p, _, _ in records}) == 1
            keys = {k for _, k, _ in records}
            assert len(keys) == 1 and keys.pop().endswith(f":{path}".encode()), keys  # type: ignore[union-attr]

        # Run B: the file rsyslog followed, through `ssa ingest`.
        ingest = subprocess.run(
            [sys.executable, "-m", "ssa.cli", "ingest", str(auth), "--format", "syslog"], cwd=PROJECT_ROOT,
            env={**os.environ, **b.to_env()}, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        _wait("brute-force alert of the ssa ingest run", brute_force(b), alive, 180)

        # Whatever else the jobs raised from this input is indexed too before the runs are compared.
        def all_indexed(s: Settings) -> Callable[[], bool]:
            return lambda: alert_ids_in_topic(s, s.topic_alerts) <= set(_es_alerts(s))

        for s in runs:
            _wait("every alert indexed", all_indexed(s), alive, 60)
        alerts_a, alerts_b = _es_alerts(a), _es_alerts(b)
        t_indexed = time.monotonic()
    finally:
        feeder.stop()
        for proc in procs.values():
            _stop(proc)
    t_stopped = time.monotonic()
    for s in runs:
        drop_run_scaffolding(s)
    assert len(found) == 1, found
    alert = found[0]
    assert alert["entity"] == {"type": "ip", "id": ATTACKER}
    assert alert["tenant"] == "t-feed"
    assert alert["evidence"]["failures"] == 12 and alert["evidence"]["successes"] == 0
    assert (alert["first_seen"], alert["ts"]) == (start + 120_000 + 3000, start + WINDOW_MS)
    for s in runs:
        assert records_in_topic(s, s.topic_dlq) == []  # no line refused, no event late
    assert set(alerts_b) == set(alerts_a), (sorted(alerts_a), sorted(alerts_b))
    print(
        f"[rsyslog] {rsyslog.packages}; every event parsed {t_parsed - t_start:.1f} s after the start, the "
        f"alert in Elasticsearch after {t_alert - t_start:.1f} s, the ssa ingest run's after "
        f"{t_indexed - t_start:.1f} s, all stopped after {t_stopped - t_start:.1f} s; "
        f"{len(alerts_a)} alert id(s), equal"
    )
