"""Kafka in secure mode: a local CA and the broker's TLS keystore, SCRAM credentials, and the ACLs
that bind each feeder to its tenant (``ssa up --secure``, ``ssa tenants provision|revoke``).

What the secure broker enforces (``broker_properties``):

- Clients reach Kafka only on a ``SASL_SSL`` listener: TLS with a certificate of the project's
  own CA (SAN ``IP:127.0.0.1``, ``DNS:localhost``; clients verify it with ``ca.pem``), SASL
  mechanism ``SCRAM-SHA-512`` only (RFC 5802/RFC 7677 SCRAM; Kafka docs "Authentication using
  SASL/SCRAM"). There is no PLAINTEXT listener. The KRaft controller listener is also
  ``SASL_SSL``, with ``PLAIN`` for the broker's own principal (SCRAM credentials live in the
  metadata log the controller serves, so the controller listener cannot use them: Kafka docs,
  "KRaft Security"), loopback only.
- ``authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer`` (the KRaft
  authorizer, KIP-801), ``allow.everyone.if.no.acl.found=false``, ``super.users=User:ssa-admin``
  (the broker and the provisioning tool, one principal). Every other principal has exactly the
  ACLs ``acl_plan`` lists.
- The admin's SCRAM credential is written at storage format time (``--add-scram``, KIP-900), so
  the broker can authenticate its own inter-broker connections before any metadata exists; the
  others are created through the admin API (``AlterUserScramCredentials``, KIP-554).

Principals and topics (PREFIXED resource patterns, KIP-290):

| principal | may |
|---|---|
| ``feeder-<tenant>`` | WRITE, DESCRIBE topics with prefix ``ssa.<tenant>.telemetry.``; WRITE, DESCRIBE ``ssa.<tenant>.dlq`` (``ssa ingest`` sends bad input to its DLQ); WRITE, DESCRIBE topics with prefix ``ssa.<tenant>.raw.`` (raw records: shippers, ``ssa receive syslog``) |
| ``feeder-provider`` | WRITE, DESCRIBE ``ssa.provider.telemetry.{process,audit,auth}``, ``ssa.provider.dlq`` and ``ssa.provider.raw.{auditd,syslog}`` (a hypervisor's auditd writes process and, from ``USER_AUTH``/``USER_LOGIN``, auth events; its sshd log auth events) |
| ``ssa-job`` | READ every tenant's telemetry prefix, the provider topics and the per-tenant DLQs; READ, WRITE the shared outputs (alerts, metrics, DLQ and the other non-telemetry topics of ``Settings.all_topics``: the indexer thread reads them); READ its consumer groups (``detect_group_id``, ``indexer_group_id``) |
| ``ssa-parse`` | READ, DESCRIBE every tenant's raw prefix ``ssa.<tenant>.raw.`` and the provider's raw topics; WRITE, DESCRIBE every tenant's telemetry prefix and the provider's telemetry topics; its own topics, group and transactional id (``parse_plan``) |

WRITE on any topic implies IDEMPOTENT_WRITE on the cluster since Kafka 3.0 (KIP-679), so the
idempotent producer needs no cluster ACL. Nobody but the admin may CREATE, DELETE or ALTER.
A feeder has no READ at all and no group: it can neither consume nor see other tenants' topics.
The parse stage subscribes to ``ssa.<tenant>.raw.<format>`` by regular expression: the client
matches it against the metadata of every topic the broker lets it DESCRIBE, then fetches with READ
on each match, so its per-tenant PREFIXED READ (which implies DESCRIBE) is all a pattern read needs;
a tenant's raw topics are invisible to it until provisioned.

Secrets: every password is random (``secrets.token_hex(24)``), stored in a 0600 file in
``Settings.secrets_path`` (0700), never printed, logged or written to a settings file. Each
principal also gets ``<name>.yaml``, a settings file with only paths (``SSA_SETTINGS_FILE=...``
makes any ``ssa`` command act as that principal; the job's ``ssa-job.yaml`` also sets
``tenant_topics: true``, so ``ssa detect`` with it reads the tenants' topics by pattern and takes each
event's tenant from its topic, and ``alert_id_key_file`` (``alert-id.key``, random, made once), the
key of the alert ids' hash, and so does ``ssa-parse.yaml`` for ``ssa parse``: raw records of
``ssa.<tenant>.raw.*`` become events on ``ssa.<tenant>.telemetry.*``, streams.parse_stage). Not protected: ``server.properties`` (0600)
holds the keystore password and the broker's own passwords (Kafka reads them from there), and the
admin's password is on ``StorageTool format``'s command line for the second it runs.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from infra.process import ServiceError
from infra.settings import Settings

__all__ = [
    "ADMIN_USER",
    "JOB_USER",
    "PROVIDER",
    "PROVIDER_KINDS",
    "PROVIDER_RAW_FORMATS",
    "AclRule",
    "SecureError",
    "acl_plan",
    "admin_settings",
    "alert_id_key_file",
    "broker_acls",
    "broker_properties",
    "ensure_admin_password",
    "ensure_alert_id_key",
    "ensure_tls",
    "explain_kafka_error",
    "feeder_user",
    "full_plan",
    "owned_principals",
    "parse_plan",
    "provision",
    "provisioned_tenants",
    "quiet_kafka_logger",
    "revoke",
    "stale_acls",
    "tenant_dlq",
    "tenant_prefix",
    "tenant_raw_prefix",
    "tenant_raw_topics",
    "tenant_telemetry_topics",
    "write_admin_settings",
]

ADMIN_USER: Final = "ssa-admin"
JOB_USER: Final = "ssa-job"
PARSE_USER: Final = "ssa-parse"
PROVIDER: Final = "provider"
PROVIDER_KINDS: Final = ("process", "audit", "auth")
# The hypervisors' own logs, which serve many tenants (the registry maps their VMs to tenants):
# auditd (process, audit, auth events) and sshd's syslog (auth events). Format names of
# ``ssa ingest --format`` (infra does not import the parsers).
PROVIDER_RAW_FORMATS: Final = ("auditd", "syslog")
KINDS: Final = ("flow", "process", "audit", "auth")
MECHANISM: Final = "SCRAM-SHA-512"
SCRAM_ITERATIONS: Final = 8192  # Kafka's kafka-configs default is 4096; RFC 7677 asks at least 4096
# Kafka topic names allow [a-zA-Z0-9._-]; a dot in a tenant id would make one tenant's prefix
# ("ssa.a.") a prefix of another's topics ("ssa.a.b.telemetry.flow"), so ids with dots are refused.
TENANT_ID_RE: Final = r"[A-Za-z0-9][A-Za-z0-9_-]{0,150}"  # also the job's topic pattern (streams.sql)
_TOPIC_SAFE: Final = re.compile(f"^{TENANT_ID_RE}$")


class SecureError(ServiceError):
    """An expected failure of secure mode, as one line that says what to do next."""


# --- names ----------------------------------------------------------------------------------
def feeder_user(tenant: str) -> str:
    return f"feeder-{tenant}"


def tenant_prefix(tenant: str) -> str:
    """The topic prefix of a tenant's (or the provider's) telemetry: ``ssa.<tenant>.telemetry.``."""
    return f"ssa.{tenant}.telemetry."


def tenant_dlq(tenant: str) -> str:
    return f"ssa.{tenant}.dlq"


def tenant_raw_prefix(tenant: str) -> str:
    """The topic prefix of a tenant's (or the provider's) raw records: ``ssa.<tenant>.raw.``."""
    return f"ssa.{tenant}.raw."


def tenant_raw_topics(tenant: str, formats: Iterable[str] = ()) -> list[str]:
    """A tenant's raw topics ``ssa.<tenant>.raw.<format>`` of ``formats`` (format names); the
    provider's are those of ``PROVIDER_RAW_FORMATS`` only (its ACLs name them literally)."""
    if tenant == PROVIDER:
        formats = PROVIDER_RAW_FORMATS
    return [tenant_raw_prefix(tenant) + fmt for fmt in formats]


