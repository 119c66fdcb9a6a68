"""``ssa detect``: the detection job on the local mini-cluster (or a cluster, unchanged), resumed
from its last checkpoint, with the Elasticsearch indexer beside it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from detectors.config import DetectorConfig
from infra.access_check import AccessRefused, uses_sasl
from infra.bootstrap import ensure_topics
from infra.process import ServiceError
from infra.settings import Settings, SettingsError
from streams.access import check_job_access
from streams.detect_fn import DetectionJobConfig, alert_id_secret
from streams.flink_env import create_table_env, latest_checkpoint
from streams.indexer import Indexer
from streams.job import JobSinks, build, kafka_sink
from streams.job_failures import free_port, latest_failure, missing_checkpoint_file
from streams.sql import MAX_ALLOWANCE_MS, EventTimePath, event_time_paths, kafka_properties, path_ddl

__all__ = [
    "DetectRun",
    "JobFailed",
    "check_timing",
    "detector_config_digest",
    "restorable_checkpoint",
    "start_indexer",
    "submit_job",
    "topology",
    "watch",
]

log = logging.getLogger(__name__)

# Written beside a job's checkpoints: which topics each of its Kafka sources reads. A checkpoint
# is only restored into a job with the same sources: a source's state holds its splits, so the
# single source of the jobs before flows had their own path (no marker) would bring the flow
# topic's splits into whichever new source took its state, and read flows on the wrong watermark.
TOPOLOGY_FILE = "ssa-topology"
# Also beside them: a digest of the detector configuration the job ran with, so that a restore under
# another one says in one line that the restored keys move to it as they load
# (``streams.detect_fn.MicroBatchDetector.attach``).
DETECTORS_FILE = "ssa-detectors.sha256"


# Job states after which it does nothing more (pyflink JobStatus names).
ENDED = ("FAILED", "CANCELED", "FINISHED")


@dataclass
class DetectRun:
    job_client: Any
    restored_from: str | None
    indexer: Indexer | None = None
    indexer_thread: threading.Thread | None = None
    restarts: int = 0  # restarts the watcher saw (streams.runner.watch)
    # Secure mode: the tenants' topics the job could read when it started (streams.access).
    read_topics: tuple[str, ...] = ()
    rest_port: int | None = None  # the mini-cluster's REST API (streams.job_failures)

    def wait(self) -> None:
        self.job_client.get_job_execution_result().result()

    def done(self) -> bool:
        return bool(self.job_client.get_job_execution_result().done())

    def cancel(self) -> None:
        self.job_client.cancel().result()

    def stop_indexer(self, timeout_s: float = 30) -> None:
        if self.indexer is not None and self.indexer_thread is not None:
            self.indexer.stop()
            self.indexer_thread.join(timeout_s)


class JobFailed(ServiceError):
    """A bounded job ended by a failure; the message names its root cause."""


def failure_cause(run: DetectRun) -> str:
    """The innermost Java exception of a job that ended, one line (its stack stays in Flink's log)."""
    from py4j.protocol import Py4JJavaError

    try:
        run.wait()
    except Py4JJavaError as exc:
        cause = exc.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        return str(cause.toString()).splitlines()[0]
    return "no failure recorded"


def job_config(settings: Settings) -> DetectionJobConfig:
    tenants = settings.tenants_file if Path(settings.tenants_file).exists() else None
    if settings.alert_id_key_file:
        alert_id_secret(settings.alert_id_key_file)  # unreadable: SettingsError here, not a worker's trace
    return DetectionJobConfig(
        tenants_file=tenants,
        detector_config_file=settings.detector_config_file or None,
        snooze_file=settings.snooze_file or None,
        out_of_orderness_ms=settings.out_of_orderness_ms,
        flow_export_delay_ms=settings.flow_export_delay_ms,
        alert_id_key_file=settings.alert_id_key_file,
    )


def topology(paths: list[EventTimePath]) -> str:
    # A tenant-topics source (a pattern) never resumes the splits of the shared topics, nor back.
    return ";".join(
        f"{path.table}={','.join(path.kinds)}{'@tenant-topics' if path.tenant_topics else ''}"
        for path in paths
    )


def detector_config_digest(settings: Settings) -> str:
    """SHA-256 of the detector configuration the job loads (the site file over the defaults)."""
    return DetectorConfig.load_or_default(settings.detector_config_file).digest()


def restorable_checkpoint(
    checkpoint_dir: str,
    paths: list[EventTimePath],
    say: Callable[[str], None] = print,
    config_digest: str | None = None,
) -> Path | None:
    """The newest checkpoint, if a job with these sources wrote it. When it was written with a
    detector configuration other than ``config_digest``'s, it is still resumed (the detectors'
    windows and learnt baselines are kept) and one line says what that means."""
    newest = latest_checkpoint(checkpoint_dir)
    if newest is None:
        return None
    marker = newest.parent / TOPOLOGY_FILE
    if marker.is_file() and marker.read_text(encoding="utf-8") == topology(paths):
        written = newest.parent / DETECTORS_FILE
        if (
            config_digest
            and written.is_file()
            and written.read_text(encoding="utf-8").strip() != config_digest
        ):
            say(
                f"detect: checkpoint {newest} was written with another detector configuration: the "
                "tenants and hosts it restores move to the new one as they are loaded, keeping what "
                "their detectors learned and their open windows (a detector whose window changed "
                "starts its windows over); --no-restore starts everything over"
            )
        return newest
    say(
        f"detect: not resuming from checkpoint {newest}: its job read the telemetry topics through "
        "other sources (before flows had their own); starting from the consumer group's committed offsets"
    )
    return None


def _mark_topology(checkpoint_dir: str, job_id: str, paths: list[EventTimePath], config_digest: str) -> None:
    folder = Path(checkpoint_dir).resolve() / job_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TOPOLOGY_FILE).write_text(topology(paths), encoding="utf-8")
    (folder / DETECTORS_FILE).write_text(config_digest, encoding="utf-8")


