"""Secure mode without a broker: the broker's security properties, the TLS files, the ACL plan,
tenant ids that could not be isolated, the settings files per principal and the one-line errors.
The same rules are exercised on a real broker by tests/integration/test_kafka_secure.py."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from infra import secure
from infra.process import ServiceError
from infra.services import KafkaService
from infra.settings import Settings, load_settings
from ssa.parser import parse


@pytest.fixture(scope="module")
def tls_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    if shutil.which("keytool") is None:
        pytest.skip("keytool (JDK) not on PATH")
    data = tmp_path_factory.mktemp("secure")
    settings = load_settings({}).with_overrides(
        data_dir=str(data), kafka_port=39092, kafka_controller_port=39093
    )
    secure.ensure_tls(settings)
    return settings


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_broker_has_no_plaintext_listener_and_denies_by_default(tls_settings: Settings) -> None:
    props = secure.broker_properties(tls_settings, "127.0.0.1", "controller-pw")
    assert props["listeners"] == "SASL_SSL://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093"
    assert "PLAINTEXT" not in props["listener.security.protocol.map"].replace("SASL_", "")
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["super.users"] == "User:ssa-admin"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["ssl.endpoint.identification.algorithm"] == "https"
    assert int(props["connections.max.reauth.ms"]) > 0


def test_tls_files_are_private_valid_and_made_once(tls_settings: Settings) -> None:
    d = tls_settings.secrets_path
    assert d.stat().st_mode & 0o777 == 0o700
    files = secure.ensure_tls(tls_settings)
    for path in files.values():
        assert path.stat().st_mode & 0o777 == 0o600, path
    ssl.create_default_context(cafile=str(files["ca_pem"]))  # a PEM CA certificate clients can load
    before = {name: p.read_bytes() for name, p in files.items()}
    assert {name: p.read_bytes() for name, p in secure.ensure_tls(tls_settings).items()} == before
    listing = subprocess.run(
        ["keytool", "-list", "-v", "-keystore", str(files["keystore"]), "-storetype", "PKCS12",
         "-storepass:file", str(files["keystore_password"])],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "IPAddress: 127.0.0.1" in listing and "CN=ssa local CA" in listing


def test_secure_server_properties_are_private(tls_settings: Settings) -> None:
    svc = KafkaService(tls_settings.with_overrides(kafka_local_security="sasl_ssl"))
    assert svc.secure
    path = svc._write_config()
    assert path.stat().st_mode & 0o777 == 0o600
    props = _props(path.read_text())
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:39092"
    assert (svc.home / "log4j2.properties").exists()


def test_plain_storage_is_not_silently_reused_in_secure_mode(tmp_path: Path) -> None:
    settings = load_settings({}).with_overrides(data_dir=str(tmp_path), kafka_local_security="sasl_ssl")
    meta = tmp_path / "kafka" / "log-dirs" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("node.id=1\n")  # formatted by a plain `ssa up`, no mode file
    with pytest.raises(ServiceError, match="formatted without security"):
        _ = KafkaService(settings).secure
    assert KafkaService(settings.with_overrides(kafka_local_security="plaintext")).secure is False
    (tmp_path / "kafka" / "security").write_text("sasl_ssl\n")
    # A secure storage stays secure even when a later command does not ask for it.
    assert KafkaService(settings.with_overrides(kafka_local_security="plaintext")).secure is True
    with pytest.raises(ServiceError, match="neither plaintext nor sasl_ssl"):
        _ = KafkaService(settings.with_overrides(kafka_local_security="tls")).secure


def _matches(rule: secure.AclRule, topic: str) -> bool:
    return topic.startswith(rule.name) if rule.pattern == "PREFIXED" else topic == rule.name


@pytest.mark.parametrize("tenant", ["a", "ab", "a-b", "a_b", "t-acme"])
def test_a_feeder_writes_only_its_own_topics_and_reads_none(tenant: str) -> None:
    settings = Settings()
    others = [t for t in ("a", "ab", "a-b", "a_b", "t-acme", secure.PROVIDER) if t != tenant]
    rules = [r for r in secure.acl_plan(settings, tenant) if r.principal == secure.feeder_user(tenant)]
    assert {r.operation for r in rules} == {"WRITE", "DESCRIBE"}
    assert {r.resource for r in rules} == {"TOPIC"}
    formats = ("syslog", "auditd", "vpcflow")
    for topic in [*secure.tenant_topics(tenant), *secure.tenant_raw_topics(tenant, formats)]:
        assert any(_matches(r, topic) for r in rules if r.operation == "WRITE")
    foreign = [
        t for other in others for t in secure.tenant_topics(other) + secure.tenant_raw_topics(other, formats)
    ]
    foreign += [*settings.all_topics, *(settings.topic_raw_prefix + f for f in formats)]
    assert not [t for t in foreign for r in rules if _matches(r, t)]


def test_provider_and_job_rules() -> None:
    settings = Settings()
    provider = secure.acl_plan(settings, secure.PROVIDER)
    feeder = [r for r in provider if r.principal == "feeder-provider"]
    assert {r.pattern for r in feeder} == {"LITERAL"}
    assert {r.name for r in feeder} == {
        "ssa.provider.telemetry.process", "ssa.provider.telemetry.audit", "ssa.provider.telemetry.auth",
        "ssa.provider.dlq", "ssa.provider.raw.auditd", "ssa.provider.raw.syslog",
    }  # fmt: skip
    job_reads = [r for r in secure.acl_plan(settings, "t-x") if r.principal == secure.JOB_USER]
    assert {r.operation for r in job_reads} == {"READ"}
    job = secure.job_plan(settings)
    assert {(r.name, r.resource) for r in job if r.resource == "GROUP"} == {
        ("ssa-detect", "GROUP"), ("ssa-indexer", "GROUP"),
    }  # fmt: skip
    written = {r.name for r in job if r.operation == "WRITE"}
    assert settings.topic_alerts in written and settings.topic_metrics in written
    assert not written & set(settings.telemetry_topics.values())


@pytest.mark.parametrize("bad", ["a.b", "acct:1", "x@y", "provider", "-x", "", "x" * 152])
def test_tenant_ids_that_cannot_be_isolated_are_refused(bad: str) -> None:
    with pytest.raises(secure.SecureError):
        secure.check_tenant_id(bad)


def test_principal_settings_name_files_never_secrets(tmp_path: Path) -> None:
    settings = load_settings({}).with_overrides(data_dir=str(tmp_path), kafka_bootstrap="127.0.0.1:39092")
    password, new = secure._ensure_password(settings, "feeder-t-x")
    assert new and len(password) == 48
    assert secure._ensure_password(settings, "feeder-t-x") == (password, False)
    path = secure._write_principal_settings(
        settings, "feeder-t-x", {"topic_prefix": "ssa.t-x.telemetry.", "topic_dlq": "ssa.t-x.dlq"}
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert password not in path.read_text()
    loaded = load_settings({"SSA_SETTINGS_FILE": str(path)})
    assert loaded.kafka_sasl_username == "feeder-t-x" and loaded.kafka_security_protocol == "SASL_SSL"
    assert loaded.telemetry_topics["flow"] == "ssa.t-x.telemetry.flow"
    from infra.clients import kafka_config

    assert kafka_config(loaded, "confluent")["sasl.password"] == password


def test_admin_settings(tmp_path: Path) -> None:
    settings = load_settings({}).with_overrides(data_dir=str(tmp_path))
    with pytest.raises(secure.SecureError, match="ssa up --secure"):
        secure.admin_settings(settings)
    secure.ensure_admin_password(settings)
    secure.write_private(secure.ca_file(settings), "pem")
    admin = secure.admin_settings(settings)
    assert (admin.kafka_sasl_username, admin.kafka_sasl_mechanism) == ("ssa-admin", "SCRAM-SHA-512")
    operator = settings.with_overrides(kafka_security_protocol="SASL_SSL", kafka_sasl_username="ops")
    assert secure.admin_settings(operator) is operator


def _feeder(tmp_path: Path) -> Settings:
    return load_settings({}).with_overrides(
        data_dir=str(tmp_path), kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="feeder-t-a", kafka_bootstrap="10.0.0.1:9094", topic_prefix="ssa.t-b.telemetry.",
    )  # fmt: skip


def test_errors_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import KafkaException

    from ingest.producer import DeliveryFailed, KafkaUnavailable

    settings = _feeder(tmp_path)
    refused = KafkaException("SASL authentication error: Authentication failed during authentication")
    assert secure.explain_kafka_error(refused, settings) == (
        "authentication failed for user feeder-t-a at 10.0.0.1:9094"
    )
    # A refused login reaches the caller as "unreachable": the probe decides.
    unreachable = KafkaUnavailable("Kafka is unreachable after 4 attempts: KafkaException: _TRANSPORT")
    monkeypatch.setattr(secure, "login_refused", lambda _s: True)
    assert secure.explain_kafka_error(unreachable, settings) == (
        "authentication failed for user feeder-t-a at 10.0.0.1:9094"
    )
    monkeypatch.setattr(secure, "login_refused", lambda _s: False)
    assert secure.explain_kafka_error(unreachable, settings) is None
    monkeypatch.setattr(secure, "refused_topics", lambda _s: ["ssa.t-b.telemetry.auth"])
    denied = DeliveryFailed("3 messages were not delivered to Kafka: Broker: Topic authorization failed")
    assert secure.explain_kafka_error(denied, settings) == (
        "user feeder-t-a is not allowed to write topic ssa.t-b.telemetry.auth"
    )
    # Not a Kafka error, or no settings: left to the caller.
    assert secure.explain_kafka_error(ValueError("Authentication failed"), settings) is None
    assert secure.explain_kafka_error(refused, None) is None


def test_cli_commands_parse() -> None:
    assert parse(["up", "--secure"]).secure is True
    assert parse(["up"]).secure is False
    args = parse(["tenants", "provision", "--tenants", "reg.yaml"])
    assert (args.command, args.tenants) == ("tenants provision", "reg.yaml")
    args = parse(["tenants", "revoke", "t-acme", "--delete-topics"])
    assert (args.command, args.tenant, args.delete_topics) == ("tenants revoke", "t-acme", True)
    with pytest.raises(SystemExit):
        parse(["tenants", "revoke"])


def test_the_alert_id_key_is_private_random_and_made_once(tmp_path: Path) -> None:
    import hashlib

    from infra.settings import SettingsError
    from streams.detect_fn import DetectionJobConfig, alert_id_secret
    from streams.runner import job_config

    settings = load_settings({}).with_overrides(data_dir=str(tmp_path))
    path = secure.ensure_alert_id_key(settings)
    text = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600 and len(text.strip()) == 64
    assert secure.ensure_alert_id_key(settings) == path and path.read_text() == text  # never replaced
    other = load_settings({}).with_overrides(data_dir=str(tmp_path / "other"))
    assert secure.ensure_alert_id_key(other).read_text() != text  # random per installation
    named = settings.with_overrides(alert_id_key_file=str(tmp_path / "mounted" / "id.key"))
    assert secure.ensure_alert_id_key(named) == tmp_path / "mounted" / "id.key"  # the file the settings name
    # The job reads it as the key of its alert ids; an unreadable file is one line before the job starts.
    context = DetectionJobConfig(alert_id_key_file=str(path)).make_engine_context()
    assert (
        context.alert_id_secret
        == alert_id_secret(str(path))
        == hashlib.sha256(text.strip().encode()).digest()
    )
    assert DetectionJobConfig().make_engine_context().alert_id_secret is None
    missing = settings.with_overrides(alert_id_key_file=str(tmp_path / "nope.key"))
    with pytest.raises(SettingsError, match=r"^alert_id_key_file: cannot read .*nope\.key"):
        job_config(missing)
