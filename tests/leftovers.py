"""The throwaway topics, indices, consumer groups and run folders a test session or a benchmark run
creates, removed at its end.

Every run writes to topics and indices of its own (so runs never read each other's data). Kept,
they pile up on a developer's stack: a broker holding ~1,600 partitions took ~38 s to restart,
longer than the job's idle timeout, and failed the broker-restart fault test; Elasticsearch
refuses new indices past 1,000 shards per node. Only names with a throwaway prefix that did not
exist when the run started are removed, so a developer's own demo runs stay. A run's consumer
groups (``ssa-detect-<run>``, ``ssa-indexer-<run>``), indices (``<prefix>run-<run>-<day>``, see
``streams.demo.run_index_prefix``) and folder (``<data_dir>/runs/<run>``) go with its
``ssa.run.<run>.*`` topics; the tests' and benchmarks' own groups (``test-``, ``bench-``) too.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Final

from infra.clients import es_client, kafka_config
from infra.settings import Settings
from streams.demo import run_index_prefix

__all__ = [
    "GROUP_PREFIXES",
    "INDEX_PREFIXES",
    "TOPIC_PREFIXES",
    "Leftovers",
    "consumer_groups",
    "is_throwaway_index",
    "run_ids",
]

TOPIC_PREFIXES: Final = ("test.", "ssa.run.", "bench.")
INDEX_PREFIXES: Final = ("ssa-test-", "test-", "ssa-bench-", "bench-")
GROUP_PREFIXES: Final = ("test-", "bench-")
RUN_TOPIC_PREFIX: Final = "ssa.run."
RUN_GROUP_PREFIXES: Final = ("ssa-detect-", "ssa-indexer-")
_INDICES_PER_REQUEST: Final = 50  # keeps the DELETE URL short


def _topics(settings: Settings) -> set[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(settings, "confluent"))
    return set(admin.list_topics(timeout=15).topics)


def _indices(settings: Settings) -> set[str]:
    es = es_client(settings)
    try:
        return set(es.indices.get(index="*", expand_wildcards="open,closed"))
    finally:
        es.close()


def consumer_groups(settings: Settings) -> set[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(settings, "confluent"))
    listing = admin.list_consumer_groups(request_timeout=15).result(30)
    return {group.group_id for group in listing.valid}


def _run_folders(settings: Settings) -> set[str]:
    runs = settings.data_path / "runs"
    return {p.name for p in runs.iterdir() if p.is_dir()} if runs.is_dir() else set()


def run_ids(topics: list[str]) -> set[str]:
    """The run ids named by ``ssa.run.<run>.*`` topics."""
    named = (t.removeprefix(RUN_TOPIC_PREFIX) for t in topics if t.startswith(RUN_TOPIC_PREFIX))
    return {name.split(".", 1)[0] for name in named} - {""}


def is_throwaway_index(index: str, runs: set[str]) -> bool:
    """A test's or benchmark's own index, or one of the ``runs``' (``ssa-alerts-run-<run>-<day>``)."""
    return index.startswith(INDEX_PREFIXES) or any(run_index_prefix("", run) in index for run in runs)


class Leftovers:
    """Notes what exists now; ``remove`` deletes the throwaway things added since."""

    def __init__(self, settings: Settings, group_wait_s: float = 60.0) -> None:
        self.settings = settings
        self.group_wait_s = group_wait_s
        self.topics_before = _topics(settings)
        self.indices_before = _indices(settings)
        self.groups_before = consumer_groups(settings)
        self.folders_before = _run_folders(settings)

    def new_topics(self) -> list[str]:
        added = _topics(self.settings) - self.topics_before
        return sorted(t for t in added if t.startswith(TOPIC_PREFIXES))

    def new_indices(self, runs: set[str]) -> list[str]:
        added = _indices(self.settings) - self.indices_before
        return sorted(i for i in added if is_throwaway_index(i, runs))

    def new_groups(self, runs: set[str]) -> list[str]:
        """Groups added since that are the tests' or benchmarks' own, or jobs' of the ``runs``."""
        added = consumer_groups(self.settings) - self.groups_before
        of_runs = {prefix + run for prefix in RUN_GROUP_PREFIXES for run in runs}
        return sorted(g for g in added if g.startswith(GROUP_PREFIXES) or g in of_runs)

    def new_folders(self, runs: set[str]) -> list[Path]:
        added = _run_folders(self.settings) - self.folders_before
        return [self.settings.data_path / "runs" / name for name in sorted(added & runs)]

    def remove(self) -> str:
        """Delete them; returns one line saying what was removed or what could not be."""
        try:
            topics = self.new_topics()
            runs = run_ids(topics)
            indices, groups, folders = self.new_indices(runs), self.new_groups(runs), self.new_folders(runs)
            if topics:
                from confluent_kafka.admin import AdminClient

                admin = AdminClient(kafka_config(self.settings, "confluent"))
                for future in admin.delete_topics(topics, operation_timeout=30).values():
                    future.result(60)
            if indices:
                es = es_client(self.settings)
                try:
                    for start in range(0, len(indices), _INDICES_PER_REQUEST):
                        chunk = indices[start : start + _INDICES_PER_REQUEST]
                        es.indices.delete(index=",".join(chunk), ignore_unavailable=True)
                finally:
                    es.close()
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
            kept = self._delete_groups(groups)  # last: it may wait for killed consumers to expire
        except Exception as exc:  # cleaning up must never fail the run it follows
            return f"could not remove this run's topics, indices, consumer groups and folders: {exc}"
        return (
            f"removed {len(topics)} topics, {len(indices)} indices, {len(groups) - len(kept)} consumer"
            f" groups and {len(folders)} run folders this run created"
            + (f"; {len(kept)} groups still had members and were left: {', '.join(kept)}" if kept else "")
        )

    def _delete_groups(self, groups: list[str]) -> list[str]:
        """Delete ``groups``; returns those that still have members after ``group_wait_s``. A
        consumer that was killed stays a member until its session times out (45 s by default)."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient

        if not groups:
            return []
        admin = AdminClient(kafka_config(self.settings, "confluent"))
        deadline = time.monotonic() + self.group_wait_s
        while True:
            busy = []
            for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
                try:
                    future.result(60)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.NON_EMPTY_GROUP:
                        raise
                    busy.append(group)
            if not busy or time.monotonic() > deadline:
                return busy
            groups = busy
            time.sleep(2)
