"""A killed attempt of the awareness stage and the restored one, through the indexer's rules.

The job's Kafka sinks are at-least-once: what a killed attempt wrote after its last checkpoint stays
in Elasticsearch, and the restored attempt, fed the same alerts from that checkpoint in another
order, must leave the same standing incidents (documents not merged into another) as a run that
was never killed, in every index an incident's documents live in (its tenant's, and the ``soc``
one once it names another tenant). Modelled here without services: the tracker's documents go
through ``awareness_actions`` and ``newest_incident_updates`` into a dict standing for the
indices (partial updates, upserts, the highest version kept), as ``streams.indexer`` ships them.
"""

from __future__ import annotations

import json
import pickle
import random
from typing import Any

from awareness.incidents import IncidentSettings, IncidentTracker, tenant_views
from streams.awareness_fn import attempt_version_base
from streams.documents import Action, awareness_actions
from streams.indexer import newest_incident_updates
from tests.test_awareness_incidents import MIN, REGISTRY, T0, alert, campaign

PREFIX = "inc-"
Indices = dict[tuple[str, str], dict[str, Any]]


def _ship(indices: Indices, docs: list[dict[str, Any]]) -> None:
    """One batch of incident documents into ``indices`` as the indexer writes them."""
    actions: list[Action] = []
    for doc in docs:
        actions.extend(awareness_actions(json.dumps(doc).encode(), "incidents", PREFIX, REGISTRY))
    stored = {key: int(doc.get("version") or 0) for key, doc in indices.items()}
    for a in newest_incident_updates(actions, PREFIX, stored):
        key = (a.index, a.id)
        if key in indices:
            indices[key] = {**indices[key], **a.source["doc"]}
        elif a.source.get("doc_as_upsert"):
            indices[key] = dict(a.source["doc"])


class _Attempt:
    """The stage's trackers (one per tenant) and the version base of one attempt; ``written`` holds
    its documents, one batch per alert, as its sink sent them."""

    def __init__(self, base: int, trackers: dict[str, IncidentTracker] | None = None) -> None:
        self.base = base
        self.trackers = trackers if trackers is not None else {}
        self.settings = IncidentSettings()
        self.written: list[list[dict[str, Any]]] = []

    def feed(self, alerts: list[dict[str, Any]]) -> None:
        for a in alerts:
            docs = []
            for tenant, view in tenant_views(a, REGISTRY, self.settings):
                tracker = self.trackers.setdefault(tenant, IncidentTracker(tenant, self.settings))
                docs += tracker.observe(view)
            self._write(docs)

    def finish(self) -> None:
        self._write([d for tr in self.trackers.values() for d in tr.expire(T0 + 10**9)])

    def _write(self, docs: list[dict[str, Any]]) -> None:
        self.written.append([{**d, "version": self.base + d["version"]} for d in docs])

    def checkpoint(self) -> bytes:
        return pickle.dumps(self.trackers)


def _standing(indices: Indices) -> dict[str, frozenset[str]]:
    """Incident id -> alert ids of every document not merged into another, in any index (the
    integration test's view: ``tests/integration/test_faults.py``)."""
    out: dict[str, set[str]] = {}
    for (_index, iid), doc in indices.items():
        if not doc.get("merged_into"):
            out.setdefault(iid, set()).update(doc["alert_ids"])
    return {iid: frozenset(ids) for iid, ids in out.items()}


def _alerts() -> list[dict[str, Any]]:
    """The cross-tenant campaign (vm-x of t-a reads t-b's disk, then sends to t-b) and an
    unrelated story on vm-z, so that a restore can reorder a cross-tenant alert before the
    alert its incident is named after."""
    return [
        *campaign(),
        alert("cryptomining.miner_process", "cryptomining", "Impact", ("vm", "vm-z"), T0 + 5 * MIN),
        alert("c2.beacon", "command_and_control", "Command and Control", ("vm", "vm-z"), T0 + 15 * MIN),
    ]


def _ship_all(indices: Indices, *attempts: list[list[dict[str, Any]]]) -> None:
    for batches in attempts:
        for docs in batches:
            _ship(indices, docs)


def test_a_restore_in_another_order_leaves_the_uninterrupted_runs_incidents_in_every_index() -> None:
    """Both attempts' documents, the killed one's read first or last (the incidents topic has no
    key: the indexer reads its partitions in no fixed order)."""
    alerts = _alerts()
    whole: Indices = {}
    uninterrupted = _Attempt(attempt_version_base(1_000))
    uninterrupted.feed(alerts)
    uninterrupted.finish()
    _ship_all(whole, uninterrupted.written)
    expected = _standing(whole)
    assert len(expected) == 3 and len(alerts) > len(expected)  # t-a's two stories and t-b's side
    rng = random.Random(5)
    for trial in range(200):
        first_order = rng.sample(alerts, len(alerts))
        checkpoint_at = rng.randrange(0, len(alerts))
        killed_at = rng.randrange(checkpoint_at, len(alerts) + 1)
        killed = _Attempt(attempt_version_base(2_000))
        killed.feed(first_order[:checkpoint_at])
        state = killed.checkpoint()
        before_checkpoint = list(killed.written)
        killed.feed(first_order[checkpoint_at:killed_at])
        after_checkpoint = killed.written[len(before_checkpoint) :]
        restored = _Attempt(attempt_version_base(3_000), pickle.loads(state))
        rest = first_order[checkpoint_at:]
        restored.feed(rng.sample(rest, len(rest)))
        restored.finish()
        for name, order in (
            ("killed first", (before_checkpoint, after_checkpoint, restored.written)),
            ("killed last", (before_checkpoint, restored.written, after_checkpoint)),
        ):
            indices: Indices = {}
            _ship_all(indices, *order)
            where = f"trial {trial}, {name}: checkpoint {checkpoint_at}, kill {killed_at}"
            assert _standing(indices) == expected, where
