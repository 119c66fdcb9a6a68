"""Baselines learned from the stream: a bounded reservoir of recent feature rows per tenant, a model
refitted from it now and then, and a pooled model over every tenant for tenants with little history.

No fit step. Each closed window, the anomaly detector scores its rows against the model of the
row's tenant (or the pooled one), and only then hands the rows that did not alert to ``learn``:
a window being scored never takes part in its own baseline, and an anomaly never becomes normal.

Reservoir (per tenant, at most ``cap`` rows, float16)
    Rows first go to a small *pending* buffer. They are folded into the reservoir when the tenant
    is still warming up (every window), when ``refit_rows`` rows are pending, or when
    ``refit_windows`` windows passed since the last fold. Folding appends while there is room, then
    replaces a pseudo-random slot per row: the biased reservoir of Aggarwal ("On Biased Reservoir
    Sampling in the Presence of Stream Evolution", VLDB 2006), in which a row survives k later
    insertions with probability (1 - 1/cap)^k, so the baseline follows drift with a memory of about
    ``cap`` rows while still holding older rows (other hours of the day). The slot is splitmix64
    of the row's sequence number (no RNG object in the state), so a replay folds identically.
    Rows are kept as float16: the features are log1p counts (at most 44 for a 64-bit counter) and
    shares in [0, 1], so the half-precision rounding (relative 2^-11, i.e. about 1.6 % of a byte
    count near 5e8) is far below what tells windows apart; scored rows are rounded the same way.

Model (rebuilt lazily, never pickled)
    The fitted model is a pure function of the reservoir (rows pending are not in it), so it is
    dropped when the detector is pickled (Flink keyed state) and rebuilt from the reservoir on the
    first window scored after a restore: a restored job scores exactly as the uninterrupted one
    and pickles only the rows. ECOD/COPOD fit = sorting each column (``tails``): about a
    millisecond for a few thousand rows; HBOS is as cheap; IForest costs ~100 ms per fit (it works,
    but keep it for offline fitting). The baseline's own scores are computed leave-one-out
    (``TailScorer.loo_components``) so they are exchangeable with the scores of new rows.

Calibration (conformal p-value)
    A row's p-value is (#{baseline scores >= its score} + 1) / (n + 1) (split-conformal anomaly
    detection: Laxhammar & Falkman 2015, "Inductive conformal anomaly detection for sequential
    detection of anomalous sub-trajectories"; Bates et al. 2023, "Testing for outliers with
    conformal p-values", Annals of Statistics). For a row from the baseline's distribution,
    P(p <= alpha) <= alpha, whatever the model and the tenant's scale: ``threshold`` 0.999 means
    alpha = 0.001, at most one false alert per thousand windows of an address. A baseline of fewer
    than 1 / alpha - 1 rows cannot produce a p-value that small: that is the warm-up, derived from
    the threshold and not a separate guess. ``warmup_windows`` adds that the rows must span that
    many closed windows, so one busy window is never a baseline.

Warm-up over one diurnal cycle (``warmup_span_ms``, 24 h)
    The guarantee above holds only for rows exchangeable with the baseline's, and a tenant's
    traffic follows the time of day: the CTU-50 normal hosts start about 20x more flows an hour at
    midday than at night (the simulator's ``rhythm.json``, derived from them). Measured on a
    simulated day (seed 7, 20 events/s, from 00:00 UTC; ``ssa scan``, one engine): with a warm-up of
    rows and windows only, the pooled model was warm at night, and 8 % of the morning's benign rows
    got p <= 0.001 (678 alerts, every one of the 36 VMs, 19 a VM a day where 0.29 is the promise),
    falling as the reservoir took in day rows; the same day at a flat rate gave uniform p-values
    (0.02 % to 0.14 % at p <= 0.001). So a baseline must cover one whole cycle of the dominant
    seasonality before it scores, as seasonal baselines do (Brutlag, "Aberrant Behavior Detection
    in Time Series for Network Monitoring", USENIX LISA 2000: Holt-Winters needs a season of
    history; Datadog's anomaly monitors ask for several seasons of history, docs.datadoghq.com/
    monitors/types/anomaly): a tenant's own model, and the pooled one, wait until their learned
    windows span ``warmup_span_ms`` of event time. A seeded baseline (offline fit) is taken as
    covering it. Limit: the reservoir keeps about ``cap`` rows of memory, so a tenant that makes
    more than ``cap`` rows a day (more than ``cap`` / 288 active addresses at 5-minute windows)
    holds less than a day and its p-values follow the rhythm again.

Tenants and the pooled model
    A tenant's own model scores its rows once its reservoir holds ``min_rows`` rows over
    ``warmup_windows`` windows spanning ``warmup_span_ms``; until then the pooled model does
    (fitted on every tenant's reservoir plus the offline-fitted global rows, if seeded, held once;
    at most ``POOLED_FACTOR * cap`` rows, an even stride over them), once the engine has learned
    over ``warmup_windows`` windows spanning ``warmup_span_ms`` (or was seeded) and the pool holds
    ``min_rows`` rows. A tenant with an offline model of its own starts from its rows, warm. At most
    ``max_tenants`` tenants are kept, the one updated longest ago is dropped first. In the Flink
    job each engine is one partition key (flows: a tenant; process events: a host), so the pooled
    model is the pool of the tenants that key sees: for flows, the tenant itself (one tenant per
    engine, so its model and the pooled one are the same rows); for a host, the VMs of every tenant
    on that host, which covers a tenant with one new VM there by the host's other VMs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from detectors.anomaly.models import make_pyod
from detectors.anomaly.tails import TailScorer

__all__ = ["POOLED", "POOLED_FACTOR", "Fitted", "OnlineBaselines", "TenantBaseline"]

POOLED: Final = "*"
POOLED_FACTOR: Final = 4
_MASK: Final = (1 << 64) - 1


def _slot(seq: int, salt: int, cap: int) -> int:
    """splitmix64 of the row's sequence number: the reservoir slot it replaces."""
    z = (seq * 0x9E3779B97F4A7C15 + salt) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) % cap


