"""The one place for every address, topic and index name.

Values come from defaults, then an optional settings file (``SSA_SETTINGS_FILE``, YAML mapping of
field name to value), then environment variables ``SSA_<FIELD>`` (upper case). Secrets are never
values here: only paths to files that hold them (``*_file`` fields), read when a client is built.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = ["PROJECT_ROOT", "Settings", "SettingsError", "load_settings"]

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting is malformed; the message names the setting and where it came from."""


@dataclass(frozen=True)
class Settings:
    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password_file: str = ""
    kafka_ssl_cafile: str = ""
    kafka_partitions: int = 2
    kafka_replication_factor: int = 1
    # Telemetry topics' retention. Their records carry the event time (ingest.producer), and a
    # broker deletes a segment once its newest record time is older than retention.ms: with a time
    # limit, a replay of last year's capture is deleted minutes after it is written, before the
    # job reads it. So by size per partition (-1: none), and by time only if set (-1: none).
    telemetry_retention_bytes: int = 1 << 30
    telemetry_retention_ms: int = -1
    # Local broker's security (``ssa up``; ``ssa up --secure`` = sasl_ssl): plaintext, or a SASL_SSL
    # listener (SCRAM-SHA-512, TLS from a local CA) with the StandardAuthorizer and ACLs (infra/secure.py).
    kafka_local_security: str = "plaintext"
    # Certificates, passwords and per-principal settings files (0600); "" = <data_dir>/secrets.
    secrets_dir: str = ""
    # Elasticsearch
    es_url: str = "http://127.0.0.1:9200"
    es_api_key_file: str = ""
    es_username: str = ""
    es_password_file: str = ""
    es_ca_file: str = ""
    # Lifetime of each tenant's API key (``ssa tenants provision``); 0: never expires. A key with less
    # than a third of it left is replaced at the next provision (infra/es_security.py).
    es_api_key_expiration_days: int = 90
    # Topics and indices (DESIGN.md); only referenced through these fields.
    topic_prefix: str = "ssa.telemetry."
    # Where the job reads telemetry. Off (the plain demo): the shared ``<topic_prefix><kind>``
    # topics, and an event's tenant is what its payload says (any producer is trusted). On (secure
    # mode: the job principal's settings file from ``ssa tenants provision``): every tenant's
    # ``ssa.<tenant>.telemetry.<kind>`` by pattern (``streams.sql.tenant_topic_pattern``), the
    # tenant taken from the topic, a payload naming another one sent to the DLQ (``streams.detect_fn``);
    # and ``ssa parse`` reads every tenant's ``ssa.<tenant>.raw.<format>`` by pattern and writes each
    # record's events to its topic's tenant's telemetry topics, after the same check (``streams.parse_stage``).
    tenant_topics: bool = False
    topic_alerts: str = "ssa.alerts"
    topic_dlq: str = "ssa.dlq"
    topic_metrics: str = "ssa.metrics"
    # Raw input records per format, ``<prefix><format>`` (ingest.raw): read by the parse stage.
    topic_raw_prefix: str = "ssa.raw."
    # The parse stage's per-source header lines (compacted; streams.parse_stage).
    topic_parse_state: str = "ssa.parse.state"
    # The awareness stage's outputs (incidents, threat levels, early warnings).
    topic_incidents: str = "ssa.incidents"
    topic_threat: str = "ssa.threat"
    topic_warnings: str = "ssa.warnings"
    index_alerts_prefix: str = "ssa-alerts-"
    index_metrics_prefix: str = "ssa-metrics-"
    index_incidents_prefix: str = "ssa-incidents-"
    index_threat_prefix: str = "ssa-threat-"
    index_warnings_prefix: str = "ssa-warnings-"
    # Local services started by ``ssa up``
    data_dir: str = str(PROJECT_ROOT / ".data")
    jars_dir: str = str(PROJECT_ROOT / "infra" / "jars")
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    es_port: int = 9200
    es_transport_port: int = 9300
    es_heap: str = "768m"
    startup_timeout_s: float = 120.0
    # Pipeline
    tenants_file: str = str(PROJECT_ROOT / ".data" / "tenants.yaml")
    # Analysts' snoozes (``ssa incidents snooze``), read by the job's awareness stage.
    snooze_file: str = str(PROJECT_ROOT / ".data" / "snoozes.yaml")
    checkpoint_dir: str = str(PROJECT_ROOT / ".data" / "checkpoints")
    checkpoint_interval_ms: int = 5000
    detect_group_id: str = "ssa-detect"
    indexer_group_id: str = "ssa-indexer"
    parse_group_id: str = "ssa-parse"
    # The parse stage's Kafka transactional.id; empty: ``<parse group>-<host name>``. Stable per
    # process (a restart fences its predecessor), distinct for each ``ssa parse`` of one host.
    parse_transactional_id: str = ""
    # Event ids each parse-stage output remembers to drop a shipper's copy of a record (``ingest.recent``;
    # 0: none): at 65,536, the last 32,768 to 65,536 ids, about 4.5 MB per output.
    parse_recent_ids: int = 65_536
    out_of_orderness_ms: int = 2000
    # Flow events' allowance instead (``ts`` is the flow's last packet): an exporter writes a
    # record only once the flow ends or times out. Zeek removes an idle TCP connection after
    # tcp_inactivity_timeout (5 min; 1 min for UDP/ICMP), NetFlow/IPFIX exports after the
    # inactive timeout (Cisco default 15 s; a long flow at the 30 min active timeout, with ts
    # near the export). 6 min covers both defaults. AWS VPC Flow Logs aggregate up to 10 min
    # (default maximum aggregation interval) before writing: set ~15 min (900000) for them.
    # Zeek's 1 h inactivity timeout for ssh/ftp/telnet/rlogin ports is not covered.
    flow_export_delay_ms: int = 360_000
    # A partition silent this long stops holding the watermark back. Short values let a slow
    # (back-pressured) partition's records fall behind the watermark and be dropped as late.
    source_idle_timeout_ms: int = 30000
    # How far (event time) one Kafka partition may read ahead of the slowest before it is paused.
    # Without a bound, catching up on a backlog reads the sparse partitions to their end while
    # the dense ones lag, and every window in between waits in Flink state (and in each
    # checkpoint). Must exceed the idle timeout, or live partitions wait on a silent one.
    watermark_max_drift_ms: int = 60000
    detector_config_file: str = ""
    # A file holding the provider's secret for the alert ids' hash (``detectors.alert.make_alert_id``):
    # without it a tenant can confirm a guess about the other side of a cross-tenant alert by
    # hashing the guess. ``ssa tenants provision`` makes one for the secure mode; "" = unkeyed ids.
    alert_id_key_file: str = ""
    flink_parallelism: int = 1
    flink_execution_mode: str = "thread"
    # Latency of the job (streams/flink_env.py), each against a little CPU. How long a network
    # buffer that is not full waits before it is sent (Flink's ``execution.buffer-timeout``,
    # default 100 ms): each shuffle on the way from a window to its alert in Kafka, and on to its
    # incident, may add that much. Smaller: more, smaller sends between the job's tasks.
    flink_buffer_timeout_ms: int = 20
    # Process mode only: how long a Python operator holds its input before running it as one
    # bundle (``python.fn-execution.bundle.time``, Flink's default 1000 ms), added by each Python
    # operator in series. Smaller: more round trips to the Python worker. (Thread mode, the
    # default, runs every record in the call: it has no bundles.)
    flink_python_bundle_time_ms: int = 100
    grafana_url: str = "http://127.0.0.1:3000"
    # ``ssa tenants provision`` makes a Grafana organisation per tenant (dashboards.grafana_orgs)
    # when both are set: a Grafana server admin's login and the file holding its password.
    grafana_admin_user: str = ""
    grafana_admin_password_file: str = ""
    # Elasticsearch's URL as Grafana reaches it, for the tenants' data sources ("" = es_url).
    grafana_es_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def telemetry_topics(self) -> dict[str, str]:
        return {kind: self.topic_prefix + kind for kind in ("flow", "process", "audit", "auth")}

    @property
    def all_topics(self) -> list[str]:
        return [
            *self.telemetry_topics.values(),
            self.topic_alerts,
            self.topic_dlq,
            self.topic_metrics,
            *self.awareness_topics,
            self.topic_parse_state,
        ]

    @property
    def awareness_topics(self) -> list[str]:
        return [self.topic_incidents, self.topic_threat, self.topic_warnings]

    @property
    def index_alerts_pattern(self) -> str:
        return self.index_alerts_prefix + "*"

    @property
    def index_metrics_pattern(self) -> str:
        return self.index_metrics_prefix + "*"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def secrets_path(self) -> Path:
        return Path(self.secrets_dir) if self.secrets_dir else self.data_path / "secrets"

    def with_overrides(self, **values: Any) -> Settings:
        return dataclasses.replace(self, **values)

    def to_env(self) -> dict[str, str]:
        """``SSA_*`` variables that reproduce these settings in a child process."""
        return {
            "SSA_" + f.name.upper(): str(getattr(self, f.name)) for f in fields(self) if f.name != "extra"
        }