def check_timing(settings: Settings) -> None:
    """Reject watermark settings the job cannot use: an allowance the SQL interval cannot hold, or
    a drift bound at or below the idle timeout (every live partition would be paused whenever
    one partition goes quiet)."""
    for name in ("out_of_orderness_ms", "flow_export_delay_ms"):
        value = getattr(settings, name)
        if not 0 <= value <= MAX_ALLOWANCE_MS:
            raise SettingsError(f"{name} ({value}) must be between 0 and {MAX_ALLOWANCE_MS}")
    if settings.watermark_max_drift_ms <= settings.source_idle_timeout_ms:
        raise SettingsError(
            f"watermark_max_drift_ms ({settings.watermark_max_drift_ms}) must exceed "
            f"source_idle_timeout_ms ({settings.source_idle_timeout_ms})"
        )


def submit_job(
    settings: Settings,
    *,
    bounded: bool = False,
    restore: bool = True,
    awareness: bool = True,
    index: bool = False,
    say: Callable[[str], None] = print,
) -> DetectRun:
    """Build and start the job asynchronously; returns a handle to wait on or cancel.
    ``awareness=False`` leaves the awareness stage out (the detectors only: benchmarks, diagnosis).
    With a SASL principal the broker is first asked whether it allows everything the job (and,
    with ``index``, the indexer started beside it) will do: a refusal is ``AccessRefused``, one
    line, before anything starts (streams.access)."""
    check_timing(settings)
    config = job_config(settings)  # an unreadable alert-id key is one line before anything starts
    read_topics = tuple(check_job_access(settings, awareness=awareness, index=index))
    # Index templates: the indexer installs them once Elasticsearch answers. With tenant topics
    # the telemetry topics are the tenants' (``ssa tenants provision``), not the shared ones.
    telemetry = set(settings.telemetry_topics.values())
    ensure_topics(
        settings, [t for t in settings.all_topics if t not in telemetry] if settings.tenant_topics else None
    )
    paths = event_time_paths(settings)
    digest = detector_config_digest(settings)
    restore_from = restorable_checkpoint(settings.checkpoint_dir, paths, say, digest) if restore else None
    if restore_from is not None:
        say(f"detect: resuming from checkpoint {restore_from}")
    rest_port = free_port()
    env, t_env = create_table_env(
        settings,
        checkpoint_interval_ms=settings.checkpoint_interval_ms,
        restore_from=str(restore_from) if restore_from else None,
        restarts=not bounded,
        rest_port=rest_port,
    )
    t_env.get_config().set("table.exec.source.idle-timeout", f"{settings.source_idle_timeout_ms} ms")
    for path in paths:
        t_env.execute_sql(path_ddl(settings, path, group_id=settings.detect_group_id, bounded=bounded))
    props = kafka_properties(settings)
    sinks = JobSinks(
        alerts=kafka_sink(settings.kafka_bootstrap, settings.topic_alerts, props),
        metrics=kafka_sink(settings.kafka_bootstrap, settings.topic_metrics, props),
        dlq=kafka_sink(settings.kafka_bootstrap, settings.topic_dlq, props),
    )
    if awareness:
        sinks = replace(
            sinks,
            incidents=kafka_sink(settings.kafka_bootstrap, settings.topic_incidents, props),
            threat=kafka_sink(settings.kafka_bootstrap, settings.topic_threat, props),
            warnings=kafka_sink(settings.kafka_bootstrap, settings.topic_warnings, props),
        )
    build(env, t_env, paths, sinks, config)
    client = env.execute_async("ssa-detect")
    _mark_topology(settings.checkpoint_dir, str(client.get_job_id()), paths, digest)
    say(
        f"detect: job {client.get_job_id()} started (checkpoints every {settings.checkpoint_interval_ms} ms; "
        f"Flink's web UI at http://127.0.0.1:{rest_port})"
    )
    return DetectRun(
        client, str(restore_from) if restore_from else None, read_topics=read_topics, rest_port=rest_port
    )


