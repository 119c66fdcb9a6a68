"""Real rhythm for the simulator's background: flow sizes, durations and the hour-of-day shape.

``python -m ingest.simulator.rhythm DATA_DIR --out ingest/simulator/rhythm.json`` reads two real
captures under ``DATA_DIR`` and writes a small summary (a few KB, never a raw record):

- ``ctu13_scenario6_menti/capture20110816.binetflow.gz``: CTU-13 scenario 6, Argus bidirectional
  flows of a university network (2 h). Used: every flow whose label is not ``Botnet`` (the
  ``Background`` and ``Normal`` classes; SOURCE.txt notes the background is unverified but mostly
  benign), sizes and durations only (2 h say nothing about the time of day).
- ``stratosphere_ctu50_normal_hosts/0*-zeek-mixed.conn.log.labeled.gz``: four complete UTC days of
  normal Windows hosts (Zeek conn). Used: the flows the normal host itself initiated
  (``local_orig`` T) and not labelled ``Malicious`` (the inbound attacks are all initiated from
  outside): sizes, durations, bytes per packet, and the flow starts per UTC hour.

Only answered flows count (both directions carried bytes: Zeek ``orig_ip_bytes`` and
``resp_ip_bytes``, Argus ``SrcBytes`` and ``TotBytes - SrcBytes``): the simulator draws rejected
probes elsewhere. Bytes are IP-level in both (what VPC flow logs and NetFlow count). Argus has no
per-direction packet count, so bytes per packet come from the Zeek flows alone.

Service classes (by protocol and responder port): ``web`` tcp 80/443/8080/8443, ``dns`` udp 53,
``ntp`` udp 123, ``other_tcp`` any other tcp port below 10000 (above it, CTU-13's background is
mostly peer-to-peer transfers, which a tenant's service traffic is not).

The summary, per class: the flow count per source, quantiles at ``LEVELS`` of ``bytes_out``,
``bytes_in``, ``duration_ms``, ``bpp_out``, ``bpp_in`` (bytes per packet), and the Gaussian-copula
correlations of bytes_out, bytes_in and duration, and of each direction's bytes with its bytes per
packet (van der Waerden normal scores of the ranks), so a drawn flow keeps the real coupling of
request, response and duration, and a big transfer has big packets. ``hourly``:
24 weights with mean 1, flow starts per UTC hour pooled over the four CTU-50 days.

``Rhythm`` loads the file and samples from it: a value is the quantile function (interpolated
linearly in ``log1p`` between stored levels, clamped to the outer levels) at the normal CDF of a
standard normal draw, precomputed on a grid of normal scores so a draw costs one ``gauss`` and one
table lookup. Pure Python, deterministic: the same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import hashlib
import json
import math
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Final

__all__ = [
    "CLASSES",
    "DEFAULT_PATH",
    "FIELDS",
    "LEVELS",
    "Draw",
    "Rhythm",
    "derive",
    "load_rhythm",
    "main",
    "service_class",
]

DEFAULT_PATH: Final = Path(__file__).with_name("rhythm.json")
LEVELS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6,
    0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999,
)  # fmt: skip
CLASSES: Final = ("web", "dns", "ntp", "other_tcp")
FIELDS: Final = ("bytes_out", "bytes_in", "duration_ms", "bpp_out", "bpp_in")
_CORR_FIELDS: Final = ("bytes_out", "bytes_in", "duration_ms")
_WEB_PORTS: Final = frozenset({80, 443, 8080, 8443})
_CTU13: Final = "ctu13_scenario6_menti/capture20110816.binetflow.gz"
_CTU50: Final = (
    "stratosphere_ctu50_normal_hosts/008-zeek-mixed.conn.log.labeled.gz",
    "stratosphere_ctu50_normal_hosts/010-zeek-mixed.conn.log.labeled.gz",
    "stratosphere_ctu50_normal_hosts/011-zeek-mixed.conn.log.labeled.gz",
    "stratosphere_ctu50_normal_hosts/012-zeek-mixed.conn.log.labeled.gz",
)
_Z_MAX: Final = 4.0
_GRID: Final = 512  # cells of the normal-score table over [-_Z_MAX, _Z_MAX]
_NORMAL: Final = NormalDist()


def service_class(proto: str, port: int) -> str | None:
    """The class of a flow by protocol and responder port, or None when no class takes it."""
    if proto == "tcp":
        if port in _WEB_PORTS:
            return "web"
        return "other_tcp" if 0 < port < 10000 else None
    if proto == "udp":
        return "dns" if port == 53 else "ntp" if port == 123 else None
    return None


# --- derivation (reads the captures) ----------------------------------------------------------------
@dataclass
class _Flow:
    cls: str
    bytes_out: int
    bytes_in: int
    duration_ms: int
    packets_out: int  # 0 when the format does not say (Argus)
    packets_in: int
    packets: int  # both directions


def _port(text: str) -> int:
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        return -1


def _ctu13(path: Path) -> Iterator[_Flow | None]:
    """Flows of the CTU-13 binetflow file not labelled Botnet; None for a row that is not used."""
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            if "Botnet" in row["Label"]:
                yield None
                continue
            cls = service_class(row["Proto"], _port(row["Dport"]))
            try:
                total, src = int(row["TotBytes"]), int(row["SrcBytes"])
                dur, pkts = float(row["Dur"]), int(row["TotPkts"])
            except ValueError:
                yield None
                continue
            if cls is None or src <= 0 or total - src <= 0 or pkts < 2:
                yield None
                continue
            yield _Flow(cls, src, total - src, round(dur * 1000), 0, 0, pkts)


def _count(rec: dict[str, str], key: str) -> int:
    v = rec.get(key, "-")
    return 0 if v in ("-", "") else int(v)


def _ctu50(path: Path, hours: list[int]) -> Iterator[_Flow | None]:
    """Flows a CTU-50 normal host initiated and that are not labelled Malicious; counts their
    start hour (UTC) in ``hours`` whether or not a class takes them."""
    with gzip.open(path, "rt") as fh:
        cols: list[str] = []
        for line in fh:
            if line.startswith("#"):
                if line.startswith("#fields"):
                    cols = line.rstrip("\n").split("\t")[1:]
                continue
            rec = dict(zip(cols, line.rstrip("\n").split("\t"), strict=False))
            if rec.get("label") == "Malicious" or rec.get("local_orig") != "T":
                yield None
                continue
            ts = float(rec["ts"])
            hours[int(ts // 3600) % 24] += 1
            cls = service_class(rec["proto"], _port(rec["id.resp_p"]))
            out, inn = _count(rec, "orig_ip_bytes"), _count(rec, "resp_ip_bytes")
            if cls is None or out <= 0 or inn <= 0:
                yield None
                continue
            dur = rec.get("duration", "-")
            p_out, p_in = _count(rec, "orig_pkts"), _count(rec, "resp_pkts")
            ms = 0 if dur == "-" else round(float(dur) * 1000)
            yield _Flow(cls, out, inn, ms, p_out, p_in, p_out + p_in)


def _quantiles(values: list[float], digits: int = 0) -> list[float]:
    """Quantiles at ``LEVELS`` (linear between order statistics), rounded."""
    s = sorted(values)
    n = len(s)
    out = []
    for q in LEVELS:
        pos = q * (n - 1)
        i = int(pos)
        v = s[i] if i + 1 >= n else s[i] + (s[i + 1] - s[i]) * (pos - i)
        out.append(round(v, digits) if digits else round(v))
    return out


def _normal_scores(values: Sequence[float]) -> list[float]:
    """Van der Waerden scores: Phi^-1(rank / (n + 1)), ties given their mean rank."""
    n = len(values)
    order = sorted(range(n), key=values.__getitem__)
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mean_rank
        i = j + 1
    return [_NORMAL.inv_cdf(r / (n + 1)) for r in ranks]


def _corr(a: Sequence[float], b: Sequence[float]) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    return 0.0 if saa == 0 or sbb == 0 else sab / math.sqrt(saa * sbb)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def derive(data_dir: Path, command: str) -> dict[str, Any]:
    """The summary of the captures under ``data_dir`` (see the module docstring)."""
    flows: dict[str, list[_Flow]] = {c: [] for c in CLASSES}
    per_source: dict[str, dict[str, int]] = {c: {"ctu13": 0, "ctu50": 0} for c in CLASSES}
    files: list[dict[str, Any]] = []
    hours = [0] * 24
    sources: list[tuple[str, str, Iterator[_Flow | None]]] = [("ctu13", _CTU13, _ctu13(data_dir / _CTU13))]
    sources += [(("ctu50"), p, _ctu50(data_dir / p, hours)) for p in _CTU50]
    for tag, rel, rows in sources:
        n_rows = used = 0
        for f in rows:
            n_rows += 1
            if f is None:
                continue
            used += 1
            flows[f.cls].append(f)
            per_source[f.cls][tag] += 1
        files.append({"path": rel, "sha256": _sha256(data_dir / rel), "rows": n_rows, "flows_used": used})
    classes: dict[str, Any] = {}
    for cls in CLASSES:
        fl = flows[cls]
        if len(fl) < 50:
            raise ValueError(f"class {cls}: only {len(fl)} flows in the captures, too few for quantiles")
        zeek = [f for f in fl if f.packets_out > 0 and f.packets_in > 0]
        if len(zeek) >= 50:
            bpp_from = f"ctu50: per direction, {len(zeek)} flows"
            src = zeek
            bpp_out = [f.bytes_out / f.packets_out for f in zeek]
            bpp_in = [f.bytes_in / f.packets_in for f in zeek]
        else:  # too few flows with per-direction packets: both directions get the flow's mean
            bpp_from = f"ctu13+ctu50: both directions together, {len(fl)} flows"
            src = fl
            bpp_out = bpp_in = [(f.bytes_out + f.bytes_in) / f.packets for f in fl]
        # big flows carry big packets: bytes per packet keep their coupling with bytes
        r_out = _corr(_normal_scores([float(f.bytes_out) for f in src]), _normal_scores(bpp_out))
        r_in = _corr(_normal_scores([float(f.bytes_in) for f in src]), _normal_scores(bpp_in))
        cols = {
            "bytes_out": [float(f.bytes_out) for f in fl],
            "bytes_in": [float(f.bytes_in) for f in fl],
            "duration_ms": [float(f.duration_ms) for f in fl],
        }
        scores = {k: _normal_scores(v) for k, v in cols.items()}
        classes[cls] = {
            "flows": per_source[cls],
            "bytes_out": _quantiles(cols["bytes_out"]),
            "bytes_in": _quantiles(cols["bytes_in"]),
            "duration_ms": _quantiles(cols["duration_ms"]),
            "bpp_out": _quantiles(bpp_out, 1),
            "bpp_in": _quantiles(bpp_in, 1),
            "bpp_from": bpp_from,
            "corr": {
                "bytes_out~bytes_in": round(_corr(scores["bytes_out"], scores["bytes_in"]), 3),
                "bytes_out~duration_ms": round(_corr(scores["bytes_out"], scores["duration_ms"]), 3),
                "bytes_in~duration_ms": round(_corr(scores["bytes_in"], scores["duration_ms"]), 3),
                "bytes_out~bpp_out": round(r_out, 3),
                "bytes_in~bpp_in": round(r_in, 3),
            },
        }
    mean = sum(hours) / 24
    return {
        "about": "Flow size/duration quantiles per service class and flow starts per UTC hour of real "
        "benign traffic, for the simulator's background (ingest/simulator/rhythm.py says how).",
        "provenance": {
            "command": command,
            "files": files,
            "hourly_flows": hours,
            "hourly_from": "CTU-50 flows initiated by the normal host, not labelled Malicious, by UTC hour",
        },
        "levels": list(LEVELS),
        "classes": classes,
        "hourly": [round(h / mean, 3) for h in hours],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ingest.simulator.rhythm", description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", type=Path, help="the shared data directory (holds the capture folders)")
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH)
    args = ap.parse_args(argv)
    command = "python -m ingest.simulator.rhythm DATA_DIR --out " + (
        args.out.name if args.out.resolve() == DEFAULT_PATH.resolve() else str(args.out)
    )
    if args.out.resolve() == DEFAULT_PATH.resolve():
        command = "python -m ingest.simulator.rhythm DATA_DIR --out ingest/simulator/rhythm.json"
    summary = derive(args.data_dir, command)
    text = json.dumps(summary, indent=1, sort_keys=False)
    args.out.write_text(_compact(text) + "\n")
    n = sum(sum(c["flows"].values()) for c in summary["classes"].values())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) from {n} flows", file=sys.stderr)
    return 0


def _compact(text: str) -> str:
    """Put each list of numbers on one line (json.dumps with an indent puts one number per line)."""
    out: list[str] = []
    buf: list[str] | None = None
    for line in text.splitlines():
        s = line.strip()
        if buf is not None:
            buf.append(s)
            if s.startswith("]"):
                out.append("".join(buf).replace(",", ", "))
                buf = None
            continue
        if s.endswith("[") and not s.startswith("{"):
            buf = [line.rstrip()]
            continue
        out.append(line)
    return "\n".join(out)


# --- sampling (the simulator's side) ---------------------------------------------------------------
def _table(levels: Sequence[float], values: Sequence[float]) -> list[float]:
    """Values of the quantile function on the normal-score grid (log1p-linear between levels)."""
    logs = [math.log1p(max(0.0, v)) for v in values]
    out = []
    for k in range(_GRID + 1):
        p = _NORMAL.cdf(-_Z_MAX + 2 * _Z_MAX * k / _GRID)
        if p <= levels[0]:
            y = logs[0]
        elif p >= levels[-1]:
            y = logs[-1]
        else:
            i = bisect.bisect_right(levels, p) - 1
            f = (p - levels[i]) / (levels[i + 1] - levels[i])
            y = logs[i] + (logs[i + 1] - logs[i]) * f
        out.append(math.expm1(y))
    return out


class Draw:
    """Draws (bytes_out, bytes_in, packets_out, packets_in, duration_ms) of one class."""

    __slots__ = ("_b", "_c", "_p_in", "_p_out", "_t_dur", "_t_in", "_t_out", "_t_pin", "_t_pout")

    def __init__(self, levels: Sequence[float], spec: dict[str, Any]) -> None:
        self._t_out = _table(levels, spec["bytes_out"])
        self._t_in = _table(levels, spec["bytes_in"])
        self._t_dur = _table(levels, spec["duration_ms"])
        self._t_pout = _table(levels, spec["bpp_out"])
        self._t_pin = _table(levels, spec["bpp_in"])
        c = spec["corr"]
        r12, r13, r23 = c["bytes_out~bytes_in"], c["bytes_out~duration_ms"], c["bytes_in~duration_ms"]
        # Cholesky factor of [[1, r12, r13], [r12, 1, r23], [r13, r23, 1]] (kept positive definite).
        a = math.sqrt(max(1e-6, 1 - r12 * r12))
        b = (r23 - r12 * r13) / a
        self._b = (r12, a)
        self._c = (r13, b, math.sqrt(max(1e-6, 1 - r13 * r13 - b * b)))
        ro, ri = c.get("bytes_out~bpp_out", 0.0), c.get("bytes_in~bpp_in", 0.0)
        self._p_out = (ro, math.sqrt(max(0.0, 1 - ro * ro)))
        self._p_in = (ri, math.sqrt(max(0.0, 1 - ri * ri)))

    def __call__(self, rng: random.Random) -> tuple[int, int, int, int, int]:
        z1, z2, z3 = rng.gauss(), rng.gauss(), rng.gauss()
        r12, a = self._b
        c1, c2, c3 = self._c
        z_in = r12 * z1 + a * z2
        b_out = _at(self._t_out, z1)
        b_in = _at(self._t_in, z_in)
        dur = _at(self._t_dur, c1 * z1 + c2 * z2 + c3 * z3)
        po, pi = self._p_out, self._p_in
        p_out = b_out / _at(self._t_pout, po[0] * z1 + po[1] * rng.gauss())
        p_in = b_in / _at(self._t_pin, pi[0] * z_in + pi[1] * rng.gauss())
        bo, bi = max(40, int(b_out)), max(40, int(b_in))
        return (
            bo,
            bi,
            max(1, min(int(p_out + 0.5), bo // 40)),
            max(1, min(int(p_in + 0.5), bi // 40)),
            int(dur),
        )


def _at(table: list[float], z: float) -> float:
    x = (z + _Z_MAX) * (_GRID / (2 * _Z_MAX))
    if x <= 0:
        return table[0]
    if x >= _GRID:
        return table[_GRID]
    i = int(x)
    lo = table[i]
    return lo + (table[i + 1] - lo) * (x - i)


class Rhythm:
    """The loaded summary: a ``Draw`` per class and the hour-of-day curve."""

    def __init__(self, draws: dict[str, Draw], hourly: Sequence[float]) -> None:
        if len(hourly) != 24 or min(hourly) <= 0:
            raise ValueError(f"hourly must hold 24 positive weights, got {list(hourly)}")
        mean = sum(hourly) / 24
        self.draws = draws
        self.hourly: tuple[float, ...] = tuple(h / mean for h in hourly)  # UTC hours, mean 1
        cum = [0.0]
        for j in range(47):
            cum.append(cum[-1] + (self.factor(j / 2) + self.factor((j + 1) / 2)) / 4)
        self._cum = cum

    def factor(self, hour: float) -> float:
        """The activity weight at ``hour`` (0-24, UTC), linear between hour centres, mean 1."""
        x = hour - 0.5
        i = math.floor(x)
        f = x - i
        w = self.hourly
        return w[i % 24] * (1 - f) + w[(i + 1) % 24] * f

    def integral(self, hour: float) -> float:
        """The integral of ``factor`` from hour 0 to ``hour`` (any real; 24 per whole day)."""
        days = math.floor(hour / 24)
        r = hour - 24 * days
        j = min(47, int(r * 2))  # the curve is linear on each half hour
        lo = j / 2
        return 24 * days + self._cum[j] + (self.factor(lo) + self.factor(r)) / 2 * (r - lo)

    def mean_window_centre(self, duration_h: float) -> float:
        """The hour (0-24) at which a window of ``duration_h`` centred there holds exactly the day's
        mean activity, on the first falling flank of the curve after midnight, to the millisecond; for a window of a day or more any hour does (0)."""
        if duration_h >= 24:
            return 0.0
        half = duration_h / 2

        def excess(c: float) -> float:
            return (self.integral(c + half) - self.integral(c - half)) / duration_h - 1

        step = 1 / 60
        grid = [k * step for k in range(24 * 60)]
        for a in grid:
            b = a + step
            if excess(a) > 0 >= excess(b):
                lo, hi = a, b
                while hi - lo > 1e-7:  # well under a millisecond
                    mid = (lo + hi) / 2
                    if excess(mid) > 0:
                        lo = mid
                    else:
                        hi = mid
                return round(hi * 3_600_000) / 3_600_000 % 24
        return 0.0


def load_rhythm(path: Path = DEFAULT_PATH) -> Rhythm:
    data = json.loads(path.read_text())
    levels = data["levels"]
    return Rhythm({c: Draw(levels, data["classes"][c]) for c in CLASSES}, [float(x) for x in data["hourly"]])


if __name__ == "__main__":
    raise SystemExit(main())
