"""Settings, client configuration, the production compose file and the CLI's error handling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.clients import kafka_config
from infra.settings import PROJECT_ROOT, Settings, SettingsError, load_settings
from ingest.tenants import TenantRegistry


def test_environment_overrides_defaults_and_file(tmp_path: Path) -> None:
    file = tmp_path / "ssa.yaml"
    file.write_text("kafka_bootstrap: broker:9092\nes_port: 9300\n")
    s = load_settings({"SSA_SETTINGS_FILE": str(file), "SSA_ES_PORT": "9400"})
    assert s.kafka_bootstrap == "broker:9092"
    assert s.es_port == 9400
    assert s.topic_alerts == "ssa.alerts"
    assert s.telemetry_topics["flow"] == "ssa.telemetry.flow"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SSA_KAFKA_PORT": "ninety"}, "kafka_port must be an integer"),
        ({"SSA_SETTINGS_FILE": "/nonexistent/ssa.yaml"}, "settings file /nonexistent/ssa.yaml"),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "ssa.yaml"
    file.write_text("kafka_bootstrapp: x\n")
    with pytest.raises(SettingsError, match="unknown setting 'kafka_bootstrapp'"):
        load_settings({"SSA_SETTINGS_FILE": str(file)})


def test_unsafe_yaml_is_not_executed(tmp_path: Path) -> None:
    file = tmp_path / "ssa.yaml"
    file.write_text("kafka_bootstrap: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings({"SSA_SETTINGS_FILE": str(file)})


def test_sasl_ssl_options_read_the_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = Settings(
        kafka_bootstrap="b1:9093,b2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ssa",
        kafka_sasl_password_file=str(secret),
        kafka_ssl_cafile="/etc/ca.pem",
    )
    py = kafka_config(s)
    assert py["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert py["sasl_plain_password"] == "s3cret" and py["ssl_cafile"] == "/etc/ca.pem"
    rd = kafka_config(s, "confluent")
    assert rd["sasl.mechanism"] == "SCRAM-SHA-512" and rd["sasl.password"] == "s3cret"
    assert rd["ssl.ca.location"] == "/etc/ca.pem"


def test_missing_secret_file_is_a_clear_error() -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password_file="/nonexistent/pw")
    with pytest.raises(SettingsError, match="kafka_sasl_password_file: cannot read /nonexistent/pw"):
        kafka_config(s)


def _compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "infra" / "docker-compose.yml").read_text())


def test_compose_describes_the_same_topology_as_settings() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"kafka", "elasticsearch", "jobmanager", "taskmanager", "grafana"} <= set(services)
    s = Settings()
    kafka_port = int(s.kafka_bootstrap.rsplit(":", 1)[1])
    assert f"{kafka_port}:{kafka_port}" in services["kafka"]["ports"]
    kenv = services["kafka"]["environment"]
    assert "broker,controller" in kenv["KAFKA_PROCESS_ROLES"]
    assert f"PLAINTEXT://127.0.0.1:{kafka_port}" in kenv["KAFKA_ADVERTISED_LISTENERS"]
    assert kenv["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(kenv["KAFKA_NUM_PARTITIONS"]) == s.kafka_partitions
    es_port = int(s.es_url.rsplit(":", 1)[1])
    assert f"{es_port}:{es_port}" in services["elasticsearch"]["ports"]
    assert services["elasticsearch"]["image"].endswith(":8.14.3")
    assert services["kafka"]["image"].split(":")[1].startswith("4.")
    # The job's containers reach the broker on its internal listener, named in the same variables
    # the settings read.
    internal = kenv["KAFKA_ADVERTISED_LISTENERS"].split(",")[0].split("//")[1]
    for name in ("jobmanager", "taskmanager", "indexer"):
        env = services[name]["environment"]
        assert env["SSA_KAFKA_BOOTSTRAP"] == internal
        assert env["SSA_ES_URL"] == "http://elasticsearch:9200"
        assert set(k for k in env if k.startswith("SSA_")) <= {"SSA_" + k.upper() for k in vars(s)}
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "../dashboards/built/provisioning:/etc/grafana/provisioning" in grafana_mounts
    # The dashboards provider reads the folder the compose file mounts the built JSON into.
    provider = yaml.safe_load(
        (PROJECT_ROOT / "dashboards/built/provisioning/dashboards/ssa.yaml").read_text()
    )
    assert f"../dashboards/built/json:{provider['providers'][0]['options']['path']}" in grafana_mounts
    # No literal secrets: a password is only ever named by a file (a compose secret) or an
    # interpolated variable.
    for svc in services.values():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key.upper():
                from_file = key.endswith("_FILE") and str(value).startswith("/run/secrets/")
                assert from_file or str(value).startswith("${"), key


def test_compose_runs_elasticsearch_with_security_on() -> None:
    compose = _compose()
    services, secrets = compose["services"], compose["secrets"]
    es = services["elasticsearch"]
    env = es["environment"]
    assert str(env["xpack.security.enabled"]).lower() == "true"
    assert "ELASTIC_PASSWORD" not in env and env["ELASTIC_PASSWORD_FILE"] == "/run/secrets/elastic_password"
    assert "elastic_password" in es["secrets"]
    # The secret files live in infra/secrets/, which git ignores except its README.
    gitignore = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert "infra/secrets/*" in gitignore
    for name in ("elastic_password", "grafana_admin_password"):
        assert secrets[name]["file"].startswith("./secrets/"), name
    # The health check has to authenticate now.
    assert "/run/secrets/elastic_password" in " ".join(es["healthcheck"]["test"])
    # Everything of ours that talks to Elasticsearch logs in, with the password from the secret.
    talkers = [name for name, svc in services.items() if "SSA_ES_URL" in (svc.get("environment") or {})]
    assert {"jobmanager", "taskmanager", "indexer", "grafana"} <= set(talkers)
    for name in ("jobmanager", "taskmanager", "indexer"):
        svc_env = services[name]["environment"]
        assert (
            svc_env["SSA_ES_USERNAME"] and svc_env["SSA_ES_PASSWORD_FILE"] == "/run/secrets/elastic_password"
        )
        assert "elastic_password" in services[name]["secrets"], name
    grafana = services["grafana"]
    assert grafana["environment"]["SSA_ES_USERNAME"] and grafana["environment"]["SSA_ES_PASSWORD"].startswith(
        "${"
    )
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "grafana_admin_password" in grafana["secrets"]
    # Same topology as before: the services and published ports are unchanged.
    assert set(services) == {"kafka", "elasticsearch", "jobmanager", "taskmanager", "indexer", "grafana"}
    assert es["ports"] == ["9200:9200"] and services["grafana"]["ports"] == ["3000:3000"]


def test_example_tenant_registry_loads() -> None:
    reg = TenantRegistry.load(PROJECT_ROOT / "infra" / "tenants.example.yaml")
    assert reg.tenant_of_ip("10.2.0.5") == "t-beta"
    assert reg.is_peered("t-acme", "t-beta")


def test_cli_bad_argument_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ssa.cli", "up", "--bogus"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "unrecognized arguments: --bogus" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_bad_setting_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ssa.cli", "status"],
        capture_output=True,
        text=True,
        check=False,
        env={"SSA_KAFKA_PORT": "x", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == "ssa status: environment SSA_KAFKA_PORT: kafka_port must be an integer, got 'x'"
    )
