"""Shared fixtures. ``stack`` brings up the real local Kafka and Elasticsearch once per session
(or reuses a healthy one), removes the topics and indices the session created, and stops at the
end only what it started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import Settings, load_settings
from tests.paths import SHARED_DATA


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings that point at an empty data folder (no tenant registry, no pid files)."""
    for name in ("SSA_SETTINGS_FILE", "SSA_REPORT_KEY", "SSA_REPORT_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("SSA_DATA_DIR", str(data))
    monkeypatch.setenv("SSA_TENANTS_FILE", str(data / "tenants.yaml"))
    monkeypatch.setenv("SSA_CHECKPOINT_DIR", str(data / "checkpoints"))
    return tmp_path


@pytest.fixture(autouse=True)
def _no_job_outlives_its_test() -> Iterator[None]:
    """A detect job a failed or timed-out test leaves running is killed (tests.integration.jobs)."""
    yield
    from tests.integration.jobs import stop_leftover_jobs

    if stopped := stop_leftover_jobs():
        print(f"[jobs] killed {stopped} detect job(s) the test left running")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    from infra.services import services, up
    from tests.integration.jobs import stop_leftover_jobs
    from tests.leftovers import Leftovers

    already = {svc.name for svc in services(settings) if svc.proc.pid() is not None}
    up(settings, progress=lambda msg: print(f"[stack] {msg}"))
    leftovers = Leftovers(settings)
    yield settings
    stop_leftover_jobs()
    print(f"[stack] {leftovers.remove()}")
    for svc in services(settings):
        if svc.name not in already:
            svc.proc.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA
