"""A user's own labelled capture scored as the real-data scorecard scores the known ones
(``ssa evaluate --capture``, ``detectors.evaluation.labelled``). The CSVs are hand-made in
CICFlowMeter's format (``tests.test_flowdir.cic``); no dataset's records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest

from detectors.evaluation.labelled import (
    MAX_CLASSES,
    LabelClasses,
    coarse_column,
    header_of,
    label_column,
    labelled_capture,
)
from detectors.evaluation.real import evaluate_capture, table
from ingest.parsers.nprobe_csv import has_flow_times
from ssa.cli import main
from tests.test_cli import _one_line
from tests.test_flowdir import cic, cic_flow


@pytest.mark.parametrize(
    ("label", "cls", "kind", "scored_as"),
    [
        ("PortScan", "PortScan", "attack", "scan"), ("PartOfAHorizontalPortScan", "PartOfAHorizontalPortScan", "attack", "scan"),
        ("DoS Hulk", "DoS Hulk", "attack", "flood"), ("DDoS", "DDoS", "attack", "flood"),
        ("DoS slowloris", "DoS slowloris", "attack", "flood"), ("DoS Slowhttptest", "DoS Slowhttptest", "attack", "flood"),
        ("FTP-Patator", "FTP-Patator", "attack", "guessing"),
        ("Web Attack \ufffd Brute Force", "Web Attack \ufffd Brute Force", "attack", "guessing"),
        ("Bot", "Bot", "attack", "beacon"), ("C&C-HeartBeat", "C&C-HeartBeat", "attack", "beacon"),
        ("Botnet", "Botnet", "attack", "beacon"),
        ("Heartbleed", "Heartbleed", "attack", ""), ("Infiltration", "Infiltration", "attack", ""),
        ("BENIGN", "benign", "benign", ""), ("Normal", "benign", "benign", ""),
        ("flow=From-Normal-V47-Grill", "benign", "benign", ""),
        ("flow=Background-TCP-Established", "background", "background", ""),
        ("", "background", "background", ""), ("-", "background", "background", ""),
        ("Abnormal-Robot", "Abnormal-Robot", "attack", ""),  # no benign word, no keyword word ("bot" inside)
    ],
)  # fmt: skip
def test_labels_are_classes_of_their_own_scored_by_their_words(
    label: str, cls: str, kind: str, scored_as: str
) -> None:
    """Each attack label is a row of its own (a tool the detectors miss is not averaged away by
    another of its kind), scored by the alert categories its words name."""
    classes = LabelClasses()
    assert classes(label) == cls
    assert classes.kinds[cls] == kind
    spec = next(s for s in classes.specs() if s.name == cls)
    assert spec.scored_as == scored_as
    assert bool(spec.categories) == bool(scored_as)


def test_mapping_overrides_the_keywords_and_names_its_own_kinds() -> None:
    classes = LabelClasses(benign=["0"], mapping={"DoS Hulk": "other", "-": "benign", "Heartbleed": "flood"})
    assert [classes(x) for x in ("DoS Hulk", "-", "Heartbleed", "0", "BENIGN")] == [
        "other", "benign", "flood", "benign", "BENIGN",
    ]  # fmt: skip
    assert classes.kinds == {"other": "other", "benign": "benign", "flood": "attack", "BENIGN": "attack"}
    with pytest.raises(ValueError, match="give a class name"):
        LabelClasses(mapping={"x": "a\nb"})


def test_labels_mapped_to_one_kind_of_attack_are_one_row() -> None:
    classes = LabelClasses(mapping={"DoS Hulk": "flood", "DDoS": "flood"})
    assert {classes(x) for x in ("DoS Hulk", "DDoS")} == {"flood"}
    assert classes("DoS slowloris") == "DoS slowloris"  # not mapped: a row of its own
    specs = {s.name: s for s in classes.specs()}
    assert specs["flood"].categories == specs["DoS slowloris"].categories == ("dos",)


def test_a_label_per_flow_is_capped_into_one_class() -> None:
    classes = LabelClasses()
    names = {classes(f"attack-{i}") for i in range(MAX_CLASSES + 10)}
    assert len(names) == MAX_CLASSES + 1 and "other labels" in names


def test_the_label_column_is_found_or_named() -> None:
    assert label_column([" Source IP", " Label"], None) == "Label"
    assert label_column(["id.orig_h", "label", "detailed-label"], "detailed-label") == "detailed-label"
    with pytest.raises(ValueError, match="give --label-column"):
        label_column(["Source IP"], None)
    with pytest.raises(ValueError, match="no column 'Attack'"):
        label_column(["Source IP", "Label"], "Attack")


@pytest.mark.parametrize(
    ("header", "row", "cls"),
    [
        (["srcip", "attack_cat", "Label"], {"attack_cat": "", "Label": "0"}, "benign"),  # UNSW-NB15's normal rows
        (["srcip", "attack_cat", "Label"], {"attack_cat": "Exploits", "Label": "1"}, "Exploits"),
        (["id.orig_h", "label", "detailed-label"], {"label": "Benign", "detailed-label": "-"}, "benign"),  # IoT-23
        (["id.orig_h", "label", "detailed-label"], {"label": "Malicious", "detailed-label": "-"}, "Malicious"),
        (["id.orig_h", "label", "detailed-label"], {"label": "Malicious", "detailed-label": "DDoS"}, "DDoS"),
        (["IPV4_SRC_ADDR", "Label", "Attack"], {"Label": "0", "Attack": "Benign"}, "benign"),  # the NF-* sets
        (["IPV4_SRC_ADDR", "Label"], {"Label": "0"}, "benign"),
        (["IPV4_SRC_ADDR", "Label"], {"Label": "1"}, "1"),
    ],
)  # fmt: skip
def test_an_empty_attack_name_is_read_from_the_coarse_label(
    header: list[str], row: dict[str, str], cls: str
) -> None:
    column = label_column(header, None)
    capture = labelled_capture([Path("x.csv")], "zeek", "zeek", column, LabelClasses(),
                               coarse=coarse_column(header, column))  # fmt: skip
    assert capture.classify(row) == cls


def write_scan_capture(tmp_path: Path) -> Path:
    """A SYN scan of 1,000 closed ports (PortScan), 40 browsing connections and their tails
    (BENIGN), and a handful of flows of an attack no detector is scored for."""
    scan = [
        {**cic_flow("198.51.100.7", "10.1.0.5", 40001, port, (1, 0), (1, 0), "SYN", minute=port % 3),
         "Label": "PortScan"}
        for port in range(1, 1001)
    ]  # fmt: skip
    browsing = [
        {**row, "Label": "BENIGN"}
        for i in range(40)
        for row in (
            cic_flow("10.1.0.5", f"203.0.113.{i}", 50000 + i, 443, (9, 700), (8, 9000), "SYN", minute=i % 4),
            {**cic_flow("10.1.0.5", f"203.0.113.{i}", 50000 + i, 443, (1, 0), (1, 0), "FIN", minute=i % 4),
             "ACK Flag Count": "1"},
        )
    ]  # fmt: skip
    other = [
        {**cic_flow("198.51.100.9", "10.1.0.6", 41000 + i, 443, (30, 9000), (20, 60000), "SYN", minute=5),
         "Label": "Heartbleed"}
        for i in range(3)
    ]  # fmt: skip
    path = tmp_path / "capture.csv"
    path.write_text(cic(scan + browsing + other))
    return path


def test_a_cicflowmeter_capture_is_scored_per_label(tmp_path: Path) -> None:
    path = write_scan_capture(tmp_path)
    column = label_column(header_of(path, "csv"), None)
    capture = labelled_capture([path], "cicflowmeter", "csv", column, LabelClasses(), cidrs=["10.1.0.0/16"])
    result = evaluate_capture(capture, tmp_path)
    classes = result["classes"]
    assert result["labelled_rows"] == {"Heartbleed": 3, "benign": 80, "PortScan": 1000}
    assert result["dlq"] == 0 and result["events_without_label"] == 0
    assert (classes["PortScan"]["flows"], classes["PortScan"]["recall"]) == (1000, 1.0)
    assert (classes["PortScan"]["scored_as"], classes["PortScan"]["categories"]) == ("scan", ["port_scan"])
    assert classes["benign"]["false_alerts"] == 0 and classes["benign"]["hosts"] == 1
    assert classes["Heartbleed"]["categories"] == [] and classes["Heartbleed"]["recall"] is None
    text = table({"mine": result})
    assert "PortScan" in text and "by port_scan" in text and "of no class a detector is scored for" in text


def test_ssa_evaluate_capture_prints_and_writes_the_scorecard(
    tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = write_scan_capture(tmp_path), tmp_path / "card.json"
    argv = ["evaluate", "--capture", str(path), "--format", "cicflowmeter", "--cidr", "10.1.0.0/16",
            "--class", "Heartbleed=other", "--name", "mine", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    card = json.loads(capsys.readouterr().out)["mine"]
    assert card["classes"]["PortScan"]["recall"] == 1.0 and card["classes"]["other"]["kind"] == "other"
    assert json.loads(out.read_text())["captures"]["mine"]["run"]["command"].startswith(
        "ssa evaluate --capture"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "ssa evaluate: --capture needs --format (the ssa ingest format of its files, e.g. cicflowmeter)"),
        (["--format", "cicflowmeter", "--cidr", "10.1.0.0/33"], "ssa evaluate: --cidr '10.1.0.0/33' is not a network (e.g. 192.168.10.0/24)"),
        (["--format", "cicflowmeter", "--class", "PortScan"], "ssa evaluate: --class 'PortScan': give LABEL=CLASS, e.g. 'DoS Hulk=flood'"),
        (["--format", "cicflowmeter", "--label-column", "Attack"], "ssa evaluate: {path}: no column 'Attack' in the header"),
        (["--format", "nosuch"], "ssa evaluate: unknown --format 'nosuch'"),
    ],
)  # fmt: skip
def test_bad_capture_arguments_are_one_line(
    tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    path = write_scan_capture(tmp_path)
    assert main(["evaluate", "--capture", str(path), *extra]) == 1
    assert _one_line(capsys.readouterr().err).startswith(message.format(path=path))


def test_a_capture_that_is_a_folder_or_missing_is_one_line(
    tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--capture", str(tmp_path), "--format", "cicflowmeter"]) == 1
    assert _one_line(capsys.readouterr().err) == (
        f"ssa evaluate: {tmp_path} is a directory: give its files (e.g. {tmp_path / '*.csv'})"
    )
    assert main(["evaluate", "--capture", str(tmp_path / "none.csv"), "--format", "cicflowmeter"]) == 1
    assert _one_line(capsys.readouterr().err) == f"ssa evaluate: no such file: {tmp_path / 'none.csv'}"


def test_a_cicflowmeter_layout_of_features_only_is_refused_in_one_line(
    tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CIC-IDS2017's MachineLearningCVE CSVs (and most CSE-CIC-IDS2018 days) have no addresses and
    no times: every row would go to the DLQ and the scorecard score nothing."""
    path = tmp_path / "Friday-WorkingHours-Afternoon-DDos.pcap_ISCX.csv"
    path.write_text(" Destination Port, Flow Duration, Total Fwd Packets, Label\n80,1000,3,DDoS\n")
    assert main(["evaluate", "--capture", str(path), "--format", "cicflowmeter"]) == 1
    assert _one_line(capsys.readouterr().err).startswith(
        f"ssa evaluate: {path}: no Source IP or Destination IP or Timestamp column, as in CIC-IDS2017's "
        "MachineLearningCVE CSVs"
    )


