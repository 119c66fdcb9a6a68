"""The local stack: a single-node KRaft Kafka broker and an Elasticsearch 8.14 node, each a JVM
launched from Maven-resolved jars, with data and logs under ``settings.data_dir``.

``up`` is idempotent (a healthy running stack is left alone), ``down`` stops only what ``up``
started (pid files plus a command-line marker), ``status`` reports without changing anything.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from infra.jars import (
    ES_LAUNCHER_JAR,
    ES_ROOT_PLUGIN_JAR,
    es_classpath_jars,
    es_module_jars,
    kafka_jars,
    require_java,
)
from infra.process import ManagedProcess, ServiceError, port_in_use
from infra.settings import Settings

__all__ = [
    "ElasticsearchService",
    "KafkaService",
    "ServiceError",
    "ServiceStatus",
    "down",
    "services",
    "status",
    "up",
]

LOOPBACK = "127.0.0.1"
ES_VERSION = "8.14.3"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    address: str
    log_file: Path
    started_in_s: float | None = None
    rss_mb: float | None = None

    def line(self) -> str:
        state = "healthy" if self.healthy else ("running, not healthy" if self.running else "stopped")
        extra = f" pid {self.pid}" if self.pid else ""
        mem = f", {self.rss_mb:.0f} MB RSS" if self.rss_mb else ""
        return f"{self.name:<14} {state:<22} {self.address}{extra}{mem}  log: {self.log_file}"


class Service(Protocol):
    name: str
    proc: ManagedProcess

    def address(self) -> str: ...
    def ports(self) -> list[int]: ...
    def healthy(self) -> bool: ...
    def launch(self) -> None: ...


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _java() -> str:
    require_java()
    java = shutil.which("java")
    assert java is not None
    return java


class KafkaService:
    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data = settings.data_path
        self.home = data / "kafka"
        self.proc = ManagedProcess(self.name, data / "run", data / "logs")

    def address(self) -> str:
        return f"{LOOPBACK}:{self.settings.kafka_port}"

    def ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    @property
    def mode_file(self) -> Path:
        return self.home / "security"

    @property
    def secure(self) -> bool:
        """Whether the broker runs in secure mode: what its storage was formatted for, else what
        ``kafka_local_security`` asks (``ssa up --secure``: ``sasl_ssl``)."""
        asked = self.settings.kafka_local_security.lower()
        if asked not in ("plaintext", "sasl_ssl"):
            raise ServiceError(f"kafka_local_security: {asked!r} is neither plaintext nor sasl_ssl")
        formatted = (self.home / "log-dirs" / "meta.properties").exists()
        if not formatted:
            return asked == "sasl_ssl"
        mode = self.mode_file.read_text().strip() if self.mode_file.exists() else "plaintext"
        if asked == "sasl_ssl" and mode != "sasl_ssl":
            raise ServiceError(
                f"the Kafka storage in {self.home} was formatted without security; to start it in "
                f"secure mode, `ssa down` and remove {self.home} (its topics are lost)"
            )
        return mode == "sasl_ssl"

    def client_settings(self) -> Settings:
        """Settings for the launcher's own admin connections (the admin principal when secure)."""
        if not self.secure:
            return self.settings.with_overrides(
                kafka_bootstrap=self.address(), kafka_security_protocol="PLAINTEXT"
            )
        from infra.secure import admin_settings

        return admin_settings(self.settings.with_overrides(kafka_bootstrap=self.address()))

    def healthy(self) -> bool:
        from kafka import KafkaAdminClient

        from infra.clients import kafka_config

        admin = KafkaAdminClient(**kafka_config(self.client_settings()), request_timeout_ms=3000)
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()

    def _write_config(self) -> Path:
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{s.kafka_port},CONTROLLER://{LOOPBACK}:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.home / "log-dirs"),
            "num.partitions": str(s.kafka_partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            "message.max.bytes": str(8 * 1024 * 1024),
        }
        path = self.home / "server.properties"
        if self.secure:
            from infra import secure

            props |= secure.broker_properties(s, LOOPBACK, secure.controller_password(s))
            # Holds the keystore and broker passwords: readable by the owner only.
            secure.write_private(path, "".join(f"{k}={v}\n" for k, v in props.items()))
        else:
            path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = self.home / "log4j2.properties"
        log4j.write_text(
            "rootLogger.level=INFO\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\nappender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.kafka.name=kafka\nlogger.kafka.level=WARN\n"
            "logger.apache.name=org.apache.kafka\nlogger.apache.level=WARN\n"
        )
        return path

    def _classpath(self) -> str:
        jars = kafka_jars(Path(self.settings.jars_dir))
        if not jars:
            raise ServiceError(f"no Kafka jars in {self.settings.jars_dir}/kafka; run `make setup`")
        return ":".join(str(p) for p in jars)

    def launch(self) -> None:
        config = self._write_config()
        java = _java()
        log4j = f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}"
        if not (self.home / "log-dirs" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            import subprocess

            scram: list[str] = []
            if self.secure:  # the admin's SCRAM credential, before any metadata exists (KIP-900)
                from infra.secure import ADMIN_USER, format_scram_args

                scram = format_scram_args(self.settings)
            fmt = subprocess.run(
                # "=" form: a random id may start with "-", which would read as an option.
                [java, log4j, "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
                 f"--cluster-id={cluster_id}", "-c", str(config), "--standalone", *scram],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if fmt.returncode != 0:
                self.proc.log_dir.mkdir(parents=True, exist_ok=True)
                output = fmt.stdout + fmt.stderr
                if scram:  # never let the admin's password reach a log
                    output = output.replace(scram[1], f"SCRAM-SHA-512=[name={ADMIN_USER},password=***]")
                self.proc.log_file.write_text(output)
                raise ServiceError(f"formatting Kafka storage failed; read {self.proc.log_file}")
            self.mode_file.write_text("sasl_ssl\n" if scram else "plaintext\n")
        heap = self.settings.kafka_heap
        self.proc.start(
            [java, self.proc.marker, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", log4j,
             "-Djava.awt.headless=true", "-cp", self._classpath(), "kafka.Kafka", str(config)],
            cwd=self.home,
        )  # fmt: skip


class ElasticsearchService:
    name = "elasticsearch"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data = settings.data_path
        self.home = data / "elasticsearch"
        self.proc = ManagedProcess(self.name, data / "run", data / "logs")

    def address(self) -> str:
        return f"http://{LOOPBACK}:{self.settings.es_port}"

    def ports(self) -> list[int]:
        return [self.settings.es_port, self.settings.es_transport_port]

    def healthy(self) -> bool:
        url = f"{self.address()}/_cluster/health?wait_for_status=yellow&timeout=1s"
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - loopback URL we built
            body = json.loads(resp.read())
        return body.get("status") in ("green", "yellow")

    def _layout(self) -> None:
        jars_dir = Path(self.settings.jars_dir)
        if not es_classpath_jars(jars_dir) or not (jars_dir / ES_LAUNCHER_JAR).exists():
            raise ServiceError(f"no Elasticsearch jars in {jars_dir}; run `make setup`")
        config = self.home / "config"
        config.mkdir(parents=True, exist_ok=True)
        for module, jars, descriptor in (
            ("transport-netty4", es_module_jars(jars_dir), _NETTY_DESCRIPTOR),
            ("ssa-root-info", [jars_dir / ES_ROOT_PLUGIN_JAR], _ROOT_DESCRIPTOR),
        ):
            target = self.home / "modules" / module
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for jar in jars:
                shutil.copy2(jar, target / jar.name)
            (target / "plugin-descriptor.properties").write_text(descriptor)
        (self.home / "plugins").mkdir(exist_ok=True)
        s = self.settings
        (config / "elasticsearch.yml").write_text(
            "cluster.name: ssa-local\n"
            "node.name: ssa-node\n"
            f"path.data: {self.home / 'data'}\n"
            f"path.logs: {s.data_path / 'logs'}\n"
            f"network.host: {LOOPBACK}\n"
            f"http.port: {s.es_port}\n"
            f"transport.port: {s.es_transport_port}\n"
            "discovery.type: single-node\n"
            "action.destructive_requires_name: true\n"
            # A development node on a shared disk: do not go read-only at 95% full.
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
        )

    def launch(self) -> None:
        self._layout()
        jars_dir = Path(self.settings.jars_dir)
        module_path = ":".join(str(p) for p in es_classpath_jars(jars_dir))
        heap = self.settings.es_heap
        self.proc.start(
            [_java(), self.proc.marker, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
             "-Djava.awt.headless=true", "-Dlog4j2.disable.jmx=true", "-Dfile.encoding=UTF-8",
             "-Dio.netty.noUnsafe=true", "-Dio.netty.recycler.maxCapacityPerThread=0",
             f"-Djava.io.tmpdir={self.home / 'tmp'}",
             "--module-path", module_path, "--add-modules", "ALL-MODULE-PATH",
             "-cp", str(jars_dir / ES_LAUNCHER_JAR), "org.ssa.esnode.EmbeddedNode", str(self.home)],
            cwd=self.home,
        )  # fmt: skip
        (self.home / "tmp").mkdir(exist_ok=True)


_NETTY_DESCRIPTOR = f"""description=Netty 4 based transport implementation
version={ES_VERSION}
name=transport-netty4
classname=org.elasticsearch.transport.netty4.Netty4Plugin
java.version=17
elasticsearch.version={ES_VERSION}
extended.plugins=
has.native.controller=false
"""

_ROOT_DESCRIPTOR = f"""description=GET / node and version info (ssa)
version={ES_VERSION}
name=ssa-root-info
classname=org.ssa.esroot.RootInfoPlugin
java.version=17
elasticsearch.version={ES_VERSION}
extended.plugins=
has.native.controller=false
"""


def services(settings: Settings) -> list[Service]:
    return [KafkaService(settings), ElasticsearchService(settings)]


def _status_of(svc: Service, started_in: float | None = None) -> ServiceStatus:
    pid = svc.proc.pid()
    try:
        healthy = pid is not None and svc.healthy()
    except Exception:  # any failure to answer is "not healthy" for a status line
        healthy = False
    return ServiceStatus(
        svc.name, pid is not None, healthy, pid, svc.address(), svc.proc.log_file, started_in, _rss_mb(pid)
    )


def status(settings: Settings) -> list[ServiceStatus]:
    return [_status_of(svc) for svc in services(settings)]


def up(settings: Settings, progress: object = print) -> list[ServiceStatus]:
    """Start whatever is not running, wait until all are healthy, then create topics and templates."""
    from infra.bootstrap import ensure_index_templates, ensure_topics

    say = progress if callable(progress) else (lambda _msg: None)
    started: list[tuple[Service, float]] = []
    for svc in services(settings):
        if svc.proc.pid() is not None:
            say(f"{svc.name}: already running (pid {svc.proc.pid()})")
            continue
        for port in svc.ports():
            if port_in_use(LOOPBACK, port):
                raise ServiceError(
                    f"{svc.name}: port {port} on {LOOPBACK} is taken by another process; "
                    f"stop it or choose other ports in settings (SSA_* environment variables)"
                )
        say(f"{svc.name}: starting (log: {svc.proc.log_file})")
        svc.launch()
        started.append((svc, time.monotonic()))
    results = []
    for svc in services(settings):
        t0 = next((t for s, t in started if s.name == svc.name), None)
        waited = svc.proc.wait_until(svc.healthy, settings.startup_timeout_s, "healthy")
        took = (time.monotonic() - t0) if t0 is not None else None
        if t0 is not None:
            say(f"{svc.name}: healthy after {took:.1f} s")
        del waited
        results.append(_status_of(svc, took))
    kafka = KafkaService(settings)
    if kafka.secure:
        from infra.secure import ADMIN_USER, principal_settings_file, write_admin_settings

        write_admin_settings(kafka.client_settings())
        say(f"kafka: secure mode (SASL_SSL, SCRAM-SHA-512, ACLs); admin settings: "
            f"SSA_SETTINGS_FILE={principal_settings_file(settings, ADMIN_USER)}")  # fmt: skip
    ensure_topics(kafka.client_settings() if kafka.secure else settings)
    ensure_index_templates(settings)
    return results


def down(settings: Settings, progress: object = print) -> list[str]:
    say = progress if callable(progress) else (lambda _msg: None)
    stopped = []
    for svc in reversed(services(settings)):
        if svc.proc.stop():
            say(f"{svc.name}: stopped")
            stopped.append(svc.name)
        else:
            say(f"{svc.name}: not running")
    return stopped
