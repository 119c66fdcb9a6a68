"""The versions of the Kafka broker and Elasticsearch a benchmark talked to, asked from the running
services at run time, so a result file names what it measured rather than what we meant to run.

- Elasticsearch answers ``GET /`` with its ``version.number``.
- A Kafka broker never sends its release over the wire. Its ApiVersions answer (what any client
  gets on connecting) names the newest release line whose protocol versions it speaks, as far as
  kafka-python knows the lines, and the ``metadata.version`` feature levels it supports. The exact
  release is read, for the local stack only, from ``kafka/kafka-version.properties`` in the
  kafka-clients jar on the running broker's own class path (``/proc/<pid>/cmdline``): the file
  the broker reads its version from. The local stack logs at WARN, so its log has no startup
  "Kafka version" line to read instead.
"""

from __future__ import annotations

import zipfile
from itertools import pairwise
from pathlib import Path
from typing import Any

from infra.clients import es_client, kafka_config
from infra.settings import Settings

__all__ = [
    "classpath_of",
    "elasticsearch_version",
    "kafka_broker_version",
    "kafka_release_in_jars",
    "parse_properties",
    "service_versions",
]

_VERSION_FILE = "kafka/kafka-version.properties"


def parse_properties(text: str) -> dict[str, str]:
    """``key=value`` lines of a Java properties file (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def classpath_of(cmdline: list[str]) -> list[Path]:
    """The entries of a java command line's ``-cp``/``-classpath`` argument."""
    for flag, value in pairwise(cmdline):
        if flag in ("-cp", "-classpath", "--class-path"):
            return [Path(p) for p in value.split(":") if p]
    return []


def kafka_release_in_jars(jars: list[Path]) -> dict[str, str] | None:
    """The version file of the first kafka-clients jar among ``jars``, with the jar's name."""
    for jar in jars:
        if jar.name.startswith("kafka-clients") and jar.suffix == ".jar" and jar.is_file():
            with zipfile.ZipFile(jar) as zf:
                if _VERSION_FILE in zf.namelist():
                    return {**parse_properties(zf.read(_VERSION_FILE).decode()), "jar": jar.name}
    return None


def _local_broker_release(settings: Settings) -> dict[str, Any]:
    from infra.services import services

    kafka = next((svc for svc in services(settings) if svc.name == "kafka"), None)
    pid = kafka.proc.pid() if kafka else None
    if pid is None:
        return {"release": None, "release_source": "no local broker process: release not known"}
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    found = kafka_release_in_jars(classpath_of(cmdline))
    if found is None:
        return {"release": None, "release_source": f"no {_VERSION_FILE} on broker pid {pid}'s class path"}
    return {
        "release": found.get("version"),
        "commit_id": found.get("commitId"),
        "release_source": f"{_VERSION_FILE} in {found['jar']} on the running broker's class path (pid {pid})",
    }


def _kafka_python() -> str:
    from importlib.metadata import version

    return version("kafka-python")


def kafka_broker_version(settings: Settings) -> dict[str, Any]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_config(settings))
    try:
        brokers = admin.describe_cluster()["brokers"]
        line = admin.get_broker_version_data(brokers[0]["broker_id"]).broker_version
        features = admin.describe_features()
    finally:
        admin.close()
    metadata = features.get("metadata.version", {})
    out: dict[str, Any] = {
        "bootstrap": settings.kafka_bootstrap,
        "brokers": len(brokers),
        "release_line_from_api_versions": ".".join(str(p) for p in line),
        "release_line_source": f"ApiVersions answer, matched by kafka-python {_kafka_python()}",
        "metadata_version_levels_supported": list(metadata.get("supported", ())),
        "metadata_version_level_finalized": (metadata.get("finalized") or (None, None))[1],
    }
    if settings.kafka_bootstrap.split(",")[0].startswith(("127.0.0.1:", "localhost:")):
        out |= _local_broker_release(settings)
    return out


def elasticsearch_version(settings: Settings) -> dict[str, Any]:
    es = es_client(settings)
    try:
        info = es.info()
    finally:
        es.close()
    version = info["version"]
    return {
        "url": settings.es_url,
        "version": version["number"],
        "build_flavor": version.get("build_flavor"),
        "lucene_version": version.get("lucene_version"),
        "source": "GET / version.number",
    }


def service_versions(settings: Settings) -> dict[str, Any]:
    """Both services' versions; a service that cannot be asked says why instead."""
    out: dict[str, Any] = {}
    for key, ask in (("kafka_broker", kafka_broker_version), ("elasticsearch_server", elasticsearch_version)):
        try:
            out[key] = ask(settings)
        except Exception as exc:  # a bench still reports its figures when a version cannot be read
            out[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