def tenant_telemetry_topics(tenant: str) -> dict[str, str]:
    """The telemetry topic of each event kind a tenant's (or the provider's) events go to."""
    kinds = PROVIDER_KINDS if tenant == PROVIDER else KINDS
    return {kind: tenant_prefix(tenant) + kind for kind in kinds}


def tenant_topics(tenant: str) -> list[str]:
    kinds = PROVIDER_KINDS if tenant == PROVIDER else KINDS
    return [tenant_prefix(tenant) + kind for kind in kinds] + [tenant_dlq(tenant)]


def check_tenant_id(tenant: str) -> None:
    if tenant == PROVIDER:
        raise SecureError(f"tenant id {tenant!r} is reserved for the provider feeder")
    if not _TOPIC_SAFE.match(tenant):
        raise SecureError(
            f"tenant id {tenant!r} cannot name Kafka topics: use letters, digits, '-' and '_' "
            "(no '.', ':' or '@'), at most 151 characters"
        )


# --- files ----------------------------------------------------------------------------------
def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file created 0600 (never readable by others, even for a moment)."""
    _private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    path.chmod(0o600)


def password_file(settings: Settings, user: str) -> Path:
    return settings.secrets_path / f"{user}.password"


def alert_id_key_file(settings: Settings) -> Path:
    """The provider's secret for the alert ids' hash: ``settings.alert_id_key_file``, else
    ``alert-id.key`` among the secrets."""
    return (
        Path(settings.alert_id_key_file)
        if settings.alert_id_key_file
        else settings.secrets_path / "alert-id.key"
    )


def ensure_alert_id_key(settings: Settings) -> Path:
    """The alert-id key file, made (random, 0600) if missing; never replaced: a new key changes
    every alert id, so a replay after it would write each alert a second time."""
    path = alert_id_key_file(settings)
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        write_private(path, secrets.token_hex(32) + "\n")
    return path


def _ensure_password(settings: Settings, user: str) -> tuple[str, bool]:
    """The user's password, created (random) if its file does not exist; and whether it was new."""
    path = password_file(settings, user)
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value, False
    value = secrets.token_hex(24)
    write_private(path, value + "\n")
    return value, True


