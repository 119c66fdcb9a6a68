"""Ships alerts, posture metrics and DLQ counts from Kafka into Elasticsearch.

Offsets are committed only after Elasticsearch accepted a batch, so when Elasticsearch is down
the records wait in Kafka and arrive when it returns: nothing is lost. Document ids are
deterministic (alerts use ``alert_id`` with op ``create``), so nothing is duplicated either.
A record that Elasticsearch refuses for itself (a mapping conflict, a malformed alert) goes to
the DLQ topic with the reason instead of blocking the stream.

Each document goes to its tenant's daily index, or the SOC's when it has no tenant; an alert that
involves several tenants is written several times, in full for the SOC and reduced for each tenant
(``streams.documents``, ``infra.tenant_indices``). The index templates put every new index in its
kind's SOC alias.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from awareness.incidents import ANALYST_FIELDS
from infra.bootstrap import ensure_index_templates
from infra.clients import es_client, kafka_config
from infra.settings import Settings
from infra.tenant_indices import document_index, is_index_tenant, soc_index
from ingest.dlq import encode_dlq, make_dlq
from ingest.tenants import TenantRegistry
from streams.documents import (
    Action,
    alert_actions,
    awareness_actions,
    dlq_action,
    lag_action,
    metrics_action,
)
from streams.offsets import end_offsets, group_lag, lag_per_topic, records_behind

__all__ = ["Indexer", "IndexerStats", "newest_incident_updates"]

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = {429, 500, 502, 503, 504}
_LAG_REPORT_EVERY_S = 15.0
_LAG_FIRST_RETRY_S = 1.0
# Tenants whose alert indices are made ahead of the day (more are made by their first alert).
_PREPARE_MAX_TENANTS = 50


@dataclass
class IndexerStats:
    alerts: int = 0
    metrics: int = 0
    dlq: int = 0
    rejected: int = 0
    retries: int = 0
    batches: int = 0
    last_error: str | None = None
    outage_s: float = 0.0
    stale_threat_levels: int = 0  # provisional levels refused after their minute's final one
    stale_incident_updates: int = 0  # older versions of an incident than one written or in the batch
    analyst_fields_carried: int = 0  # soc documents of cross-tenant incidents given an analyst's fields
    per_topic: dict[str, int] = field(default_factory=dict)


def _is_incident_update(action: Action, prefix: str) -> bool:
    return action.op_type == "update" and action.index.startswith(prefix)


def _op(a: Action) -> dict[str, Any]:
    op: dict[str, Any] = {"_op_type": a.op_type, "_index": a.index, "_id": a.id, "_source": a.source}
    if a.version is not None:
        op["version"], op["version_type"] = a.version, "external_gte"
    return op


def newest_incident_updates(
    actions: list[Action], prefix: str, stored: dict[tuple[str, str], int]
) -> list[Action]:
    """The actions without the incident updates older than what is stored or in the batch.

    The job writes every version of an incident, and the versions of one incident may land on
    different partitions of the incidents topic (its records have no key), which the indexer reads
    in no fixed order: written as they come, an older version could overwrite a newer one. So only
    the highest ``version`` of each incident in a batch is kept (the later of equals), and only if
    higher than the stored one (``stored``: (index, id) -> version; a replay after a restore
    rewrites versions already written, which are skipped). Analysts' fields never touch
    ``version``; other actions pass unchanged, in order.

    Two more for the ``soc`` document of an incident (``streams.documents``): an update asked
    ``only_if_stored`` (a retired id) is left out where nothing is stored, and a full document
    older than its tenant's (``adopt_from``: stored or in the batch) is refused. A killed attempt
    of the job may have written the incident naming another tenant, and the restored one retired
    its id with a newer document naming none, which reached only the tenant's index: read after
    it, the stale ``soc`` document would stand open."""
    newest: dict[tuple[str, str], tuple[int, int]] = {}  # (index, id) -> (version, position)
    for i, a in enumerate(actions):
        if _is_incident_update(a, prefix):
            version = int(a.source["doc"].get("version") or 0)
            key = (a.index, a.id)
            if key not in newest or version >= newest[key][0]:
                newest[key] = (version, i)
    keep = set()
    for key, (version, i) in newest.items():
        a = actions[i]
        if version <= stored.get(key, -1) or (a.only_if_stored and key not in stored):
            continue
        if a.adopt_from is not None:
            home = (a.adopt_from, a.id)
            if max(stored.get(home, -1), newest.get(home, (-1, 0))[0]) > version:
                continue
        keep.add(i)
    return [a for i, a in enumerate(actions) if i in keep or not _is_incident_update(a, prefix)]


def adopt_analyst_fields(
    actions: list[Action], stored: dict[tuple[str, str], int], held: dict[tuple[str, str], dict[str, Any]]
) -> list[Action]:
    """The actions, an incident's first ``soc`` document with the analyst's fields its tenant's
    document holds (``held``: (index, id) -> those fields).

    An incident lives in its tenant's index until it names another tenant; from then on the SOC
    reads its ``soc`` document, and the tenant's becomes a copy the SOC alias leaves out. An
    acknowledgement, its history or a close written before that would stay on the copy, and the SOC
    would see the incident as new again. Only a ``soc`` document not yet stored takes them: later,
    the SOC's own changes are on it."""
    out = []
    for a in actions:
        fields = held.get((a.adopt_from, a.id)) if a.adopt_from and (a.index, a.id) not in stored else None
        if fields:
            doc = {**a.source["doc"], **{k: v for k, v in fields.items() if k in ANALYST_FIELDS}}
            a = replace(a, source={**a.source, "doc": doc})
        out.append(a)
    return out