class Fitted:
    """A model fitted on one reservoir: scores, conformal p-values and per-feature explanations."""

    def __init__(self, family: str, x: np.ndarray, random_state: int = 0) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.family = family
        self.n = x.shape[0]
        self.tails: TailScorer | None = None
        self.estimator: Any = None
        if family in ("ecod", "copod"):
            self.tails = TailScorer(family, x)  # type: ignore[arg-type]
            base = self.tails.loo_components(x).sum(axis=1)
            self.sorted_cols = self.tails.sorted_
        else:
            self.estimator = make_pyod(family, random_state).fit(x)
            base = np.asarray(self.estimator.decision_function(x), dtype=np.float64)  # in-sample
            self.sorted_cols = np.sort(x, axis=0)
        self.baseline = np.sort(base)
        q75, q25 = np.percentile(base, [75, 25])
        self.score_spread = float(q75 - q25) or float(np.std(base)) or 1.0
        n = self.n
        self.median = self.sorted_cols[(n - 1) // 2]
        self.p99 = self.sorted_cols[min(n - 1, int(np.ceil(0.99 * n)) - 1)]
        q75f = self.sorted_cols[min(n - 1, int(0.75 * n))]
        q25f = self.sorted_cols[int(0.25 * (n - 1))]
        self.feature_spread = np.maximum(q75f - q25f, 1e-9 + 0.1 * np.abs(self.median))

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        if self.tails is not None:
            return self.tails.score(x)
        return np.asarray(self.estimator.decision_function(x), dtype=np.float64)

    def p_values(self, raw: np.ndarray) -> np.ndarray:
        """Conformal p-values: (#{baseline >= raw} + 1) / (n + 1)."""
        above = self.n - np.searchsorted(self.baseline, raw, side="left")
        result: np.ndarray = (above + 1.0) / (self.n + 1.0)
        return result

    def raw_at(self, quantile: float) -> float:
        return float(np.quantile(self.baseline, min(max(quantile, 0.0), 1.0)))

    def contributions(self, row: np.ndarray) -> np.ndarray:
        """Per-feature outlyingness: the ECOD/COPOD tail terms (they sum to the score); otherwise the
        distance from the baseline median in units of the feature's interquartile range."""
        if self.tails is not None:
            result: np.ndarray = self.tails.components(row[None, :])[0]
            return result
        return np.asarray(np.abs(row - self.median) / self.feature_spread)

    def value_quantile(self, j: int, v: float) -> float:
        """Share of the baseline's rows whose feature j is <= v."""
        return float(np.searchsorted(self.sorted_cols[:, j], v, side="right") / self.n)


class TenantBaseline:
    """One tenant's reservoir (the fitted set), pending rows and warm-up counters."""

    __slots__ = ("_fit", "first_window", "last_window", "pending", "rows", "seeded", "seen", "windows",
                 "windows_since_fold")  # fmt: skip

    def __init__(self, width: int) -> None:
        self.rows = np.zeros((0, width), dtype=np.float16)
        self.pending = np.zeros((0, width), dtype=np.float16)
        self.seen = 0  # rows ever folded (sequence number of the next one)
        self.windows = 0  # closed windows that gave this tenant rows
        self.windows_since_fold = 0
        self.last_window = 0
        self.first_window = -1  # start of the first window learned from (-1: none yet)
        self.seeded = False
        self._fit: Fitted | None = None

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.rows, self.pending, self.seen, self.windows, self.windows_since_fold,
                self.last_window, self.seeded, self.first_window)  # fmt: skip

    def __setstate__(self, s: tuple[Any, ...]) -> None:
        (self.rows, self.pending, self.seen, self.windows, self.windows_since_fold,
         self.last_window, self.seeded) = s[:7]  # fmt: skip
        self.first_window = s[7] if len(s) > 7 else 0  # state from before spans were kept: warm
        self._fit = None

    def span_ms(self) -> int:
        """Event time the learned windows cover, first window's start to last window's end."""
        return self.last_window - self.first_window if self.first_window >= 0 else 0

    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.pending.nbytes)