def ensure_admin_password(settings: Settings) -> str:
    return _ensure_password(settings, ADMIN_USER)[0]


def controller_password(settings: Settings) -> str:
    """The broker principal's PLAIN password on the controller listener."""
    return _ensure_password(settings, "controller")[0]


def ca_file(settings: Settings) -> Path:
    return settings.secrets_path / "ca.pem"


def principal_settings_file(settings: Settings, user: str) -> Path:
    return settings.secrets_path / f"{user}.yaml"


def _write_principal_settings(settings: Settings, user: str, extra: dict[str, Any]) -> Path:
    """A settings file (paths only, no secret) that makes an ``ssa`` command act as ``user``."""
    values = {
        "kafka_bootstrap": settings.kafka_bootstrap,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": MECHANISM,
        "kafka_sasl_username": user,
        "kafka_sasl_password_file": str(password_file(settings, user)),
        "kafka_ssl_cafile": str(ca_file(settings)),
        **extra,
    }
    path = principal_settings_file(settings, user)
    write_private(path, yaml.safe_dump(values, sort_keys=False))
    return path


def write_admin_settings(settings: Settings) -> Path:
    return _write_principal_settings(settings, ADMIN_USER, {})


# --- TLS: a local CA and the broker's keystore, made with the JDK's keytool ------------------
SAN: Final = "SAN=ip:127.0.0.1,dns:localhost"


def _keytool(*args: str) -> None:
    tool = shutil.which("keytool")
    if tool is None:
        raise SecureError("keytool (from a JDK) is not on PATH: secure mode makes its certificates with it")
    run = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        detail = (run.stderr or run.stdout).strip().splitlines()
        raise SecureError(f"keytool {args[0]} failed: {detail[-1] if detail else run.returncode}")


def ensure_tls(settings: Settings) -> dict[str, Path]:
    """Create once (idempotent) the CA, its PEM certificate for clients and the broker keystore.

    The recipe is the JDK keytool one of the Kafka documentation ("Encryption and Authentication
    using SSL"): a self-signed CA (``bc:c``), a broker key pair, a CSR signed by the CA with the
    broker's SAN, then CA and signed certificate imported into the broker's PKCS12 keystore.
    Store passwords are read from a 0600 file (``-storepass:file``), never a command line.
    """
    d = _private_dir(settings.secrets_path)
    tls = {
        "ca_keystore": d / "ca.p12",
        "ca_pem": d / "ca.pem",
        "keystore": d / "broker.p12",
        "keystore_password": d / "keystore.password",
    }
    if all(p.exists() for p in tls.values()):
        return tls
    for p in tls.values():
        p.unlink(missing_ok=True)
    write_private(tls["keystore_password"], secrets.token_hex(24))
    pw = str(tls["keystore_password"])
    store = ("-storetype", "PKCS12", "-storepass:file", pw)
    csr, crt = d / "broker.csr", d / "broker.crt"
    _keytool("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "3072",
             "-dname", "CN=ssa local CA", "-validity", "3650", "-ext", "bc:c",
             "-ext", "KeyUsage:c=keyCertSign,cRLSign", "-keystore", str(tls["ca_keystore"]), *store)  # fmt: skip
    _keytool("-exportcert", "-rfc", "-alias", "ca", "-keystore", str(tls["ca_keystore"]), *store,
             "-file", str(tls["ca_pem"]))  # fmt: skip
    _keytool("-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
             "-dname", "CN=ssa-broker", "-validity", "825", "-ext", SAN,
             "-keystore", str(tls["keystore"]), *store)  # fmt: skip
    _keytool("-certreq", "-alias", "broker", "-keystore", str(tls["keystore"]), *store, "-file", str(csr))
    _keytool("-gencert", "-alias", "ca", "-keystore", str(tls["ca_keystore"]), *store, "-rfc",
             "-infile", str(csr), "-outfile", str(crt), "-validity", "825", "-ext", SAN,
             "-ext", "KeyUsage:c=digitalSignature,keyEncipherment",
             "-ext", "ExtendedKeyUsage=serverAuth,clientAuth")  # fmt: skip
    _keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(tls["ca_pem"]),
             "-keystore", str(tls["keystore"]), *store)  # fmt: skip
    _keytool("-importcert", "-noprompt", "-alias", "broker", "-file", str(crt),
             "-keystore", str(tls["keystore"]), *store)  # fmt: skip
    csr.unlink(missing_ok=True)
    crt.unlink(missing_ok=True)
    for p in tls.values():
        p.chmod(0o600)
    return tls