def _coerce(name: str, raw: Any, target: Any, origin: str) -> Any:
    if target is bool or target == "bool":
        text = str(raw).strip().lower()
        if isinstance(raw, bool) or text in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return raw if isinstance(raw, bool) else text in ("true", "1", "yes", "on")
        raise SettingsError(f"{origin}: {name} must be true or false, got {raw!r}")
    if target is int or target == "int":
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{origin}: {name} must be an integer, got {raw!r}") from None
    if target is float or target == "float":
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{origin}: {name} must be a number, got {raw!r}") from None
    if target is str or target == "str":
        if not isinstance(raw, str | int | float):
            raise SettingsError(f"{origin}: {name} must be a string, got {type(raw).__name__}")
        return str(raw)
    return raw


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Defaults, then ``SSA_SETTINGS_FILE``, then ``SSA_*`` environment variables."""
    env = dict(os.environ if env is None else env)
    types = {f.name: f.type for f in fields(Settings) if f.name != "extra"}
    values: dict[str, Any] = {}
    settings_file = env.get("SSA_SETTINGS_FILE")
    if settings_file:
        path = Path(settings_file)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"settings file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"settings file {path}: not valid YAML ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"settings file {path}: expected a mapping of setting to value")
        for key, raw in loaded.items():
            if key not in types:
                raise SettingsError(f"settings file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, raw, types[key], f"settings file {path}")
    for name, typ in types.items():
        key = "SSA_" + name.upper()
        if key in env:
            values[name] = _coerce(name, env[key], typ, f"environment {key}")
    return Settings(**values)
