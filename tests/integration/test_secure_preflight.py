"""A principal whose ACL is missing, on a real secure broker (issue 22): ``ssa detect`` and ``ssa
parse`` ask the broker first with their own credentials and stop with one line and exit status 1;
``ssa tenants provision`` restores the missing ACL and removes the stale ones of an older version;
an ACL removed while the job runs stops the job (instead of Flink restarting it forever).

One broker for the module (SASL_SSL, SCRAM, ACLs: ``infra.services.KafkaService``) in a temporary
data directory on free ports, stopped at the end. Tests run in file order and each leaves the
broker provisioned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import secure
from infra.access_check import AccessRefused, Need
from infra.settings import PROJECT_ROOT, Settings
from streams.access import check_job_access, check_parse_access
from tests.integration.test_kafka_secure import as_user, running_secure_broker

pytestmark = pytest.mark.integration

A, B, C = "t-a", "t-b", "t-c"
REGISTRY = """tenants:
  - {id: t-a, name: A, industry: telecom, cidrs: [10.1.0.0/16]}
  - {id: t-b, name: B, industry: internet, cidrs: [10.2.0.0/16]}
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data = tmp_path_factory.mktemp("secure-preflight")
    (data / "tenants.yaml").write_text(REGISTRY)
    with running_secure_broker(data, [A, B], raw_formats=("syslog",)) as settings:
        yield settings


def _as(settings: Settings, user: str) -> Settings:
    return as_user(settings, user).with_overrides(
        tenants_file=settings.tenants_file, snooze_file=settings.snooze_file,
        checkpoint_dir=settings.checkpoint_dir, detector_config_file="",
    )  # fmt: skip


def _settled(settings: Settings, present: list[secure.AclRule], absent: list[secure.AclRule]) -> None:
    """Wait until the broker's authorizer holds ``present`` and not ``absent``: it applies a change
    a moment after the admin call returns (secure._applied_acls)."""
    admin = secure._admin_client(settings)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        held = set(secure.broker_acls(admin))
        if held >= set(present) and not held & set(absent):
            return
        time.sleep(0.2)
    pytest.fail(f"the broker did not apply the ACL change within 30 s: {present} {absent}")


def _remove(settings: Settings, *rules: secure.AclRule) -> None:
    assert secure._delete_acls(secure._admin_client(settings), list(rules)) == len(rules)
    _settled(settings, [], list(rules))


def _add(settings: Settings, *rules: secure.AclRule) -> None:
    secure._create_acls(secure._admin_client(settings), list(rules))
    _settled(settings, list(rules), [])