# --- the broker -----------------------------------------------------------------------------
def broker_properties(settings: Settings, host: str, controller_password: str) -> dict[str, str]:
    """The secure part of ``server.properties`` (replaces the plain listeners)."""
    tls = ensure_tls(settings)
    admin_pw = ensure_admin_password(settings)
    keystore_pw = tls["keystore_password"].read_text(encoding="utf-8").strip()
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return {
        "listeners": f"SASL_SSL://{host}:{settings.kafka_port},CONTROLLER://{host}:{settings.kafka_controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{settings.kafka_port}",
        "listener.security.protocol.map": "CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            f'{scram} required username="{ADMIN_USER}" password="{admin_pw}";'
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": (
            f'{plain} required username="{ADMIN_USER}" password="{controller_password}" '
            f'user_{ADMIN_USER}="{controller_password}";'
        ),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(tls["keystore"]),
        "ssl.keystore.password": keystore_pw,
        "ssl.key.password": keystore_pw,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls["ca_pem"]),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.client.auth": "none",
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN_USER}",
        "allow.everyone.if.no.acl.found": "false",
        # A session re-authenticates every 10 min (KIP-368): a revoked or changed credential
        # stops working on open connections too, not only on new ones. ACLs apply at once.
        "connections.max.reauth.ms": "600000",
    }


def format_scram_args(settings: Settings) -> list[str]:
    """``StorageTool format`` arguments that store the admin's SCRAM credential (KIP-900)."""
    return ["--add-scram", f"{MECHANISM}=[name={ADMIN_USER},password={ensure_admin_password(settings)}]"]


def admin_settings(settings: Settings) -> Settings:
    """Settings that act as the Kafka admin: the operator's own when they name a SASL principal,
    else the local secure broker's ``ssa-admin``."""
    if settings.kafka_security_protocol.upper() != "PLAINTEXT" and settings.kafka_sasl_username:
        return settings
    if not password_file(settings, ADMIN_USER).exists() or not ca_file(settings).exists():
        raise SecureError(
            f"Kafka is not in secure mode: no admin credentials in {settings.secrets_path}; "
            "run `ssa up --secure`, or name an admin principal in kafka_sasl_* settings"
        )
    return settings.with_overrides(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=MECHANISM,
        kafka_sasl_username=ADMIN_USER,
        kafka_sasl_password_file=str(password_file(settings, ADMIN_USER)),
        kafka_ssl_cafile=str(ca_file(settings)),
    )


# --- ACLs -----------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class AclRule:
    principal: str  # user name, without "User:"
    resource: str  # TOPIC or GROUP
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, DESCRIBE
    host: str = "*"  # the plan's rules hold for any host; a broker's may name one
    permission: str = "ALLOW"  # the plan only allows; DENY rules on a broker are an operator's


def _topic_acls(
    user: str,
    tenant: str,
    ops: Iterable[str],
    prefix: str,
    provider: Iterable[str],
    literal: Iterable[str] = (),
) -> Iterator[AclRule]:
    """PREFIXED on a tenant's ``prefix`` (and LITERAL on ``literal``); the provider's topics, which
    share no prefix with a tenant's, are named one by one (``provider``)."""
    provider, literal = list(provider), list(literal)
    for op in ops:
        if tenant == PROVIDER:
            yield from (AclRule(user, "TOPIC", topic, "LITERAL", op) for topic in provider)
        else:
            yield AclRule(user, "TOPIC", prefix, "PREFIXED", op)
            yield from (AclRule(user, "TOPIC", topic, "LITERAL", op) for topic in literal)


def _topic_rules(user: str, tenant: str, ops: Iterable[str]) -> Iterator[AclRule]:
    """A tenant's telemetry topics and its DLQ."""
    return _topic_acls(
        user, tenant, ops, tenant_prefix(tenant), tenant_topics(PROVIDER), [tenant_dlq(tenant)]
    )


def _raw_rules(user: str, tenant: str, ops: Iterable[str]) -> Iterator[AclRule]:
    return _topic_acls(user, tenant, ops, tenant_raw_prefix(tenant), tenant_raw_topics(PROVIDER))


def _telemetry_rules(user: str, tenant: str, ops: Iterable[str]) -> Iterator[AclRule]:
    """A tenant's telemetry topics, not its DLQ."""
    return _topic_acls(user, tenant, ops, tenant_prefix(tenant), tenant_telemetry_topics(PROVIDER).values())


def acl_plan(settings: Settings, tenant: str) -> list[AclRule]:
    """The ACLs of one tenant (or ``PROVIDER``): its feeder's (telemetry, DLQ and raw topics), the
    job's read of its telemetry, and the parse stage's read of its raw topics and write of its
    telemetry (the stage writes each raw topic's events to its tenant's topics)."""
    feeder = feeder_user(tenant)
    return [
        *_topic_rules(feeder, tenant, ("WRITE", "DESCRIBE")),
        *_raw_rules(feeder, tenant, ("WRITE", "DESCRIBE")),
        *_topic_rules(JOB_USER, tenant, ("READ",)),
        *_raw_rules(PARSE_USER, tenant, ("READ", "DESCRIBE")),
        *_telemetry_rules(PARSE_USER, tenant, ("WRITE", "DESCRIBE")),
    ]


