"""The throwaway topics and indices a test session or a benchmark run creates, removed at its end.

Every run writes to topics and indices of its own (so runs never read each other's data). Kept,
they pile up on a developer's stack: a broker holding ~1,600 partitions took ~38 s to restart,
longer than the job's idle timeout, and failed the broker-restart fault test; Elasticsearch
refuses new indices past 1,000 shards per node. Only names with a throwaway prefix that did not
exist when the run started are removed, so a developer's own demo runs stay.
"""

from __future__ import annotations

from typing import Final

from infra.clients import es_client, kafka_config
from infra.settings import Settings

__all__ = ["INDEX_PREFIXES", "TOPIC_PREFIXES", "Leftovers"]

TOPIC_PREFIXES: Final = ("test.", "ssa.run.", "bench.")
INDEX_PREFIXES: Final = ("ssa-test-", "test-", "ssa-bench-", "bench-")
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


class Leftovers:
    """Notes the topics and indices that exist now; ``remove`` deletes the throwaway ones added since."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics_before = _topics(settings)
        self.indices_before = _indices(settings)

    def new_topics(self) -> list[str]:
        added = _topics(self.settings) - self.topics_before
        return sorted(t for t in added if t.startswith(TOPIC_PREFIXES))

    def new_indices(self) -> list[str]:
        added = _indices(self.settings) - self.indices_before
        return sorted(i for i in added if i.startswith(INDEX_PREFIXES))

    def remove(self) -> str:
        """Delete them; returns one line saying what was removed or what could not be."""
        try:
            topics, indices = self.new_topics(), self.new_indices()
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
        except Exception as exc:  # cleaning up must never fail the run it follows
            return f"could not remove this run's topics and indices: {exc}"
        return f"removed {len(topics)} topics and {len(indices)} indices this run created"