def start_indexer(settings: Settings, say: Callable[[str], None] = print) -> tuple[Indexer, threading.Thread]:
    from ingest.tenants import RegistryWatcher

    watcher = RegistryWatcher(settings.tenants_file) if Path(settings.tenants_file).exists() else None

    def industry_of(tenant: str | None) -> str | None:
        return watcher.current().industry_of(tenant) if watcher else None

    indexer = Indexer(
        settings,
        industry_of=industry_of,
        registry=(lambda: watcher.current()) if watcher else (lambda: None),
        group_id=settings.indexer_group_id,
        lag_group_id=settings.detect_group_id,
        say=say,
    )

    def run_indexer() -> None:
        try:
            indexer.run()
        except Exception as exc:  # unexpected: the run must not look successful
            indexer.fatal = f"stopped by an unexpected error: {type(exc).__name__}: {exc}"
            say(f"indexer: {indexer.fatal}; unshipped records stay in Kafka")
            log.error("indexer failed", exc_info=exc)

    thread = threading.Thread(target=run_indexer, name="ssa-indexer", daemon=True)
    thread.start()
    return indexer, thread


def watch(
    run: DetectRun,
    settings: Settings,
    *,
    awareness: bool = True,
    index: bool = True,
    say: Callable[[str], None] = print,
    poll_s: float = 2.0,
) -> str:
    """Wait for the job to end; its last state. Flink restarts a failed job without end (the
    default strategy with checkpoints: exponential delay, unlimited attempts) and cannot be told
    that an authorization error will not heal: Kafka's exceptions carry no Flink
    ``ThrowableAnnotation`` and Flink 2.2's restart strategies are not pluggable. So each restart
    is said here, and with a SASL principal the broker is asked again: if it now refuses the job
    something it needs (an ACL removed), the job is cancelled and ``AccessRefused`` raised, one
    line, instead of a restart loop; so it is, with ``TopicsGone``, when topics it started reading
    are gone (a tenant revoked and out of the registry: nothing left to refuse)."""
    restarting = False
    while not run.done():
        try:
            status = run.job_client.get_job_status().result().name
        except Exception:
            # A per-job mini-cluster shuts down with its job, and its status call may fail a moment
            # before the job's result is ready: the result says how it ended.
            deadline = time.monotonic() + 15
            while not run.done() and time.monotonic() < deadline:
                time.sleep(0.2)
            if run.done():
                break
            raise
        if status in ENDED:
            return str(status)
        if status == "RESTARTING" and not restarting:
            run.restarts += 1
            cause = latest_failure(run.rest_port, str(run.job_client.get_job_id())) if run.rest_port else None
            say(
                f"detect: job restarting after a failure ({run.restarts} seen so far)"
                + (f": {cause}" if cause else "")
            )
            _stop_if_checkpoint_lost(run, settings, cause, say)
            _stop_if_refused(run, settings, awareness=awareness, index=index, say=say)
        restarting = status == "RESTARTING"
        time.sleep(poll_s)
    failed = run.job_client.get_job_execution_result().exception()
    if failed is None:
        return "FINISHED"
    return "CANCELED" if "JobCancellationException" in str(failed) else "FAILED"