def shared_outputs(settings: Settings) -> list[str]:
    telemetry = set(settings.telemetry_topics.values())
    return [t for t in settings.all_topics if t not in telemetry]


def job_plan(settings: Settings) -> list[AclRule]:
    """The job's (and its indexer thread's) own ACLs beside the per-tenant reads."""
    rules = [
        AclRule(JOB_USER, "TOPIC", topic, "LITERAL", op)
        for topic in shared_outputs(settings)
        for op in ("READ", "WRITE")
    ]
    rules += [
        AclRule(JOB_USER, "GROUP", group, "LITERAL", "READ")
        for group in (settings.detect_group_id, settings.indexer_group_id)
    ]
    return rules


def parse_plan(settings: Settings) -> list[AclRule]:
    """The parse stage's own ACLs (``ssa parse`` as ``ssa-parse``, streams.parse_stage) beside its
    per-tenant ones (``acl_plan``: each tenant's raw topics read, its telemetry written): write the
    shared DLQ and the metrics, read and write its state topic, read its consumer group, and its
    Kafka transactions: WRITE and DESCRIBE on its transactional id (the setting, else every id
    prefixed by the group, the default ``<group>-<host name>``). No shared raw or telemetry topic:
    in secure mode the job reads only the tenants' topics. The topics are the admin's to create."""
    outputs = [settings.topic_dlq, settings.topic_metrics]
    rules = [AclRule(PARSE_USER, "TOPIC", t, "LITERAL", op) for t in outputs for op in ("WRITE", "DESCRIBE")]
    rules += [
        AclRule(PARSE_USER, "TOPIC", settings.topic_parse_state, "LITERAL", op)
        for op in ("READ", "WRITE", "DESCRIBE")
    ]
    rules.append(AclRule(PARSE_USER, "GROUP", settings.parse_group_id, "LITERAL", "READ"))
    txn, pattern = (settings.parse_transactional_id, "LITERAL") if settings.parse_transactional_id else (
        settings.parse_group_id, "PREFIXED")  # fmt: skip
    rules += [AclRule(PARSE_USER, "TRANSACTIONAL_ID", txn, pattern, op) for op in ("WRITE", "DESCRIBE")]
    return rules


def _binding(rule: AclRule) -> Any:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBinding(
        ResourceType[rule.resource], rule.name, ResourcePatternType[rule.pattern], f"User:{rule.principal}",
        rule.host, AclOperation[rule.operation], AclPermissionType[rule.permission],
    )  # fmt: skip


def _rule_of(binding: Any) -> AclRule:
    """An ACL the broker holds, as a rule (a principal of another type keeps its prefix)."""
    principal = str(binding.principal)
    return AclRule(
        principal.removeprefix("User:") if principal.startswith("User:") else principal,
        binding.restype.name, binding.name, binding.resource_pattern_type.name, binding.operation.name,
        binding.host, binding.permission_type.name,
    )  # fmt: skip


# --- the plan against what a broker holds ----------------------------------------------------
def full_plan(settings: Settings, tenants: Iterable[str]) -> list[AclRule]:
    """Every ACL provisioning gives: the job's, the parse stage's, the provider's and each tenant's."""
    rules = [*job_plan(settings), *parse_plan(settings)]
    for tenant in [PROVIDER, *tenants]:
        rules += acl_plan(settings, tenant)
    return rules


def owned_principals(tenants: Iterable[str]) -> set[str]:
    """The principals provisioning owns for these tenants: only their ACLs may it remove."""
    return {JOB_USER, PARSE_USER, feeder_user(PROVIDER), *(feeder_user(t) for t in tenants)}


def provisioned_tenants(existing: Iterable[AclRule]) -> set[str]:
    """The tenants whose feeder holds ACLs on the broker (provisioned and not revoked)."""
    head = feeder_user("")
    ids = {r.principal[len(head) :] for r in existing if r.principal.startswith(head)}
    return {t for t in ids if t != PROVIDER and _TOPIC_SAFE.match(t)}


def stale_acls(existing: Iterable[AclRule], wanted: Iterable[AclRule], owned: Iterable[str]) -> list[AclRule]:
    """The ALLOW rules of ``owned`` principals that ``wanted`` does not hold: what an older version
    (the parse stage's shared raw and telemetry topics before per-tenant raw topics), a changed
    setting (a topic or group name) or a hand left behind. DENY rules only take away: an
    operator's, never removed."""
    want, mine = set(wanted), set(owned)
    return sorted({r for r in existing if r.principal in mine and r.permission == "ALLOW" and r not in want})


