"""Flink environments configured from settings: the Kafka connector jar on the class path and the
Python workers on this virtualenv's interpreter (outside it PyFlink's workers cannot import pyflink).

On a Flink cluster (``flink run -py``) the same code runs: the jar list and executable come from
the same settings, and the mini-cluster options are simply ignored by the remote cluster.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from infra.jars import flink_connector_jars
from infra.settings import Settings

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

__all__ = [
    "JIT_DIRECTIVES",
    "FlinkSetupError",
    "connector_jar_urls",
    "create_table_env",
    "latest_checkpoint",
    "mini_cluster_jvm_args",
]


class FlinkSetupError(RuntimeError):
    pass


def _expose_virtualenv_to_embedded_python() -> None:
    """Thread mode runs Python inside the JVM (pemja), which starts from the base interpreter's
    paths; the virtualenv's site-packages and the project must be on PYTHONPATH before the JVM
    starts, or the workers fail with ``No module named 'pemja'``."""
    import site

    from infra.settings import PROJECT_ROOT

    wanted = [*site.getsitepackages(), str(PROJECT_ROOT)]
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*wanted, *current]))


# The mini-cluster's JVM (PyFlink's gateway) plans the SQL, generates and compiles operator code
# and loads classes before and while the job runs, and its one C2 compiler thread optimised all
# of it: 21-28 s of CPU over a 1.5 M-event backlog, as much as the detect thread used, on a
# 2-core machine where they compete. This file keeps run-once code (planner, code generators,
# class loading, Java serialisation) at C1: 12-18 s. Hot paths (Kafka client, Flink runtime,
# generated operators) are not matched and still reach C2.
JIT_DIRECTIVES: Final = Path(__file__).with_name("jit_directives.json")
# The parallel collector, unless JVM_ARGS choose one: G1's write barriers and concurrent marking
# cost the job a sixth of its rate on 2 shared cores (interleaved runs over one 3.0 M-event
# backlog: 33.7k and 34.6k events/s with G1, 39.4k and 41.4k with the parallel collector).
_PARALLEL_GC: Final = "-XX:+UseParallelGC"
_GC_CHOICE: Final = re.compile(r"-XX:\+Use\w*GC\b")


def mini_cluster_jvm_args(current: str) -> str:
    """``JVM_ARGS`` for the gateway JVM: the user's own, plus the parallel collector unless the
    user chose a collector, plus the compiler directives unless the user already gives a
    directives file (the JVM takes only one). PyFlink splits ``JVM_ARGS`` at whitespace, so a
    project path with a space in it goes without the directives."""
    ours = [] if _GC_CHOICE.search(current) else [_PARALLEL_GC]
    path = str(JIT_DIRECTIVES)
    if "CompilerDirectivesFile" not in current and not any(c.isspace() for c in path):
        ours.append(f"-XX:+UnlockDiagnosticVMOptions -XX:CompilerDirectivesFile={path}")
    return " ".join([current, *ours]).strip()


def latest_checkpoint(checkpoint_dir: str) -> Path | None:
    """The newest completed checkpoint (a ``chk-N`` folder holding ``_metadata``) of any job: the
    highest N of the job whose last ``_metadata`` was written last. Not the newest folder: Flink
    deletes a subsumed checkpoint's files after its successor completes, which touches the old
    folder's time, and a job killed during that deletion leaves the old ``_metadata`` beside
    missing state files, a checkpoint every restore from fails on."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return None
    newest_of_job: dict[Path, Path] = {}
    for metadata in root.glob("*/chk-*/_metadata"):
        folder = metadata.parent
        number = folder.name.removeprefix("chk-")
        if not number.isdigit():
            continue
        best = newest_of_job.get(folder.parent)
        if best is None or int(number) > int(best.name.removeprefix("chk-")):
            newest_of_job[folder.parent] = folder
    candidates = list(newest_of_job.values())
    return max(candidates, key=lambda f: (f / "_metadata").stat().st_mtime) if candidates else None


def connector_jar_urls(settings: Settings) -> list[str]:
    jars = flink_connector_jars(Path(settings.jars_dir))
    if not jars:
        raise FlinkSetupError(f"no Flink Kafka connector jar in {settings.jars_dir}/flink; run `make setup`")
    return [p.resolve().as_uri() for p in jars]


