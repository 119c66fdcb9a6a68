"""A replay of an old capture stays in Kafka until the job reads it: telemetry records carry the
event time, and a topic that deletes by time would drop last year's records minutes after they
are written. The topics the project creates keep by size; on a topic that still deletes by time,
``ssa ingest`` names it in its warning."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from infra.settings import Settings
from ssa.cli import main

pytestmark = pytest.mark.integration

# An sshd log of 2017: its events are years older than any time limit.
_OLD_SSHD = "".join(
    f"Jul  5 09:00:{i:02d} web01 sshd[{4000 + i}]: Failed password for root from 198.51.100.7 port {50000 + i} ssh2\n"
    for i in range(20)
)


def _retention(settings: Settings, topic: str) -> tuple[str, str]:
    from confluent_kafka.admin import AdminClient, ConfigResource

    from infra.clients import kafka_config

    admin = AdminClient(kafka_config(settings, "confluent"))
    (future,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    entries = future.result(timeout=30)
    return entries["retention.ms"].value, entries["retention.bytes"].value


def test_old_events_are_kept_and_a_time_limited_topic_is_named(
    stack: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    from infra.bootstrap import ensure_topics
    from infra.clients import kafka_config

    prefix = f"ssa.replay{uuid.uuid4().hex[:8]}."
    settings = stack.with_overrides(topic_prefix=prefix)
    ensure_topics(settings, list(settings.telemetry_topics.values()))
    auth = settings.telemetry_topics["auth"]
    assert _retention(settings, auth) == ("-1", str(1 << 30))
    log = tmp_path / "auth.log"
    log.write_text(_OLD_SSHD)
    monkeypatch.setenv("SSA_TOPIC_PREFIX", prefix)
    argv = ["ingest", "--format", "sshd", "--year", "2017", str(log)]
    assert main(argv) == 0
    assert "warning" not in capsys.readouterr().err

    # A topic made elsewhere, with Kafka's default week: the warning names it and its limit.
    admin = AdminClient(kafka_config(settings, "confluent"))
    week = ConfigEntry("retention.ms", str(7 * 86_400_000), incremental_operation=AlterConfigOpType.SET)
    (done,) = admin.incremental_alter_configs(
        [ConfigResource("topic", auth, incremental_configs=[week])]
    ).values()
    done.result(timeout=30)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: 20 events are more than 7 days old" in err
    assert f"{auth} (7 days)" in err
