"""Client configuration built from settings: the same code reaches the local stack or a secured
production cluster (Kafka SASL_SSL, Elasticsearch API key or basic auth with a CA file).

Secrets are read from the files the settings name, at the moment a client is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.settings import Settings, SettingsError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

__all__ = [
    "api_key_tenant",
    "encoded_es_api_key",
    "es_client",
    "kafka_config",
    "read_es_api_key",
    "read_secret",
]


def read_secret(path: str, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise SettingsError(f"{what}: {path} is empty")
    return value


def kafka_config(settings: Settings, flavour: str = "kafka-python") -> dict[str, Any]:
    """Connection and security options, named for kafka-python or for confluent-kafka (librdkafka)."""
    proto = settings.kafka_security_protocol.upper()
    if proto not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise SettingsError(f"kafka_security_protocol: unknown protocol {settings.kafka_security_protocol!r}")
    password = (
        read_secret(settings.kafka_sasl_password_file, "kafka_sasl_password_file")
        if proto.startswith("SASL") and settings.kafka_sasl_password_file
        else ""
    )
    if flavour == "confluent":
        conf: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap, "security.protocol": proto}
        if proto.startswith("SASL"):
            conf |= {
                "sasl.mechanism": settings.kafka_sasl_mechanism,
                "sasl.username": settings.kafka_sasl_username,
                "sasl.password": password,
            }
        if settings.kafka_ssl_cafile and proto.endswith("SSL"):
            conf["ssl.ca.location"] = settings.kafka_ssl_cafile
        return conf
    conf = {"bootstrap_servers": settings.kafka_bootstrap.split(","), "security_protocol": proto}
    if proto.startswith("SASL"):
        conf |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password,
        }
    if settings.kafka_ssl_cafile and proto.endswith("SSL"):
        conf["ssl_cafile"] = settings.kafka_ssl_cafile
    return conf


def read_es_api_key(path: str) -> tuple[str | tuple[str, str], str | None]:
    """An API key file: the key (``(id, api_key)`` or the base64 ``id:api_key``) and its tenant.

    ``ssa tenants provision`` writes YAML with ``id``, ``api_key`` and ``tenant``
    (``infra.es_security``); a file holding only the base64 value is an operator's key, no tenant.
    """
    import yaml

    text = read_secret(path, "es_api_key_file")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict):
        return text, None
    key_id, key, tenant = doc.get("id"), doc.get("api_key"), doc.get("tenant")
    if not isinstance(key_id, str) or not isinstance(key, str) or not key_id or not key:
        raise SettingsError(f"es_api_key_file: {path} has no 'id' and 'api_key'")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise SettingsError(f"es_api_key_file: {path} names no valid tenant")
    return (key_id, key), tenant


def encoded_es_api_key(path: str) -> str:
    """The ``Authorization: ApiKey`` value (base64 ``id:api_key``) of an API key file."""
    import base64

    key, _tenant = read_es_api_key(path)
    return base64.b64encode(f"{key[0]}:{key[1]}".encode()).decode() if isinstance(key, tuple) else key


def api_key_tenant(settings: Settings) -> str | None:
    """The tenant whose API key the settings name (the analyst's scope), or None."""
    return read_es_api_key(settings.es_api_key_file)[1] if settings.es_api_key_file else None


def es_client(settings: Settings, **kwargs: Any) -> Elasticsearch:
    from elasticsearch import Elasticsearch

    options: dict[str, Any] = {"request_timeout": 30, "retry_on_timeout": True, "max_retries": 3}
    if settings.es_api_key_file:
        options["api_key"] = read_es_api_key(settings.es_api_key_file)[0]
    elif settings.es_username:
        password = (
            read_secret(settings.es_password_file, "es_password_file") if settings.es_password_file else ""
        )
        options["basic_auth"] = (settings.es_username, password)
    if settings.es_ca_file:
        options["ca_certs"] = settings.es_ca_file
    options |= kwargs
    return Elasticsearch(settings.es_url, **options)
