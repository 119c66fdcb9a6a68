"""Who may import whom (DESIGN.md), checked on the source: a violation fails here, not in review.

``infra`` (settings, clients) is the leaf that the service-facing packages read their addresses
from; ``ingest`` stays free of it (callers hand it a ``KafkaTarget``), and ``detectors`` never
touches PyFlink, Kafka or Elasticsearch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from infra.settings import PROJECT_ROOT

PACKAGES = ("ingest", "detectors", "awareness", "streams", "dashboards", "analyst", "infra", "ssa")
ALLOWED = {
    "ingest": set(),
    "detectors": {"ingest"},
    "awareness": {"ingest", "detectors"},
    "streams": {"ingest", "detectors", "awareness", "infra"},
    "dashboards": {"detectors", "infra"},
    "analyst": {"detectors", "awareness", "infra"},
    "infra": set(),
    "ssa": {"ingest", "detectors", "awareness", "streams", "dashboards", "analyst", "infra"},
}
FORBIDDEN_LIBS = {
    "detectors": {"pyflink", "kafka", "confluent_kafka", "elasticsearch"},
    "awareness": {"pyflink", "kafka", "confluent_kafka", "elasticsearch"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_design_allows(package: str) -> None:
    bad = []
    for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
        imported = _imports(path)
        for other in (imported & set(PACKAGES)) - {package} - ALLOWED[package]:
            bad.append(f"{path.relative_to(PROJECT_ROOT)} imports {other}")
        for lib in imported & FORBIDDEN_LIBS.get(package, set()):
            bad.append(f"{path.relative_to(PROJECT_ROOT)} imports {lib}")
    assert not bad, bad


def test_nothing_imports_the_cli() -> None:
    for package in PACKAGES[:-1]:
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            assert "ssa" not in _imports(path), path