@dataclass
class OnlineBaselines:
    """Per-tenant reservoirs and models of one detector in one engine (see the module docstring)."""

    family: str
    width: int
    cap: int
    min_rows: int
    warmup_windows: int
    refit_rows: int
    refit_windows: int
    max_tenants: int
    random_state: int = 0
    warmup_span_ms: int = 0

    def __post_init__(self) -> None:
        self.tenants: dict[str, TenantBaseline] = {}
        self.windows = 0  # closed windows learned from (any tenant)
        self.first_window = -1  # start of the engine's first learned window
        self.last_window = 0
        self.pool_rows: np.ndarray | None = None  # offline-fitted global rows of the pool, held once
        self.version = 0  # bumped by every change of a reservoir: the pooled model's validity
        self.evicted = 0
        self._pooled: tuple[tuple[int, bool], Fitted | None] | None = None
        self._salt = (self.random_state * 0x2545F4914F6CDD1D + 0x51ED27) & _MASK

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pooled"] = None  # rebuilt from the reservoirs when next needed
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # state pickled before spans and pool seeds were kept: taken as warm, unseeded
        self.__dict__.update({"first_window": 0, "last_window": 0, "pool_rows": None, "warmup_span_ms": 0})
        self.__dict__.update(state)

    def adopt(self, old: OnlineBaselines) -> None:
        """Take over ``old``'s reservoirs: the same detector's, under the settings these replace.
        Rows beyond this reservoir size and tenants beyond ``max_tenants`` (the least recently
        learned) are left out; models are refitted with this family on next use. Nothing is taken
        when the feature vectors differ in width."""
        if old.width != self.width:
            return
        recent = sorted(old.tenants.items(), key=lambda kv: (-kv[1].last_window, kv[0]))
        for name, tb in recent[: self.max_tenants]:
            tb.rows, tb.pending = tb.rows[: self.cap], tb.pending[: self.cap]
            tb._fit = None
            self.tenants[name] = tb
        self.evicted = old.evicted + max(0, len(recent) - self.max_tenants)
        self.windows, self.first_window, self.last_window = old.windows, old.first_window, old.last_window
        if self.pool_rows is None:
            self.pool_rows = old.pool_rows
        self.version = old.version + 1
        self._pooled = None

    # --- scoring -------------------------------------------------------------------------------
    def model_for(self, tenant: str) -> tuple[str, Fitted] | None:
        """The model that scores ``tenant``'s rows and its scope (the tenant, or ``POOLED``); None
        while both are warming up."""
        tb = self.tenants.get(tenant)
        if (
            tb is not None
            and tb.rows.shape[0] >= self.min_rows
            and tb.windows >= self.warmup_windows
            and (tb.seeded or tb.span_ms() >= self.warmup_span_ms)
        ):
            if tb._fit is None:
                tb._fit = Fitted(self.family, tb.rows, self.random_state)
            return tenant, tb._fit
        pooled = self.pooled()
        return (POOLED, pooled) if pooled is not None else None

    def pool_warm(self) -> bool:
        """The pooled model may score: seeded offline, or learned over ``warmup_windows`` windows
        spanning ``warmup_span_ms`` of event time."""
        if self.pool_rows is not None:
            return True
        span = self.last_window - self.first_window if self.first_window >= 0 else 0
        return self.windows >= self.warmup_windows and span >= self.warmup_span_ms

    def pooled(self) -> Fitted | None:
        key = (self.version, self.pool_warm())
        if self._pooled is not None and self._pooled[0] == key:
            return self._pooled[1]
        fit: Fitted | None = None
        if key[1]:
            mats = [self.tenants[t].rows for t in sorted(self.tenants) if self.tenants[t].rows.shape[0]]
            if self.pool_rows is not None:
                mats.insert(0, self.pool_rows)
            total = sum(m.shape[0] for m in mats)
            if total >= max(self.min_rows, 2):
                x = np.vstack(mats)
                limit = POOLED_FACTOR * self.cap
                if total > limit:
                    x = x[np.linspace(0, total - 1, limit).astype(np.int64)]
                fit = Fitted(self.family, x, self.random_state)
        self._pooled = (key, fit)
        return fit

    # --- learning ------------------------------------------------------------------------------
    def _tenant(self, tenant: str) -> TenantBaseline:
        tb = self.tenants.get(tenant)
        if tb is None:
            if len(self.tenants) >= self.max_tenants:
                oldest = min(self.tenants, key=lambda t: (self.tenants[t].last_window, t))
                del self.tenants[oldest]
                self.evicted += 1
                self.version += 1
            tb = self.tenants[tenant] = TenantBaseline(self.width)
        return tb

    def seed(self, tenant: str, rows: np.ndarray) -> None:
        """Start ``tenant`` from offline-fitted rows (a models directory): warm at once."""
        rows = np.asarray(rows, dtype=np.float16)
        if rows.ndim != 2 or rows.shape[1] != self.width or rows.shape[0] == 0:
            return
        if rows.shape[0] > self.cap:
            rows = rows[np.linspace(0, rows.shape[0] - 1, self.cap).astype(np.int64)]
        tb = self._tenant(tenant)
        tb.rows = np.ascontiguousarray(rows)
        tb.seen = rows.shape[0]
        tb.windows = max(tb.windows, self.warmup_windows)
        tb.seeded = True
        tb._fit = None
        self.windows = max(self.windows, self.warmup_windows)
        self.version += 1

    def seed_pool(self, rows: np.ndarray) -> None:
        """Seed the pooled model with offline-fitted global rows (a models directory's ``*`` model),
        once per engine: every tenant without a fitted model of its own is scored by the pool, which
        holds these rows once (a copy per tenant would repeat each row, and a row's leave-one-out
        score against its own copies is too low: p-values too small)."""
        rows = np.asarray(rows, dtype=np.float16)
        if rows.ndim != 2 or rows.shape[1] != self.width or rows.shape[0] == 0:
            return
        limit = POOLED_FACTOR * self.cap
        if rows.shape[0] > limit:
            rows = rows[np.linspace(0, rows.shape[0] - 1, limit).astype(np.int64)]
        self.pool_rows = np.ascontiguousarray(rows)
        self.version += 1

    def learn(self, tenant: str, rows: np.ndarray, window_end: int, window_start: int | None = None) -> None:
        """Rows of one closed window (already scored, alerting rows left out) join the baseline."""
        start = window_end if window_start is None else window_start
        tb = self._tenant(tenant)
        if tb.first_window < 0:
            tb.first_window = start
        if self.first_window < 0:
            self.first_window = start
        self.last_window = max(self.last_window, window_end)
        tb.windows += 1
        tb.windows_since_fold += 1
        tb.last_window = max(tb.last_window, window_end)
        if rows.shape[0]:
            tb.pending = (
                np.vstack([tb.pending, rows.astype(np.float16)])
                if tb.pending.shape[0]
                else rows.astype(np.float16)
            )
        warming = tb.rows.shape[0] < self.min_rows or tb.windows <= self.warmup_windows
        if tb.pending.shape[0] and (
            warming or tb.pending.shape[0] >= self.refit_rows or tb.windows_since_fold >= self.refit_windows
        ):
            self._fold(tb)

    def end_window(self) -> None:
        self.windows += 1

    def _fold(self, tb: TenantBaseline) -> None:
        new, cap = tb.pending, self.cap
        room = max(0, cap - tb.rows.shape[0])
        if room:
            tb.rows = np.vstack([tb.rows, new[:room]]) if tb.rows.shape[0] else np.array(new[:room])
        rest = new[room:]
        if rest.shape[0]:
            rows = tb.rows
            seq, salt = tb.seen + room, self._salt
            for i in range(rest.shape[0]):
                rows[_slot(seq + i, salt, cap)] = rest[i]
        tb.seen += new.shape[0]
        tb.pending = np.zeros((0, self.width), dtype=np.float16)
        tb.windows_since_fold = 0
        tb._fit = None
        self.version += 1

    # --- reporting -----------------------------------------------------------------------------
    def nbytes(self) -> int:
        pool = int(self.pool_rows.nbytes) if self.pool_rows is not None else 0
        return pool + sum(tb.nbytes() for tb in self.tenants.values())

    def info(self) -> dict[str, Any]:
        return {
            "tenants": len(self.tenants),
            "windows": self.windows,
            "rows": {t: int(tb.rows.shape[0]) for t, tb in sorted(self.tenants.items())},
            "pool_seed_rows": 0 if self.pool_rows is None else int(self.pool_rows.shape[0]),
            "evicted": self.evicted,
            "bytes": self.nbytes(),
        }
