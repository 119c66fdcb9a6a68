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


def test_output_topics_made_before_are_stamped_on_append(stack: Settings) -> None:
    """An alerts topic made by an earlier version (the broker's CreateTime: the job's event time) is
    set to the broker's append time the next time the topics are ensured (``ssa up``, ``ssa detect``),
    so a replay's old alerts are not deleted before the indexer reads them. Other topics are left
    as they are."""
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    from infra.bootstrap import APPEND_TIME, ensure_topics
    from infra.clients import kafka_config

    run = uuid.uuid4().hex[:8]
    settings = stack.with_overrides(topic_alerts=f"test.stamp{run}.alerts", topic_prefix=f"test.stamp{run}.")
    admin = AdminClient(kafka_config(settings, "confluent"))
    raw = f"test.stamp{run}.raw.syslog"
    made = [
        NewTopic(t, 1, 1, config={"message.timestamp.type": "CreateTime"})
        for t in (settings.topic_alerts, raw)
    ]
    for future in admin.create_topics(made).values():
        future.result(timeout=30)

    def stamp(topic: str) -> str:
        (future,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
        return str(future.result(timeout=30)["message.timestamp.type"].value)

    assert stamp(settings.topic_alerts) == "CreateTime"
    ensure_topics(settings, [settings.topic_alerts, raw])
    assert stamp(settings.topic_alerts) == APPEND_TIME["message.timestamp.type"]
    assert stamp(raw) == "CreateTime"