class Indexer:
    def __init__(
        self,
        settings: Settings,
        *,
        industry_of: Callable[[str | None], str | None] = lambda _t: None,
        registry: Callable[[], TenantRegistry | None] = lambda: None,
        group_id: str = "ssa-indexer",
        lag_group_id: str | None = None,
        say: Callable[[str], None] = print,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.industry_of = industry_of
        # The registry as it stands (reloaded when its file changes): tenant names, accounts and
        # VM hosts for the documents' ECS fields.
        self.registry = registry
        self.group_id = group_id
        self.lag_group_id = lag_group_id
        self.say = say
        self.max_backoff_s = max_backoff_s
        self.stats = IndexerStats()
        # Set when Elasticsearch refuses the indexer itself (bad credentials, a template it cannot
        # install): retrying cannot help, so ``run`` stops and says why.
        self.fatal: str | None = None
        self.stopping = threading.Event()
        # Set by ``drain``: ``run`` returns after this many seconds without records.
        self.idle_exit_s: float | None = None
        self._drain_started = 0.0
        self._drain_deadline = float("inf")
        self._templates_ready = False
        self._prepared_day = -1
        self._next_kafka_warning = 0.0
        s = settings
        self._awareness = {
            s.topic_incidents: ("incidents", s.index_incidents_prefix),
            s.topic_threat: ("threat", s.index_threat_prefix),
            s.topic_warnings: ("warnings", s.index_warnings_prefix),
        }

    # --- transformation ------------------------------------------------------------------------
    def actions_for(self, records: Iterable[Any]) -> tuple[list[Action], list[tuple[Any, str]]]:
        s = self.settings
        actions: list[Action] = []
        bad: list[tuple[Any, str]] = []
        registry = self.registry()
        for r in records:
            try:
                if r.topic == s.topic_alerts:  # one document, or the SOC's and each tenant's copy
                    actions.extend(alert_actions(r.value, s.index_alerts_prefix, self.industry_of, registry))
                elif r.topic == s.topic_metrics:
                    actions.append(metrics_action(r.value, s.index_metrics_prefix))
                elif r.topic == s.topic_dlq:
                    actions.append(dlq_action(s.index_metrics_prefix, r.topic, r.partition, r.offset,
                                              r.timestamp, r.value))  # fmt: skip
                elif r.topic in self._awareness:
                    family, prefix = self._awareness[r.topic]
                    actions.extend(awareness_actions(r.value, family, prefix, registry))
            except Exception as exc:  # malformed record: to the DLQ with the reason, never dropped
                bad.append((r, f"indexer could not read a {r.topic} record: {exc}"))
        return actions, bad

    # --- Elasticsearch -------------------------------------------------------------------------
    def _bulk(self, es: Any, actions: list[Action], *, refresh: bool = False) -> list[tuple[Action, str]]:
        """Index a batch (searchable at once if ``refresh``); returns the actions Elasticsearch
        refused for themselves.

        Raises ``ConnectionError``-like exceptions for retryable failures of the whole batch.
        """
        from elasticsearch.helpers import streaming_bulk

        self._prepare(es)
        refused: list[tuple[Action, str]] = []
        retry: list[Action] = []
        ops = [_op(a) for a in actions]
        for i, (ok, item) in enumerate(
            streaming_bulk(
                es, ops, raise_on_error=False, raise_on_exception=True, max_retries=0, chunk_size=2000,
                refresh="true" if refresh else "false",
            )
        ):  # fmt: skip
            if ok:
                continue
            info = next(iter(item.values()))
            status = info.get("status", 0)
            if status == 409 and actions[i].op_type == "create":
                continue  # already indexed: the replay of an alert
            if status == 409 and actions[i].version is not None:
                self.stats.stale_threat_levels += 1
                continue  # a provisional level after the minute's final one
            if status in _RETRYABLE_STATUS:
                retry.append(actions[i])
            else:
                refused.append((actions[i], f"Elasticsearch refused {actions[i].id}: {info.get('error')}"))
        if retry:
            raise _Retryable(f"{len(retry)} documents got a retryable status")
        return refused

    def _prepare(self, es: Any) -> None:
        """Index templates once, then today's and tomorrow's indices ahead of their first document:
        creating an index takes about half a second, which the first alert of a day should not wait.
        The SOC's alert and metrics indices here; every registry tenant's alert indices in a thread
        of their own (about 0.5 s each: 20 tenants took 23 s in one go), so shipping never waits
        for them (a tenant's first alert makes its index itself if it comes first)."""
        if not self._templates_ready:
            ensure_index_templates(self.settings)
            self._templates_ready = True
        day = int(time.time()) // 86_400
        if day == self._prepared_day:
            return
        s, day_ms = self.settings, day * 86_400_000
        soc = [soc_index(prefix, ts) for prefix in (s.index_alerts_prefix, s.index_metrics_prefix)
               for ts in (day_ms, day_ms + 86_400_000)]  # fmt: skip
        _create_indices(es, soc)
        self._prepared_day = day
        tenants = [i for i in self._indices_ahead(day_ms) if i not in soc]
        if tenants:
            threading.Thread(target=self._create_quietly, args=(tenants,), name="ssa-indexer-ahead",
                             daemon=True).start()  # fmt: skip

    def _indices_ahead(self, day_ms: int) -> list[str]:
        """The indices made ahead for a day: the SOC's alerts, metrics, incidents and threat levels,
        each registry tenant's alerts, incidents and threat levels (at most ``_PREPARE_MAX_TENANTS``),
        today's and tomorrow's. Warnings are rare: their indices are made by the first one."""
        s = self.settings
        registry = self.registry()
        tenants = sorted(registry.tenants)[:_PREPARE_MAX_TENANTS] if registry is not None else []
        tenants = [t for t in tenants if is_index_tenant(t)]
        out = []
        for ts in (day_ms, day_ms + 86_400_000):
            out.append(soc_index(s.index_alerts_prefix, ts))
            out.append(soc_index(s.index_metrics_prefix, ts))
            out.append(soc_index(s.index_incidents_prefix, ts))  # cross-tenant incidents' SOC documents
            out.append(soc_index(s.index_threat_prefix, ts))  # the cloud's level
            out.extend(document_index(s.index_alerts_prefix, t, ts) for t in tenants)
            # and incidents': the first incident update of a tenant and day waited ~1 s for its index
            out.extend(document_index(s.index_incidents_prefix, t, ts) for t in tenants)
            # and threat levels', which every tenant gets each minute: left to the first levels of
            # the day, they were all made by one bulk just after midnight (and at a start), and the
            # alerts read after it waited for it (on the 2-core bench host under load, a bulk of 24
            # documents whose 18 threat levels needed new indices took 7.5 s)
            out.extend(document_index(s.index_threat_prefix, t, ts) for t in tenants)
        return out

    def _create_quietly(self, indices: list[str]) -> None:
        es = es_client(self.settings, max_retries=0, retry_on_timeout=False, request_timeout=15)
        try:
            _create_indices(es, indices, stop=self.stopping)
        except Exception as exc:  # advisory: the first document makes its index anyway
            log.info("indexer: could not make tenant indices ahead (%s)", exc)
        finally:
            es.close()

    def _newest_incidents(self, es: Any, actions: list[Action]) -> list[Action]:
        """``newest_incident_updates`` against the versions Elasticsearch holds."""
        prefix = self.settings.index_incidents_prefix
        wanted = {(a.index, a.id) for a in actions if _is_incident_update(a, prefix)}
        if not wanted:
            return actions
        stored: dict[tuple[str, str], int] = {}
        docs = [{"_index": index, "_id": doc_id, "_source": ["version"]} for index, doc_id in sorted(wanted)]
        for hit in es.mget(docs=docs)["docs"]:
            if hit.get("found"):
                stored[(hit["_index"], hit["_id"])] = int((hit.get("_source") or {}).get("version") or 0)
        out = newest_incident_updates(actions, prefix, stored)
        self.stats.stale_incident_updates += len(actions) - len(out)
        return self._adopt(es, out, stored)

    def _adopt(self, es: Any, actions: list[Action], stored: dict[tuple[str, str], int]) -> list[Action]:
        """An incident's first ``soc`` document takes the analyst's fields of its tenant's one."""
        homes = {(a.adopt_from, a.id) for a in actions if a.adopt_from and (a.index, a.id) not in stored}
        if not homes:
            return actions
        docs = [
            {"_index": index, "_id": doc_id, "_source": list(ANALYST_FIELDS)}
            for index, doc_id in sorted(homes)
        ]
        held = {
            (hit["_index"], hit["_id"]): hit["_source"]
            for hit in es.mget(docs=docs)["docs"]
            if hit.get("found") and hit.get("_source")
        }
        out = adopt_analyst_fields(actions, stored, held)
        self.stats.analyst_fields_carried += sum(a is not b for a, b in zip(actions, out, strict=True))
        return out

    def ship(self, es: Any, actions: list[Action]) -> list[tuple[Action, str]]:
        """Bulk with exponential backoff until accepted or stopping; never drops a batch.

        Alerts and incidents go first, in their own bulk, made searchable at once rather than at
        the next periodic refresh; metrics, levels, warnings and DLQ records wait for that refresh
        and do not slow them down. A retry ships both again, which ``_id`` per document makes
        harmless (an incident's update rewrites the same fields)."""
        urgent_prefixes = (self.settings.index_alerts_prefix, self.settings.index_incidents_prefix)
        alerts = [a for a in actions if a.index.startswith(urgent_prefixes)]
        others = [a for a in actions if not a.index.startswith(urgent_prefixes)]
        delay = 1.0
        outage_started: float | None = None
        while True:
            try:
                alerts = self._newest_incidents(es, alerts)
                refused = self._bulk(es, alerts, refresh=True) if alerts else []
                refused += self._bulk(es, others) if others else []
                if outage_started is not None:
                    took = time.monotonic() - outage_started
                    self.stats.outage_s += took
                    self.say(f"indexer: Elasticsearch is back after {took:.0f} s; shipping resumed")
                return refused
            except Exception as exc:
                if not _is_retryable(exc):
                    raise
                self.stats.retries += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if outage_started is None:
                    outage_started = time.monotonic()
                    self.say(
                        f"indexer: Elasticsearch unavailable at {self.settings.es_url} ({type(exc).__name__}); "
                        "alerts wait in Kafka, retrying with backoff"
                    )
                if self.stopping.wait(delay):
                    raise InterruptedError("stopping while Elasticsearch was unavailable") from None
                delay = min(delay * 2, self.max_backoff_s)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> IndexerStats:
        """Consume until ``stop()`` (or, after ``drain``, until caught up); commit after each batch."""
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaError

        s = self.settings
        consumer = KafkaConsumer(
            **kafka_config(s),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The parse stage writes its DLQ records in Kafka transactions: an aborted one's
            # records are parsed again, so reading them would count them twice.
            isolation_level="read_committed",
            max_poll_records=5000,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        consumer.subscribe([s.topic_alerts, s.topic_metrics, s.topic_dlq, *self._awareness])
        dlq_producer = KafkaProducer(**kafka_config(s), acks="all", linger_ms=5)
        es = es_client(s, max_retries=0, retry_on_timeout=False, request_timeout=15)
        last_records = time.monotonic()
        finished = threading.Event()
        lag_reporter = self._start_lag_reporter(finished)
        try:
            try:  # before the first record, so the first alerts do not wait for index creation
                self._prepare(es)
            except Exception as exc:
                if not _is_retryable(exc):
                    raise
                log.info("indexer: Elasticsearch not ready at start (%s); preparing on first batch", exc)
            while not self.stopping.is_set():
                try:
                    polled = consumer.poll(timeout_ms=500, max_records=5000)
                except KafkaError as exc:  # broker restarting: the client reconnects on the next poll
                    self._kafka_trouble(exc)
                    continue
                records = [r for batch in polled.values() for r in batch]
                if not records:
                    if self.idle_exit_s is not None and self._drained(consumer, last_records):
                        break
                    continue
                last_records = time.monotonic()
                actions, bad = self.actions_for(records)
                try:
                    refused = self.ship(es, actions) if actions else []
                except InterruptedError:
                    break  # not committed: these records are shipped by the next run
                except Exception as exc:  # refused for itself: stop, uncommitted, and say why
                    self.fatal = (
                        f"Elasticsearch at {s.es_url} refused the indexer: {type(exc).__name__}: {exc}"
                    )
                    self.say(f"indexer: {self.fatal[:500]}; records stay in Kafka")
                    break
                for action, reason in refused:
                    bad.append((action, reason))
                for item, reason in bad:
                    self._to_dlq(dlq_producer, item, reason)
                if bad:
                    dlq_producer.flush()
                if not self._commit(consumer):
                    break  # stopping: not committed, these records are shipped again next run
                self._count(records)
        finally:
            finished.set()
            consumer.close(autocommit=False)
            dlq_producer.close()
            es.close()
            if lag_reporter is not None:
                lag_reporter.join(30)
        return self.stats

    def stop(self) -> None:
        self.stopping.set()

    def _commit(self, consumer: Any) -> bool:
        """Commit the shipped batch, retrying while Kafka is away (a broker restart); False only
        when stopping first. Shipping twice is harmless (``_id`` per document), skipping is not."""
        from kafka.errors import KafkaError

        delay = 0.5
        while True:
            try:
                consumer.commit()
                return True
            except KafkaError as exc:
                self._kafka_trouble(exc)
                if self.stopping.wait(delay):
                    return False
                delay = min(delay * 2, self.max_backoff_s)

    def _kafka_trouble(self, exc: Exception) -> None:
        self.stats.retries += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
        now = time.monotonic()
        if now >= self._next_kafka_warning:
            self._next_kafka_warning = now + 30
            self.say(
                f"indexer: Kafka at {self.settings.kafka_bootstrap} unavailable ({type(exc).__name__}); retrying"
            )

    def drain(self, idle_s: float, max_wait_s: float = 600.0) -> None:
        """Ask ``run`` to return once it has shipped every record in its topics (their end offsets
        when it looks) and none arrived for ``idle_s`` seconds. Quiet is not enough: a consumer
        reconnecting after a broker restart also sees no records. If it cannot catch up within
        ``max_wait_s`` (Kafka unreachable), it stops and says so; the rest stays in Kafka."""
        self._drain_started = time.monotonic()
        self._drain_deadline = self._drain_started + max_wait_s
        self.idle_exit_s = idle_s

    def _drained(self, consumer: Any, last_records: float) -> bool:
        now = time.monotonic()
        if now - max(last_records, self._drain_started) <= (self.idle_exit_s or 0.0):
            return False
        behind = records_behind(consumer)
        if behind == 0:
            return True
        if now > self._drain_deadline:
            left = "an unknown number of" if behind is None else f"{behind:,}"
            self.fatal = f"stopped with {left} records not shipped (Kafka at {self.settings.kafka_bootstrap} unreachable or slow)"
            self.say(f"indexer: {self.fatal}; they stay in Kafka for the next `ssa index`")
            return True
        return False

    # --- helpers -------------------------------------------------------------------------------
    def _to_dlq(self, producer: Any, item: Any, reason: str) -> None:
        """A record the indexer could not read, or a document Elasticsearch refused, as a
        ``DlqRecord`` like every other stage's (raw capped, its encoding and size kept)."""
        import json

        if isinstance(item, Action):
            raw = json.dumps(item.source, default=str).encode()
            source = "indexer"
        else:
            raw = item.value if isinstance(item.value, bytes) else str(item.value).encode()
            source = item.topic
            reason = f"{reason} (partition {item.partition}, offset {item.offset})"
        producer.send(self.settings.topic_dlq, encode_dlq(make_dlq(source, reason[:1000], raw)))
        self.stats.rejected += 1

    def _count(self, records: list[Any]) -> None:
        s = self.settings
        self.stats.batches += 1
        for r in records:
            self.stats.per_topic[r.topic] = self.stats.per_topic.get(r.topic, 0) + 1
            if r.topic == s.topic_alerts:
                self.stats.alerts += 1
            elif r.topic == s.topic_metrics:
                self.stats.metrics += 1
            elif r.topic == s.topic_dlq:
                self.stats.dlq += 1

    def _start_lag_reporter(self, finished: threading.Event) -> threading.Thread | None:
        """Every 15 s, and once more when the indexer stops (unless the last probe failed), the
        detection job's consumer lag per telemetry topic as a metrics document.

        In its own thread: a probe opens Kafka clients and takes ~0.5 s, which alerts arriving
        meanwhile should not wait for. A failed probe is tried again after 1, 2, 4... s: on a
        broker just started, the group coordinator is still loading for the first seconds, and a
        short run would otherwise report nothing."""
        if self.lag_group_id is None:
            return None
        group = self.lag_group_id

        def report() -> None:
            es = es_client(self.settings, max_retries=0, retry_on_timeout=False, request_timeout=15)
            retry_s = _LAG_FIRST_RETRY_S
            try:
                while True:
                    last = finished.is_set()
                    try:
                        self._report_lag(es, group)
                        ok, wait_s, retry_s = True, _LAG_REPORT_EVERY_S, _LAG_FIRST_RETRY_S
                    except Exception as exc:  # advisory: report it, never stop shipping alerts for it
                        log.warning("consumer lag probe failed (next try in %.1f s): %s", retry_s, exc)
                        ok, wait_s, retry_s = False, retry_s, min(retry_s * 2, _LAG_REPORT_EVERY_S)
                    if last:
                        return
                    if finished.wait(wait_s) and not ok:
                        return  # stopping with Kafka unreachable: a last probe would wait 30 s for nothing
            finally:
                es.close()

        thread = threading.Thread(target=report, name="ssa-indexer-lag", daemon=True)
        thread.start()
        return thread

    def _report_lag(self, es: Any, group: str) -> None:
        lags = consumer_lag(self.settings, group)
        now = int(time.time() * 1000)
        prefix = self.settings.index_metrics_prefix
        actions = [lag_action(prefix, t, lag, now) for t, lag in lags.items()]
        if actions:
            self._bulk(es, actions)


def _create_indices(es: Any, indices: list[str], stop: threading.Event | None = None) -> None:
    for index in indices:
        if stop is not None and stop.is_set():
            return
        try:
            es.indices.create(index=index)
        except Exception as exc:  # already there (the usual case), or retried next batch
            if getattr(exc, "error", "") != "resource_already_exists_exception":
                raise


class _Retryable(Exception):
    pass


def _is_retryable(exc: BaseException) -> bool:
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout
    from elasticsearch import ApiError

    if isinstance(exc, _Retryable | TransportConnectionError | ConnectionTimeout | ConnectionError):
        return True
    return isinstance(exc, ApiError) and exc.meta.status in _RETRYABLE_STATUS


def consumer_lag(settings: Settings, group_id: str) -> dict[str, int]:
    """Records the group has not committed yet, per telemetry topic."""
    return lag_per_topic(
        group_lag(settings, group_id, end_offsets(settings, settings.telemetry_topics.values()))
    )