def test_flags_of_a_capture_alone_are_refused(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--dataset", "all", "--format", "zeek"]) == 1
    assert _one_line(capsys.readouterr().err) == "ssa evaluate: --format go with --capture"


_NF_V2: Final = (
    "IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,L7_PROTO,IN_BYTES,OUT_BYTES,IN_PKTS,OUT_PKTS,"
    "TCP_FLAGS,FLOW_DURATION_MILLISECONDS,Label,Attack"
)


def test_a_netflow_capture_without_flow_times_is_refused_in_one_line(
    tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NF-*-v2 layouts carry no time: read, every record would be stamped as it is parsed, the
    whole capture one burst of a few seconds (floods and scans of benign hosts)."""
    row = "192.168.10.5,40001,192.168.10.9,22,6,92,44,40,1,1,22,0,1,PortScan"
    path = tmp_path / "nf-v2.csv"
    path.write_text(f"{_NF_V2}\n{row}\n")
    assert main(["evaluate", "--capture", str(path), "--format", "nprobe"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"ssa evaluate: {path}: no flow times (none of FLOW_START_MILLISECONDS,")
    # With a start column (the NF-*-v3 layouts) the capture is scored.
    timed = tmp_path / "nf-v3.csv"
    timed.write_text(f"FLOW_START_MILLISECONDS,{_NF_V2}\n1700000000000,{row}\n")
    assert main(["evaluate", "--capture", str(timed), "--format", "nprobe", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nf-v3.csv"]["classes"]["PortScan"]["flows"] == 1


@pytest.mark.parametrize(
    ("header", "timed"),
    [
        (_NF_V2.split(","), False),
        ([_NF_V2.replace(",", "|") + "|FLOW_END_MILLISECONDS"], True),  # nProbe's own separator
        (["FIRST_SWITCHED", "LAST_SWITCHED", "IPV4_SRC_ADDR"], True),
        ([" FLOW_START_SEC "], True),
    ],
)
def test_flow_times_are_found_in_any_separator(header: list[str], timed: bool) -> None:
    assert has_flow_times(header) is timed