def describe_rule(rule: AclRule) -> str:
    where = "" if rule.host == "*" else f" from host {rule.host}"
    return f"{rule.principal} {rule.operation} {rule.resource.lower()} {rule.name} ({rule.pattern}){where}"


# --- provisioning ---------------------------------------------------------------------------
def _admin_client(settings: Settings) -> Any:
    from confluent_kafka.admin import AdminClient

    from infra.clients import kafka_config

    conf = kafka_config(admin_settings(settings), "confluent")
    conf["logger"] = quiet_kafka_logger()
    return AdminClient(conf)


def quiet_kafka_logger() -> Any:
    """The logger handed to librdkafka clients: its own lines would print each refusal and
    retry; the commands say what matters in one line."""
    import logging

    log = logging.getLogger("ssa.kafka.admin")
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


def _wait(futures: dict[Any, Any], ignore: tuple[str, ...] = ()) -> None:
    for key, fut in futures.items():
        try:
            fut.result(timeout=30)
        except Exception as exc:
            err = exc.args[0] if exc.args else exc
            name = getattr(err, "name", lambda: "")()
            if name in ignore:
                continue
            detail = err.str() if hasattr(err, "str") else str(exc)
            raise SecureError(f"Kafka refused {key}: {detail}") from None


def _upsert_scram(admin: Any, user: str, password: str) -> None:
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    _wait(admin.alter_user_scram_credentials([UserScramCredentialUpsertion(user, info, password.encode())]))


def _create_topics(admin: Any, settings: Settings, topics: list[str]) -> list[str]:
    from confluent_kafka.admin import NewTopic

    existing = set(admin.list_topics(timeout=15).topics)
    missing = [t for t in topics if t not in existing]
    if missing:
        from infra.bootstrap import topic_configs

        new = [NewTopic(t, settings.kafka_partitions, settings.kafka_replication_factor,
                        config=topic_configs(settings, t)) for t in missing]  # fmt: skip
        _wait(admin.create_topics(new, operation_timeout=15), ignore=("TOPIC_ALREADY_EXISTS",))
    return missing


def _create_acls(admin: Any, rules: list[AclRule]) -> None:
    if rules:  # creating an ACL that exists is a no-op on the broker: idempotent
        _wait(admin.create_acls([_binding(r) for r in rules]))


