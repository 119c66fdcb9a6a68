"""The tool lab's pure parts: its scenarios' addresses and labels, and the labelling of the flow
tables its exporters print (``detectors.evaluation.toollab``; the capture itself needs root and the
tools, and is run by hand)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from detectors.evaluation.labelled import LabelClasses
from detectors.evaluation.toollab import (
    SCENARIOS,
    _apache_conf,
    _run_for,
    label_rows,
    missing_tools,
    scenario_labels,
)


def test_each_scenario_has_its_own_address_pair() -> None:
    assert len({sc.host for sc in SCENARIOS}) == len(SCENARIOS)
    assert all(sc.src.startswith("10.77.0.") and sc.dst.startswith("10.77.1.") for sc in SCENARIOS)


def test_every_label_is_scored_as_the_kind_of_attack_its_tool_makes() -> None:
    classes = LabelClasses()
    kinds = {sc.label: classes(sc.label) for sc in SCENARIOS}
    scored = {label: classes.scored_as.get(cls, classes.kinds[cls]) for label, cls in kinds.items()}
    assert scored["SSH password guessing hydra"] == "guessing"
    assert scored["FTP password guessing hydra"] == "guessing"
    assert scored["SSH password guessing patator"] == scored["FTP password guessing patator"] == "guessing"
    web_logins = [sc.label for sc in SCENARIOS if sc.label.startswith("HTTP password guessing")]
    assert len(web_logins) == 3 and {scored[label] for label in web_logins} == {"guessing"}
    assert scored["DoS slowloris slowhttptest"] == scored["DoS slowloris slowhttptest apache"] == "flood"
    assert scored["DoS SYN flood hping3"] == scored["DDoS SYN flood hping3 random sources"] == "flood"
    assert scored["PortScan nmap SYN"] == "scan"
    assert {scored[sc.label] for sc in SCENARIOS if sc.label.startswith("benign")} == {"benign"}
    assert set(scored.values()) == {"guessing", "flood", "scan", "benign"}


def test_nginx_and_apache_listen_on_their_own_victims_addresses(tmp_path: Path) -> None:
    apache = {sc.dst for sc in SCENARIOS if sc.apache}
    assert apache and apache < {sc.dst for sc in SCENARIOS}
    conf = _apache_conf(tmp_path, tmp_path / "www")
    assert {line.split()[1] for line in conf.splitlines() if line.startswith("Listen ")} == {
        f"{a}:80" for a in apache
    }
    assert "RequestReadTimeout header=20-40,minrate=500" in conf  # Debian's reqtimeout.conf
    assert f"AuthUserFile {tmp_path}/etc/htpasswd" in conf  # hydra's basic-auth target


def test_a_flow_gets_its_pair_label_whichever_way_it_reads() -> None:
    table = (
        "StartTime,SrcAddr,DstAddr,Dport,Proto\n"
        "1.0,10.77.0.11,10.77.1.11,22,tcp\n"
        "2.0,10.77.1.11,10.77.0.11,51000,tcp\n"
        "3.0,10.77.0.11,10.77.1.21,80,tcp\n"
        "Summary\n"
        "flows,bytes,packets,avg_bps\n"
    )
    rows = list(label_rows(csv.reader(io.StringIO(table)), "SrcAddr", "DstAddr", scenario_labels()))
    assert rows[0][-1] == "Label"
    assert [r[-1] for r in rows[1:3]] == ["SSH password guessing hydra"] * 2
    assert rows[3][-1] == "background"  # a pair of two scenarios' addresses is nobody's
    assert rows[4:] == [["Summary"], ["flows", "bytes", "packets", "avg_bps"]]  # nfdump's, as written


def test_a_spoofed_scenarios_records_are_labelled_by_its_victims_address_alone() -> None:
    spoofed = [sc for sc in SCENARIOS if sc.spoofed]
    assert [sc.label for sc in spoofed] == ["DDoS SYN flood hping3 random sources"]
    victim = spoofed[0].dst
    table = (
        "SrcAddr,DstAddr\n"
        f"203.0.113.9,{victim}\n"  # a random source
        f"{victim},198.51.100.4\n"  # an answer to one
        "203.0.113.9,10.77.1.11\n"  # the same source at another scenario's victim: nobody's
    )
    rows = list(label_rows(csv.reader(io.StringIO(table)), "SrcAddr", "DstAddr", scenario_labels()))
    assert [r[-1] for r in rows[1:]] == [spoofed[0].label] * 2 + ["background"]


def test_missing_tools_names_debian_packages_once() -> None:
    assert missing_tools(lambda cmd: None if cmd in ("nfcapd", "nfdump", "ra") else "/usr/bin/x") == [
        "argus-client",
        "nfdump",
    ]
    assert missing_tools(lambda cmd: "/usr/bin/x") == []


def test_a_tool_stopped_at_its_time_leaves_no_child_behind(tmp_path: Path) -> None:
    """hydra forks a child per task; stopping the parent alone left them running."""
    marker = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {marker}; wait"
    with open(tmp_path / "log", "wb") as log:
        _run_for(["sh", "-c", script], 1.0, log, tmp_path)
    child = int(marker.read_text())
    for _ in range(50):  # the kill is delivered at once; reaping by init may take a moment
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"