def _stop_if_checkpoint_lost(
    run: DetectRun, settings: Settings, cause: str | None, say: Callable[[str], None]
) -> None:
    """A restore that fails for a missing state file fails on every restart: one line instead."""
    damaged = missing_checkpoint_file(cause, settings.checkpoint_dir) if cause else None
    if damaged is None:
        return
    say(
        "detect: a checkpoint the job restores from has lost files: cancelling the job instead of restarting it"
    )
    run.cancel()
    raise CheckpointLost(
        f"checkpoint {damaged} cannot be restored: a file of its state is missing (the job was killed "
        "while Flink removed it, or it was deleted or copied in part); remove that folder to resume "
        "from an older checkpoint, or start `ssa detect --no-restore` to read on from the consumer "
        "group's committed offsets"
    )


class CheckpointLost(ServiceError):
    """The checkpoint a job restores from lacks a state file: one line, what to do."""


def _stop_if_refused(
    run: DetectRun, settings: Settings, *, awareness: bool, index: bool, say: Callable[[str], None]
) -> None:
    if not uses_sasl(settings):
        return
    try:
        readable = check_job_access(settings, awareness=awareness, index=index)
    except AccessRefused as refused:
        say("detect: Kafka refuses the job's principal now: cancelling the job instead of restarting it")
        run.cancel()
        raise AccessRefused(
            refused.refusals,
            f"{refused}; then start `ssa detect` again (it resumes from its last checkpoint)",
        ) from None
    except ServiceError as exc:  # the broker away (a restart): Flink's restarts may well heal that
        say(f"detect: could not ask Kafka about the job's access ({exc}); Flink goes on restarting")
        return
    gone = sorted(set(run.read_topics) - set(readable))
    if gone:
        say("detect: topics the job read are gone: cancelling the job instead of restarting it")
        run.cancel()
        raise TopicsGone(
            f"topics the job read are gone or no longer readable: {', '.join(gone)} (a tenant revoked?); "
            "its sources hold their partitions, and a restore would too, so Flink would restart it without "
            "end: start `ssa detect --no-restore` to read the others from the group's committed offsets"
        )
    say("detect: the job's Kafka access is complete; the failure is another (see the Flink log)")


class TopicsGone(ServiceError):
    """Topics a running job reads were deleted or made unreadable: one line, what to do."""


def run_forever(
    settings: Settings,
    *,
    restore: bool = True,
    index: bool = True,
    awareness: bool = True,
    say: Callable[[str], None] = print,
) -> int:
    run = submit_job(settings, restore=restore, awareness=awareness, index=index, say=say)
    if index:
        run.indexer, run.indexer_thread = start_indexer(settings, say)
    try:
        status = watch(run, settings, awareness=awareness, index=index, say=say)
        say(f"detect: job ended: {status}")
        return 0 if status == "FINISHED" else 1
    except KeyboardInterrupt:
        say("detect: stopping (the next start resumes from the last checkpoint)")
        run.cancel()
        return 0
    finally:
        run.stop_indexer()


def run_bounded(
    settings: Settings,
    *,
    index: bool = True,
    indexer_idle_exit_s: float = 10.0,
    awareness: bool = True,
    say: Callable[[str], None] = print,
) -> int:
    """Process what Kafka holds now, from the group's committed offsets (or the beginning), then
    ship every alert to Elasticsearch and stop. At the end of input the final watermark closes
    every window and fires every timer.

    A bounded run never resumes from a checkpoint: a bounded Kafka source restored from one never
    finishes (FLINK-31006). ``ssa detect`` without ``--bounded`` resumes.
    """
    run = submit_job(settings, bounded=True, restore=False, awareness=awareness, index=index, say=say)
    if index:
        run.indexer, run.indexer_thread = start_indexer(settings, say)
    try:
        if watch(run, settings, awareness=awareness, index=index, say=say) != "FINISHED":
            raise JobFailed(
                f"the bounded job failed: {failure_cause(run)}. A bounded run does not restart (a "
                "bounded Kafka source restored from a checkpoint never finishes, FLINK-31006); its "
                f"group {settings.detect_group_id!r} committed what it read up to its last checkpoint, "
                "so to replay it all run again with another SSA_DETECT_GROUP_ID (alerts keep their ids)"
            )
        say("detect: job finished")
    finally:
        if run.indexer is not None and run.indexer_thread is not None:
            # Let the indexer drain what the job wrote, then stop it.
            run.indexer.drain(indexer_idle_exit_s)
            run.indexer_thread.join()
    if run.indexer is not None and run.indexer.fatal:
        return 1
    return 0