def create_table_env(
    settings: Settings,
    *,
    checkpoint_dir: str | None = None,
    checkpoint_interval_ms: int = 0,
    restore_from: str | None = None,
    restarts: bool = True,
    rest_port: int | None = None,
) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    """``restarts=False``: a failed task fails the job (restart strategy ``none``) instead of
    Flink's restart from the last checkpoint, which a bounded Kafka source never finishes from
    (FLINK-31006). ``rest_port``: the mini-cluster's REST API there (else a port of its choice),
    where ``streams.job_failures`` reads why the job restarts."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, StreamTableEnvironment

    _expose_virtualenv_to_embedded_python()
    os.environ["JVM_ARGS"] = mini_cluster_jvm_args(os.environ.get("JVM_ARGS", ""))
    config = Configuration()
    config.set_string("pipeline.jars", ";".join(connector_jar_urls(settings)))
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    config.set_string("python.execution-mode", settings.flink_execution_mode)
    config.set_string("parallelism.default", str(settings.flink_parallelism))
    # Small mini-cluster for a 2-core machine; ignored by a real cluster's own configuration.
    config.set_string("taskmanager.memory.process.size", "1600m")
    config.set_string("rest.bind-address", "127.0.0.1")
    if rest_port is not None:
        config.set_string("rest.bind-port", str(rest_port))
    # A job cancelled because Kafka refuses it (``ssa detect``'s one-line stop) leaves the Kafka
    # admin client's thread closing and logging while its classloader is released; with Flink's
    # leak check on, log4j's attempt to render that log line fails and prints a Java stack
    # trace on stderr after the one line (seen once in the ACL-removal test). The loader itself is
    # still usable; the check only guards against leaks, which a job that is ending cannot cause.
    config.set_string("classloader.check-leaked-classloader", "false")
    # How often sources emit watermarks (default 200 ms): every window waits for one, so this
    # adds up to that much to each alert's latency; emitting one costs next to nothing.
    config.set_string("pipeline.auto-watermark-interval", "50 ms")
    # A network buffer that is not full is sent after this long (Flink's default 100 ms). A
    # watermark is sent at once and takes the records before it along, but records emitted while a
    # task works through a second's batches (alerts from the detect task, alert views from the
    # awareness inputs) wait for the timeout: each shuffle on their way could add up to 100 ms.
    # The cost is more, smaller sends between tasks (Settings.flink_buffer_timeout_ms).
    config.set_string("execution.buffer-timeout.interval", f"{int(settings.flink_buffer_timeout_ms)} ms")
    # Process mode: each Python operator holds its input up to this long as one bundle (Flink's
    # default 1 s, per operator in series: 3 on the way from an alert to its incident). Thread mode
    # (the default) runs each record as it comes and ignores it (Settings.flink_python_bundle_time_ms).
    config.set_string("python.fn-execution.bundle.time", str(int(settings.flink_python_bundle_time_ms)))
    # Network buffers of 1 MB instead of 32 KB: one micro-batch (a key's second of payloads) is
    # often larger than the ten 32 KB buffers a channel may hold, so the detect task waited for
    # the window task to refill them (idle 22% of its time while the window task was
    # back-pressured; 0-6% with 1 MB). Records smaller than a buffer are still flushed every
    # 100 ms (execution.buffer-timeout) whatever the buffer size.
    config.set_string("taskmanager.memory.segment-size", "1mb")
    # With 1 MB buffers the default network share (10 % of Flink's memory, 64 buffers) is too few
    # for the job's shuffles (per path: windows -> detect; then alerts -> awareness -> cloud):
    # each input gate takes 2 exclusive buffers per channel plus 8 floating ones.
    config.set_string("taskmanager.memory.network.min", "192mb")
    config.set_string("taskmanager.memory.network.max", "192mb")
    if checkpoint_interval_ms > 0:
        target = Path(checkpoint_dir or settings.checkpoint_dir).resolve()
        config.set_string("execution.checkpointing.interval", f"{checkpoint_interval_ms} ms")
        config.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
        config.set_string(
            "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
        )
        config.set_string("state.checkpoints.dir", target.as_uri())
        config.set_string("execution.checkpointing.dir", target.as_uri())
    if not restarts:
        config.set_string("restart-strategy.type", "none")
    if restore_from:
        config.set_string("execution.state-recovery.path", Path(restore_from).resolve().as_uri())
    env = StreamExecutionEnvironment.get_execution_environment(config)
    table_env = StreamTableEnvironment.create(
        env, environment_settings=EnvironmentSettings.new_instance().in_streaming_mode().build()
    )
    return env, table_env