def _detail(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else exc
    return str(err.str()) if hasattr(err, "str") else str(exc)


def broker_acls(admin: Any) -> list[AclRule]:
    """Every ACL the broker holds (as the admin)."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    anything: Any = None  # a filter's None matches any name, principal and host
    everything = AclBindingFilter(ResourceType.ANY, anything, ResourcePatternType.ANY, anything, anything,
                                  AclOperation.ANY, AclPermissionType.ANY)  # fmt: skip
    try:
        return [_rule_of(b) for b in admin.describe_acls(everything, request_timeout=30).result(timeout=60)]
    except Exception as exc:
        raise SecureError(f"Kafka refused to list its ACLs: {_detail(exc)}") from None


def _delete_acls(admin: Any, rules: list[AclRule]) -> int:
    """Delete exactly these rules (one exact filter each); how many the broker removed."""
    if not rules:
        return 0
    from confluent_kafka.admin import AclBindingFilter

    def exact(rule: AclRule) -> Any:  # the rule's own binding, as a filter that matches only it
        b = _binding(rule)
        return AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                                b.permission_type)  # fmt: skip

    filters = [exact(r) for r in rules]
    removed = 0
    for key, fut in admin.delete_acls(filters, request_timeout=30).items():
        try:
            removed += len(fut.result(timeout=60))
        except Exception as exc:
            raise SecureError(f"Kafka refused to delete ACL {key}: {_detail(exc)}") from None
    return removed


def _applied_acls(admin: Any, created: list[AclRule], timeout_s: float = 30.0) -> list[AclRule]:
    """The broker's ACLs once it holds every rule of ``created``. CreateAcls answers when the
    controller has committed them; the broker applies them a moment later (a loaded machine: a
    feeder's first write right after provisioning was refused), and DescribeAcls is answered from
    the broker's authorizer, so waiting for it makes ``provision`` return with its rules in force."""
    deadline = time.monotonic() + timeout_s
    while True:
        existing = broker_acls(admin)
        missing = set(created) - set(existing)
        if not missing:
            return existing
        if time.monotonic() > deadline:
            raise SecureError(
                f"Kafka did not apply {len(missing)} ACLs within {timeout_s:.0f} s of creating them, "
                f"e.g. {describe_rule(min(missing))}"
            )
        time.sleep(0.2)


def _remove_stale(
    admin: Any, settings: Settings, tenants: list[str], say: Callable[[str], None]
) -> list[AclRule]:
    """Remove the ACLs of the principals provisioning owns that the plan does not hold, and say so.
    Tenants provisioned earlier that are not among ``tenants`` keep theirs (and the job's and the
    stage's access to their topics): removing a tenant is ``revoke``'s, not a side effect."""
    existing = _applied_acls(admin, full_plan(settings, tenants))
    others = sorted(provisioned_tenants(existing) - set(tenants))
    owned = owned_principals(tenants)
    stale = stale_acls(existing, full_plan(settings, [*tenants, *others]), owned)
    removed = _delete_acls(admin, stale)
    if stale:
        say(
            f"stale ACLs: removed {removed} the plan no longer grants: {'; '.join(map(describe_rule, stale))}"
        )
    else:
        say("stale ACLs: none (every ALLOW ACL of the provisioned principals is in the plan)")
    denied = [r for r in existing if r.principal in owned and r.permission != "ALLOW"]
    if denied:
        say(f"kept {len(denied)} DENY ACLs (an operator's): {'; '.join(map(describe_rule, denied))}")
    if others:
        say(
            f"tenants on the broker but not in this registry, access kept: {', '.join(others)} "
            "(`ssa tenants revoke TENANT` removes one)"
        )
    return stale


def provision(
    settings: Settings,
    tenants: Iterable[str],
    say: Callable[[str], None] = print,
    raw_formats: Iterable[str] = (),
) -> list[str]:
    """Idempotently provision the job, the parse stage, the provider feeder and each tenant (its
    raw topics of ``raw_formats``, format names: ``ssa tenants provision`` gives every format);
    one line per principal, never a secret; then remove the ALLOW ACLs of these principals that
    the plan no longer holds (``stale_acls``), in one more line. Returns the tenants provisioned."""
    raw_formats = list(raw_formats)
    tenants = list(tenants)
    for tenant in tenants:
        check_tenant_id(tenant)
    admin = _admin_client(settings)
    job_pw, _ = _ensure_password(settings, JOB_USER)
    _upsert_scram(admin, JOB_USER, job_pw)
    _create_acls(admin, job_plan(settings))
    # tenant_topics: the job reads every tenant's topics by pattern and takes the tenant from the topic;
    # its alert ids are keyed, so no tenant can confirm a guess about the other side of an alert.
    key = str(ensure_alert_id_key(settings))
    _write_principal_settings(settings, JOB_USER, {"tenant_topics": True, "alert_id_key_file": key})
    say(f"{JOB_USER}: reads every provisioned tenant's topics, writes {', '.join(shared_outputs(settings))}")
    parse_pw, _ = _ensure_password(settings, PARSE_USER)
    _upsert_scram(admin, PARSE_USER, parse_pw)
    _create_topics(admin, settings, [settings.topic_dlq, settings.topic_metrics, settings.topic_parse_state])
    _create_acls(admin, parse_plan(settings))
    # tenant_topics: the stage reads every tenant's raw topics by pattern and writes each record's
    # events to its raw topic's tenant's telemetry topics.
    _write_principal_settings(settings, PARSE_USER, {"tenant_topics": True})
    say(
        f"{PARSE_USER}: reads every provisioned tenant's {tenant_raw_prefix('<tenant>')}*, writes its "
        f"{tenant_prefix('<tenant>')}* (transactions)"
    )
    for tenant in [PROVIDER, *tenants]:
        user = feeder_user(tenant)
        password, new = _ensure_password(settings, user)
        _upsert_scram(admin, user, password)
        topics = [*tenant_topics(tenant), *tenant_raw_topics(tenant, raw_formats)]
        created = _create_topics(admin, settings, topics)
        _create_acls(admin, acl_plan(settings, tenant))
        conf = _write_principal_settings(
            settings, user, {"topic_prefix": tenant_prefix(tenant), "topic_dlq": tenant_dlq(tenant),
                             "topic_raw_prefix": tenant_raw_prefix(tenant)},
        )  # fmt: skip
        say(
            f"{tenant}: user {user} ({'new' if new else 'kept'} password), "
            f"{len(created)} new of {len(topics)} topics {tenant_prefix(tenant)}*, "
            f"{tenant_raw_prefix(tenant)}*, settings {conf}"
        )
    # Last, once every rule of the plan exists: no moment without an ACL the plan keeps.
    _remove_stale(admin, settings, tenants, say)
    return tenants


def _acl_filter(principal: str, resource: str, name: str | None, pattern: str) -> Any:
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    # None matches any name and any host (the stubs type them as str only).
    anything: Any = None
    return AclBindingFilter(
        ResourceType[resource], name if name is not None else anything, ResourcePatternType[pattern],
        f"User:{principal}", anything, AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip


def revoke(
    settings: Settings, tenant: str, delete_topics: bool = False, say: Callable[[str], None] = print
) -> None:
    """Delete the tenant's feeder (credential, ACLs, files), the job's and the parse stage's access
    to its topics, and with ``delete_topics`` its topics (raw topics of any format included)."""
    if tenant != PROVIDER:
        check_tenant_id(tenant)
    admin = _admin_client(settings)
    user = feeder_user(tenant)
    filters = [_acl_filter(user, "ANY", None, "ANY")]
    others = {
        (r.principal, r.resource, r.name, r.pattern)
        for r in acl_plan(settings, tenant)
        if r.principal != user
    }
    filters += [_acl_filter(*key) for key in sorted(others)]  # one filter each: every operation
    removed = 0
    for fut in admin.delete_acls(filters, request_timeout=30).values():
        removed += len(fut.result(timeout=30))
    from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion

    _wait(
        admin.alter_user_scram_credentials([UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)]),
        ignore=("RESOURCE_NOT_FOUND",),
    )
    deleted: list[str] = []
    if delete_topics:
        existing = set(admin.list_topics(timeout=15).topics)
        raw = tenant_raw_prefix(tenant)
        ours = set(tenant_topics(tenant)) | set(tenant_raw_topics(tenant))
        deleted = sorted(t for t in existing if t in ours or (tenant != PROVIDER and t.startswith(raw)))
        if deleted:
            _wait(admin.delete_topics(deleted, operation_timeout=30), ignore=("UNKNOWN_TOPIC_OR_PART",))
    password_file(settings, user).unlink(missing_ok=True)
    principal_settings_file(settings, user).unlink(missing_ok=True)
    kept = "" if delete_topics else ", topics kept (--delete-topics removes them)"
    say(f"{tenant}: user {user} removed, {removed} ACLs removed, {len(deleted)} topics deleted{kept}")


# --- errors in one line ---------------------------------------------------------------------
_AUTHN: Final = re.compile(
    r"_AUTHENTICATION|SASL authentication error|Authentication failed|SaslAuthenticationFailed|"
    r"AuthenticationFailedError|Authentication failure",
    re.IGNORECASE,
)
_KAFKA_MODULES: Final = ("kafka", "confluent_kafka", "cimpl", "ingest.producer", "infra.secure")
_UNREACHABLE: Final = re.compile(
    r"unreachable|_TRANSPORT|transport failure|NoBrokersAvailable|timed out", re.I
)
_AUTHZ: Final = re.compile(
    r"TOPIC_AUTHORIZATION_FAILED|Topic authorization failed|TopicAuthorizationFailed", re.I
)
_GROUP_AUTHZ: Final = re.compile(
    r"GROUP_AUTHORIZATION_FAILED|Group authorization failed|GroupAuthorizationFailed", re.I
)


def explain_kafka_error(exc: BaseException, settings: Settings | None) -> str | None:
    """One line for a refused login or a refused topic, in our words; None for anything else."""
    text = f"{type(exc).__name__}: {exc}"
    if settings is None or not type(exc).__module__.startswith(_KAFKA_MODULES):
        return None
    user = settings.kafka_sasl_username or "(none)"
    sasl = settings.kafka_security_protocol.upper().startswith("SASL")
    # librdkafka reports a refused login to its error callback only; the exception a client
    # finally raises reads "transport failure", so an unreachable SASL broker is asked once more.
    if _AUTHN.search(text) or (sasl and _UNREACHABLE.search(text) and login_refused(settings)):
        return f"authentication failed for user {user} at {settings.kafka_bootstrap}"
    if _AUTHZ.search(text):
        topics = refused_topics(settings)
        named = ", ".join(topics) if topics else f"{settings.topic_prefix}*"
        plural = "s" if len(topics) > 1 else ""
        return f"user {user} is not allowed to write topic{plural} {named}"
    if _GROUP_AUTHZ.search(text):
        return f"user {user} is not allowed to use consumer group {settings.detect_group_id}"
    return None


def login_refused(settings: Settings, timeout_s: float = 5.0) -> bool:
    """Whether the broker refuses this principal's SASL login (a probe: only on the error path)."""
    try:
        from confluent_kafka import Producer

        from infra.clients import kafka_config

        errors: list[Any] = []
        conf = kafka_config(settings, "confluent")
        producer = Producer({**conf, "logger": quiet_kafka_logger(), "error_cb": errors.append})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            producer.poll(0.1)
            if any(e.name() == "_AUTHENTICATION" for e in errors):
                return True
            if errors and all(e.name() == "_ALL_BROKERS_DOWN" for e in errors):
                return False
        return False
    except Exception:  # the explanation must never hide the error it explains
        return False


def refused_topics(settings: Settings, timeout_s: float = 5.0) -> list[str]:
    """Which of the settings' telemetry and DLQ topics this principal may not write (a metadata
    request per topic: only on the error path)."""
    try:
        from confluent_kafka import Producer

        from infra.clients import kafka_config

        conf = kafka_config(settings, "confluent")
        conf["logger"] = quiet_kafka_logger()
        producer = Producer(conf)
        refused = []
        for topic in [*settings.telemetry_topics.values(), settings.topic_dlq]:
            meta = producer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if meta is not None and meta.error is not None and "AUTHORIZATION" in meta.error.name():
                refused.append(topic)
        return refused
    except Exception:  # the explanation must never hide the error it explains
        return []
