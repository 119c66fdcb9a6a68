"""The demo run again and again on one stack with the same seed: each run reads back and scores only
its own alerts, although runs over the same minutes make the same alert ids (the indexer's
``create`` keeps the first document of an id) and earlier runs' alerts stay on the stack; and every
run is the same run translated in time, so every run's scorecard is the same."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, get_args

import pytest

from detectors.alert import Category
from detectors.evaluation.scorecard import Scorecard
from infra.clients import es_client
from infra.settings import Settings
from infra.tenant_indices import soc_alias

if TYPE_CHECKING:
    from streams.demo import DemoResult

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Every category the simulator injects attacks of: all of the alert's but the anomaly models'.
CATEGORIES = set(get_args(Category))


def _indexed(settings: Settings) -> tuple[set[str], list[str]]:
    """The run's alert indices, and the ids of the documents they hold."""
    from elasticsearch.helpers import scan

    es = es_client(settings)
    try:
        # the run's SOC alias: each alert once (a multi-tenant alert's per-tenant copies left out)
        pattern = soc_alias(settings.index_alerts_prefix)
        es.indices.refresh(index=pattern)
        hits = list(scan(es, index=pattern, query={"query": {"match_all": {}}}, _source=False))
        return {hit["_index"] for hit in hits}, [hit["_id"] for hit in hits]
    finally:
        es.close()


# The categories whose simulated attacks the detectors were written against. The real-traffic
# scenarios (flow-level guessing, HTTP floods, slow DoS, beacons, spam) follow the tools' documented
# behaviour instead, and a few minutes of simulation can be too short for the hour-long ones: their
# figures are reported, not asserted perfect.
FLAGSHIP = ("vm_escape", "cross_tenant_leak", "cryptomining", "exfiltration")


_TIMES = ("start", "end", "first_seen")


def _relative(result: DemoResult) -> Any:
    """The run's scorecard with its event times (missed attacks, false alerts) made relative to the
    run's start, so that runs translated in time compare equal."""
    start = result.sim_config.start_ms

    def shift(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: v - start if k in _TIMES and isinstance(v, int) else shift(v) for k, v in value.items()
            }
        if isinstance(value, list):
            return [shift(v) for v in value]
        return value

    return shift(result.scorecard.to_json())


def _assert_flagship_perfect(card: Scorecard) -> None:
    attacks = {c: row for c, row in card.categories.items() if row.instances}
    assert set(attacks) <= CATEGORIES and set(FLAGSHIP) <= set(attacks), card.table()
    assert all(attacks[c].precision == 1.0 and attacks[c].recall == 1.0 for c in FLAGSHIP), card.table()


def test_demo_runs_in_a_row_score_the_same_on_their_own_alerts(
    stack: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams import demo
    from streams.demo import run_demo

    def run() -> DemoResult:
        return run_demo(stack, seed=11, tenants=5, minutes=3, events_per_s=300, say=print)

    # Two runs in a row, as `make run` twice: over the same minutes (or the next grid slot, if the
    # clock crossed one), the same alert ids where they overlap. A third as if made 67 minutes
    # earlier: another hour of the day, other windows, the same run translated.
    first, again = run(), run()
    real_time = time.time
    monkeypatch.setattr(demo.time, "time", lambda: real_time() - 67 * 60)
    earlier = run()
    monkeypatch.undo()

    assert first.scorecard.events > 30_000
    _assert_flagship_perfect(first.scorecard)
    for other in (again, earlier):
        assert _relative(other) == _relative(first)
    assert {a.alert_id for a in earlier.alerts}.isdisjoint({a.alert_id for a in first.alerts})

    # Each run's indices are its own and hold its alerts once each, nothing else.
    seen: set[str] = set()
    for result in (first, again, earlier):
        indices, indexed = _indexed(result.settings)
        assert not indices & seen
        seen |= indices
        assert sorted(indexed) == sorted(a.alert_id for a in result.alerts)
