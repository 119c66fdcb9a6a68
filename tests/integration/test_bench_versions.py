"""The bench asks the running services for their versions (``tests.bench.versions``): what the
broker says over the wire and what its own class path says must agree."""

from __future__ import annotations

import re

import pytest

from infra.settings import Settings
from tests.bench.versions import service_versions

pytestmark = pytest.mark.integration


def test_versions_asked_from_the_running_services(stack: Settings) -> None:
    versions = service_versions(stack)
    kafka, es = versions["kafka_broker"], versions["elasticsearch_server"]
    assert "error" not in kafka and "error" not in es, versions
    assert re.fullmatch(r"\d+\.\d+\.\d+", es["version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", kafka["release"])
    # The release line matched from the ApiVersions answer is the class path's major.minor.
    assert kafka["release"].startswith(kafka["release_line_from_api_versions"] + ".")
    low, high = kafka["metadata_version_levels_supported"]
    assert low <= kafka["metadata_version_level_finalized"] <= high