def _cli(settings: Settings, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ssa.cli", *args], cwd=PROJECT_ROOT, env={**os.environ, **settings.to_env()},
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def _plan(settings: Settings) -> list[secure.AclRule]:
    return sorted(secure.full_plan(settings, [A, B]))


def test_a_provisioned_broker_passes_the_preflight(broker: Settings) -> None:
    t0 = time.monotonic()
    check_job_access(_as(broker, secure.JOB_USER))
    check_parse_access(_as(broker, secure.PARSE_USER))
    print(f"[preflight] job and parse checks passed in {time.monotonic() - t0:.2f} s")
    assert sorted(secure.broker_acls(secure._admin_client(broker))) == _plan(broker)


def test_detect_without_a_tenants_read_acl_stops_in_one_line(broker: Settings) -> None:
    # Before: the job's topic pattern simply did not match A's topics, and A went unwatched.
    _remove(broker, secure.AclRule(secure.JOB_USER, "TOPIC", f"ssa.{A}.telemetry.", "PREFIXED", "READ"))
    job = _as(broker, secure.JOB_USER)
    t0 = time.monotonic()
    run = _cli(job, "detect", "--bounded", "--no-indexer", "--no-awareness")
    print(
        f"[preflight] ssa detect exited {run.returncode} after {time.monotonic() - t0:.1f} s: {run.stderr!r}"
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert lines == [
        f"ssa detect: user ssa-job is not allowed to READ topic ssa.{A}.telemetry.audit, READ topic "
        f"ssa.{A}.telemetry.auth, READ topic ssa.{A}.telemetry.flow and 1 more (Kafka at "
        f"{broker.kafka_bootstrap} refused): run `ssa tenants provision` (as the Kafka admin) to restore "
        "the ACLs of ssa-job"
    ]
    assert "Traceback" not in run.stdout + run.stderr and "started" not in run.stdout + run.stderr


def test_parse_without_a_write_acl_stops_in_one_line(broker: Settings) -> None:
    _remove(broker, secure.AclRule(secure.PARSE_USER, "TOPIC", f"ssa.{B}.telemetry.", "PREFIXED", "WRITE"))
    run = _cli(_as(broker, secure.PARSE_USER), "parse")
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stdout + run.stderr
    assert lines[0].startswith(f"ssa parse: user ssa-parse is not allowed to WRITE topic ssa.{B}.telemetry.")
    assert lines[0].endswith(
        "run `ssa tenants provision` (as the Kafka admin) to restore the ACLs of ssa-parse"
    )


def test_a_transactional_id_refusal_names_the_operation(broker: Settings) -> None:
    """No other refusal left but the id's: ``init_transactions`` is what checks it."""
    parse = _as(broker, secure.PARSE_USER)
    secure.provision(broker, [A, B], say=lambda _line: None)  # the earlier tests' ACLs back
    txn_write = secure.AclRule(
        secure.PARSE_USER, "TRANSACTIONAL_ID", broker.parse_group_id, "PREFIXED", "WRITE"
    )
    _remove(broker, txn_write)
    with pytest.raises(AccessRefused) as caught:
        check_parse_access(parse, transactional_id=f"{broker.parse_group_id}-preflight")
    assert [r.need for r in caught.value.refusals] == [
        Need("TRANSACTIONAL_ID", f"{broker.parse_group_id}-preflight", "WRITE")
    ]
    assert f"WRITE transactional id {broker.parse_group_id}-preflight" in str(caught.value)


def test_provision_restores_missing_acls_and_removes_stale_ones(broker: Settings) -> None:
    admin = secure._admin_client(broker)
    missing = secure.AclRule(secure.JOB_USER, "GROUP", broker.detect_group_id, "LITERAL", "READ")
    _remove(broker, missing)
    # What a broker provisioned before per-tenant raw topics holds for ssa-parse (issue 23).
    old = [
        secure.AclRule(secure.PARSE_USER, "TOPIC", broker.topic_raw_prefix, "PREFIXED", op)
        for op in ("READ", "DESCRIBE")
    ]
    old += [secure.AclRule(secure.PARSE_USER, "TOPIC", t, "LITERAL", op)
            for t in broker.telemetry_topics.values() for op in ("WRITE", "DESCRIBE")]  # fmt: skip
    operator = secure.AclRule("soc-reader", "TOPIC", broker.topic_alerts, "LITERAL", "READ")
    _add(broker, *old, operator)
    with pytest.raises(AccessRefused, match=f"READ consumer group {broker.detect_group_id}"):
        check_job_access(_as(broker, secure.JOB_USER))

    lines: list[str] = []
    secure.provision(broker, [A, B], say=lines.append)
    print("[preflight] " + "\n[preflight] ".join(lines))
    stale_line = [line for line in lines if line.startswith("stale ACLs:")]
    assert len(stale_line) == 1 and stale_line[0].startswith(f"stale ACLs: removed {len(old)} ")
    after = secure.broker_acls(admin)
    assert sorted(r for r in after if r.principal != "soc-reader") == _plan(broker)
    assert operator in after  # not a principal provisioning owns
    check_job_access(_as(broker, secure.JOB_USER))
    check_parse_access(_as(broker, secure.PARSE_USER))

    again: list[str] = []
    secure.provision(broker, [A, B], say=again.append)
    assert again[-1] == "stale ACLs: none (every ALLOW ACL of the provisioned principals is in the plan)"
    assert sorted(secure.broker_acls(admin)) == sorted(after)


def test_provision_keeps_a_tenant_it_was_not_given(broker: Settings) -> None:
    secure.provision(broker, [A, B, C], say=lambda _line: None)
    lines: list[str] = []
    secure.provision(broker, [A, B], say=lines.append)
    assert lines[-1].startswith(f"tenants on the broker but not in this registry, access kept: {C} ")
    held = set(secure.broker_acls(secure._admin_client(broker)))
    assert set(secure.acl_plan(broker, C)) <= held
    secure.revoke(broker, C, delete_topics=True, say=lambda _line: None)
    _settled(broker, [], secure.acl_plan(broker, C))
    assert sorted(
        r for r in secure.broker_acls(secure._admin_client(broker)) if r.principal != "soc-reader"
    ) == (_plan(broker))


@contextlib.contextmanager
def _running_job(broker: Settings, name: str) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """``ssa detect`` as ``ssa-job`` (no indexer, no awareness, no restore), running with its
    sources' splits assigned; killed at the end if it is still up. Yields (process, its log, the
    Flink log folder)."""
    log = Path(broker.data_dir) / f"job-{name}.log"
    flink_logs = Path(broker.data_dir) / f"flink-{name}"
    env = {**os.environ, **_as(broker, secure.JOB_USER).to_env(), "FLINK_LOG_DIR": str(flink_logs)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ssa.cli", "detect", "--no-indexer", "--no-awareness", "--no-restore"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while "started" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert "started" in log.read_text(), log.read_text()[-3000:]
        time.sleep(15)  # the sources have their splits
        assert proc.poll() is None, log.read_text()[-3000:]
        yield proc, log, flink_logs
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_an_acl_removed_while_the_job_runs_stops_it_in_one_line(broker: Settings) -> None:
    try:
        with _running_job(broker, "midrun") as (proc, log, flink_logs):
            t0 = time.monotonic()
            _remove(
                broker, secure.AclRule(secure.JOB_USER, "TOPIC", f"ssa.{B}.telemetry.", "PREFIXED", "READ")
            )
            code = proc.wait(timeout=240)
            waited = time.monotonic() - t0
    finally:  # the ACL back whatever happened, or the next tests' jobs cannot start
        secure.provision(broker, [A, B], say=lambda _line: None)
    text = log.read_text()
    restarts = sum(f.read_text(errors="replace").count("to RESTARTING") for f in flink_logs.glob("*.log"))
    print(
        f"[preflight] job exited {code} {waited:.1f} s after the ACL was removed, {restarts} restarts:\n{text}"
    )
    assert code == 1
    assert "detect: job restarting after a failure (1 seen so far)" in text and "Traceback" not in text
    assert (
        text.strip()
        .splitlines()[-1]
        .startswith(f"ssa detect: user ssa-job is not allowed to READ topic ssa.{B}.telemetry.audit")
    )
    assert text.strip().endswith("then start `ssa detect` again (it resumes from its last checkpoint)")


@pytest.mark.slow
def test_a_tenant_revoked_while_the_job_runs_stops_it_in_one_line(broker: Settings) -> None:
    """``ssa tenants revoke`` deletes a tenant's topics; the running job's sources still hold their
    partitions (and a restore would bring them back), so Flink restarts without end: ``ssa detect``
    says which topics went and how to start without them."""
    registry = Path(broker.tenants_file)
    try:
        with _running_job(broker, "revoked") as (proc, log, _):
            registry.write_text(
                REGISTRY.replace("  - {id: t-b, name: B, industry: internet, cidrs: [10.2.0.0/16]}\n", "")
            )
            secure.revoke(broker, B, delete_topics=True, say=lambda _line: None)
            code = proc.wait(timeout=240)
    finally:
        registry.write_text(REGISTRY)
        secure.provision(broker, [A, B], say=lambda _line: None, raw_formats=("syslog",))
    text = log.read_text()
    print(f"[preflight] job exited {code} after tenant {B} was revoked:\n{text}")
    assert code == 1 and "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert last.startswith(
        f"ssa detect: topics the job read are gone or no longer readable: ssa.{B}.telemetry."
    ), last
    assert last.endswith(
        "start `ssa detect --no-restore` to read the others from the group's committed offsets"
    )
