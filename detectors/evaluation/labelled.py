"""Any labelled flow capture as a scorecard: ``ssa evaluate --capture FILE... --format F``.

The real-data scorecard (``real``) runs on the four captures it knows; this builds the same kind of
``Capture`` from files a user has (a CICFlowMeter CSV with its ``Label`` column, a labelled Zeek
conn log, an Argus or nProbe CSV with a label column), so a capture of another network is scored
the same way: parsed by the project's parser for its format, detected on by one engine, each
label's flows scored by which alerts cover them (``coverage``).

Labels to classes. Each label value is a class of its own, named by the label, unless
``--class LABEL=CLASS`` maps it (several labels may map to one class): ``DoS Hulk`` and ``DoS
slowloris`` are two rows of the scorecard, each with its recall, as a flood that a detector finds
for one attack tool and misses for the other is what the scorecard is there to show. A class is:

- ``benign``: the label is one of ``--benign`` (default: ``benign`` and ``normal``, any case) or
  has one as a word (CTU's ``flow=From-Normal-V47-Grill``);
  alerts that cover its flows are false alerts, counted per host-day of the monitored network;
- ``background``: an empty or ``-`` label, or one with the word background (unverified
  traffic), or mapped so;
- ``other``: mapped so: malicious, not scored;
- an attack class otherwise. Its recall counts only alerts of the categories that find its kind
  of attack (``captures.ATTACK_CATEGORIES``: ``scan``, ``flood``, ``beacon``, ``guessing``; the
  class's ``scored_as``); an attack label of no such kind is scored by the share of its flows that
  any alert covers.

The label column: ``--label-column``, or the first present of ``detailed-label``, ``Attack``,
``attack_cat`` (an attack's name) and ``Label``, ``label``. Where the attack's name is empty or
``-`` the coarse ``Label``/``label`` beside it says (``0``: benign; UNSW-NB15's normal rows have
no ``attack_cat``, IoT-23's benign ones a ``-`` detailed label).

A label's words name its kind of attack when not mapped: ``scan`` (PortScan, horizontal scan),
``flood`` (DoS, DDoS, flood: the slow kinds too, whose alerts are ``dos``), ``beacon`` (bot,
botnet, C&C), ``guessing`` (brute force, Patator, password guessing). Any other attack label is
scored by any alert. ``--class`` overrides the keywords (``--class "DoS Hulk=flood" --class
"DDoS=flood"``: one row for both, scored as a flood).

The monitored network (``--cidr``, default the private ranges of RFC 1918, RFC 6598 and RFC 4193)
is the capture's one tenant: it says which hosts' days the false-alert rate is counted over, and is
the inside of the rules that need one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from detectors.evaluation.captures import Capture, ClassSpec, Kind, csv_cells, open_text, zeek_fields
from ingest.reader import iter_lines

__all__ = [
    "DEFAULT_BENIGN",
    "DEFAULT_CIDRS",
    "LabelClasses",
    "coarse_column",
    "header_of",
    "label_column",
    "labelled_capture",
]

DEFAULT_BENIGN: Final = ("benign", "normal")
DEFAULT_CIDRS: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
_UNLABELLED: Final = frozenset({"", "-"})
_KINDS: Final[frozenset[str]] = frozenset({"benign", "background", "other"})
# Keywords of public label vocabularies, matched as words of the label (case-insensitive).
_KEYWORDS: Final = (
    ("scan", re.compile(r"scan", re.I)),
    ("guessing", re.compile(r"brute|patator|guess|credential|password", re.I)),
    ("flood", re.compile(r"(?<![a-z])d?dos(?![a-z])|flood|slowloris|slowhttp|hulk|goldeneye|loic", re.I)),
    ("beacon", re.compile(r"(?<![a-z])bot|c&c|(?<![a-z])c2(?![a-z0-9])|beacon", re.I)),
)
_BACKGROUND: Final = re.compile(r"background", re.I)
# Classes named by their labels at most (then "other labels"): a table, not one row per flow.
MAX_CLASSES: Final = 64
# The attack's name where a capture has one (IoT-23's detailed-label, the NF-* sets' Attack,
# UNSW-NB15's attack_cat) before its binary or coarse label.
_LABEL_COLUMNS: Final = ("detailed-label", "Attack", "attack_cat", "Label", "label")
_COARSE_COLUMNS: Final = ("Label", "label")
# A coarse label's values that say malicious (UNSW-NB15 and the NF-* sets write 1, IoT-23 Malicious).
_COARSE_BENIGN: Final = frozenset({"0"})


class LabelClasses:
    """Label value -> scoring class, and the class specs of the labels seen."""

    def __init__(
        self, benign: Sequence[str] = DEFAULT_BENIGN, mapping: Mapping[str, str] | None = None
    ) -> None:
        self.benign = frozenset(b.casefold() for b in benign)
        # ... or one of them as a word of the label (CTU's "flow=From-Normal-V47-Grill")
        words = "|".join(re.escape(b) for b in sorted(self.benign) if b.strip())
        self._benign_word = re.compile(rf"(?<![a-z0-9])(?:{words})(?![a-z0-9])" if words else r"(?!)", re.I)
        self.mapping = dict(mapping or {})
        for label, cls in self.mapping.items():
            if not cls or (cls not in _KINDS and not re.fullmatch(r"[\w .&/+-]{1,64}", cls)):
                raise ValueError(f"--class {label}={cls}: give a class name (scan, flood, beacon, guessing, "
                                 "benign, background, other or a name of your own)")  # fmt: skip
        self._cache: dict[str, str] = {}
        self.kinds: dict[str, Kind] = {}
        self.scored_as: dict[str, str] = {}  # class -> the kind of attack its label's words name

    def __call__(self, label: str) -> str:
        cls = self._cache.get(label)
        if cls is None:
            cls, kind, scored_as = self._classify(label.strip())
            self._cache[label] = cls
            self.kinds.setdefault(cls, kind)
            if scored_as:
                self.scored_as.setdefault(cls, scored_as)
        return cls

    def _classify(self, label: str) -> tuple[str, Kind, str]:
        mapped = self.mapping.get(label)
        if mapped is not None:
            return mapped, mapped if mapped in _KINDS else "attack", ""  # type: ignore[return-value]
        if label in _UNLABELLED or _BACKGROUND.search(label):
            return "background", "background", ""
        if label.casefold() in self.benign or self._benign_word.search(label):
            return "benign", "benign", ""
        if len(self.kinds) >= MAX_CLASSES:  # a vocabulary of one label per flow (CTU-13's)
            return "other labels", "attack", ""
        scored_as = next((cls for cls, pattern in _KEYWORDS if pattern.search(label)), "")
        return label, "attack", scored_as

    def specs(self) -> tuple[ClassSpec, ...]:
        """One spec per class seen, attacks first, then benign, background and other."""
        order = {"attack": 0, "benign": 1, "background": 2, "other": 3}
        return tuple(
            ClassSpec(name, kind, scored_as=self.scored_as.get(name, ""))
            for name, kind in sorted(self.kinds.items(), key=lambda nk: (order[nk[1]], nk[0]))
        )


def coarse_column(header: Sequence[str], column: str) -> str | None:
    """A second, coarser label column (``Label``/``label``) beside ``column``, read where ``column``
    is empty (UNSW-NB15's normal rows have no attack_cat; IoT-23's benign ones a ``-``)."""
    stripped = [h.strip() for h in header]
    return next((c for c in _COARSE_COLUMNS if c in stripped and c != column), None)


def label_column(header: Sequence[str], wanted: str | None) -> str:
    """The label column of ``header``: ``wanted``, or the first of the usual names present."""
    stripped = [h.strip() for h in header]
    if wanted is not None:
        if wanted not in stripped:
            raise ValueError(f"no column {wanted!r} in the header ({', '.join(stripped[:12])}...)")
        return wanted
    found = next((c for c in _LABEL_COLUMNS if c in stripped), None)
    if found is None:
        raise ValueError(f"no label column ({', '.join(_LABEL_COLUMNS)}) in the header: give --label-column")
    return found


def labelled_capture(
    files: Sequence[Path], fmt: str, table: str, column: str, classes: LabelClasses, *,
    coarse: str | None = None,
    cidrs: Sequence[str] = DEFAULT_CIDRS, timezone: str | None = None, name: str | None = None,
) -> Capture:  # fmt: skip
    """A ``Capture`` of the user's files, read in the order given; its classes come from the labels
    (``Capture.derive_classes``) once they have been read."""

    def classify(row: Mapping[str, str]) -> str:
        label, source = row.get(column, "").strip(), column
        if label in _UNLABELLED and coarse is not None:  # no attack name: the coarse label says
            label, source = row.get(coarse, "").strip(), coarse
        if source in _COARSE_COLUMNS and label in _COARSE_BENIGN and label not in classes.mapping:
            label = "benign"
        return classes(label)

    return Capture(
        name or files[0].name, "", tuple(str(f.resolve()) for f in files), fmt, table,  # type: ignore[arg-type]
        tuple(cidrs), (), classify, timezone=timezone,
        tenant_note=f"the monitored network {', '.join(cidrs)}; labels from column {column!r}"
        + (f", {coarse!r} where it is empty" if coarse else ""),
        derive_classes=classes.specs, in_given_order=True,
    )  # fmt: skip


def header_of(path: Path, table: str) -> list[str]:
    """The column names of a capture file: a Zeek log's ``#fields`` (``zeek_fields``), else its
    first line with a cell (``csv_cells``)."""
    with open_text(path) as fh:
        for item in iter_lines(fh):
            text = item[2].decode("utf-8", "replace").lstrip("\ufeff")
            if table == "zeek":
                if text.startswith("#fields\t"):
                    return zeek_fields(text)
                if not text.startswith("#"):
                    return []
            elif (cells := csv_cells(text)) is not None:
                return cells
    return []
