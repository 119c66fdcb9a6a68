"""``ssa`` through ``main([...])``, one smoke test or more per command and action.

The commands that need no service run here as unit tests, on temporary folders. Those that need
Kafka, Elasticsearch or Flink are marked ``integration`` and run on the shared local stack, on
topics, consumer groups and indices of their own (``SSA_*`` overrides). ``ssa down`` is run for
real only on a data folder where nothing runs: the shared stack is never stopped.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from awareness.killchain import STAGES
from infra.settings import Settings, load_settings
from infra.tenant_indices import soc_alias
from ingest.parsers import FORMAT_ALIASES
from ingest.pipeline import FORMATS
from ssa.cli import HANDLERS, main
from ssa.parser import COMMANDS, parse

SAMPLES = Path(__file__).parent / "samples"
SIM_ARGS = ["--tenants", "3", "--hosts", "1", "--vms-per-tenant", "2", "--rate", "5", "--duration", "120",
            "--scenarios", "brute_force=1,port_scan=1"]  # fmt: skip
SIM_START_MS = "1736150400000"  # 2025-01-06T08:00:00Z: files of fixed content


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return _one_line(capsys.readouterr().err)


# --- the argument tree ------------------------------------------------------------------------
def test_every_command_and_action_has_a_handler() -> None:
    assert set(HANDLERS) == set(COMMANDS)
    assert parse(["alerts", "close", "a1"]).command == "alerts close"
    assert parse(["dashboards", "build"]).command == "dashboards build"
    assert parse(["down"]).command == "down"


def test_flags_each_action_reads_are_accepted() -> None:
    listing = parse(["alerts", "list", "--tenant", "t-acme", "--status", "open", "--severity", "high",
                     "--severity", "critical", "--category", "dos", "--since", "now-1d", "--limit", "5",
                     "--json"])  # fmt: skip
    assert (listing.tenant, listing.status, listing.severity, listing.limit) == (
        "t-acme", "open", ["high", "critical"], 5
    )  # fmt: skip
    ack = parse(["alerts", "ack", "a1", "--by", "ana", "--reason", "mine", "--tenant", "t-acme"])
    assert (ack.alert_id, ack.by, ack.reason, ack.tenant) == ("a1", "ana", "mine", "t-acme")
    assert parse(["alerts", "show", "a1", "--json"]).json
    built = parse(["dashboards", "build", "--out", "d", "--es-auth", "apikey"])
    assert (built.out, built.es_auth) == ("d", "apikey")
    pushed = parse(["dashboards", "publish", "--url", "http://g", "--token-file", "t", "--built", "d"])
    assert (pushed.url, pushed.token_file, pushed.built) == ("http://g", "t", "d")


def test_detect_no_awareness_reaches_the_job(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not parse(["detect"]).no_awareness
    asked: list[list[str]] = []

    def job(argv: list[str]) -> int:  # the job's entry point, recorded instead of started
        asked.append(argv)
        return 0

    monkeypatch.setattr("streams.__main__.main", job)
    assert main(["detect", "--bounded", "--no-indexer", "--no-awareness"]) == 0
    assert main(["detect", "--no-restore", "--no-awareness"]) == 0
    assert main(["detect", "--no-restore"]) == 0
    assert asked == [
        ["--bounded", "--no-indexer", "--no-awareness"], ["--no-restore", "--no-awareness"], ["--no-restore"]
    ]  # fmt: skip
    # Resuming a checkpoint that holds the stage's state would fail in Flink: refused before any service.
    line = _usage_error(capsys, ["detect", "--no-awareness"])
    assert line.startswith("ssa detect: error: --no-awareness needs --bounded or --no-restore")
    assert len(asked) == 3


@pytest.mark.parametrize(
    ("argv", "leaf", "named"),
    [
        (["alerts", "ack", "a1", "--limit", "5"], "alerts ack", "--limit"),
        (["alerts", "close", "a1", "--json"], "alerts close", "--json"),
        (["alerts", "show", "a1", "--reason", "x"], "alerts show", "--reason"),
        (["alerts", "list", "--by", "ana"], "alerts list", "--by"),
        (["alerts", "list", "--severity", "urgent"], "alerts list", "urgent"),
        (["alerts", "show"], "alerts show", "alert_id"),
        (["dashboards", "build", "--url", "http://g"], "dashboards build", "--url"),
        (["dashboards", "publish", "--token-file", "t"], "dashboards publish", "--url"),
        (["simulate", "--kafka-rate", "0"], "simulate", "--kafka-rate"),
        (["up", "--bogus"], "up", "--bogus"),
    ],
)
def test_a_flag_the_action_does_not_read_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], leaf: str, named: str
) -> None:
    line = _usage_error(capsys, argv)
    assert line.startswith(f"ssa {leaf}: error: ")
    assert named in line
    assert line.endswith(f"(see ssa {leaf} --help)")


# --- commands without services ----------------------------------------------------------------
def test_simulate_writes_events_truth_and_registry(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = isolated / "sim"
    assert main(["simulate", *SIM_ARGS, "--start-ms", SIM_START_MS, "--output", str(out)]) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    m = re.fullmatch(
        r"simulate: ([\d,]+) events -> (\S+), (\d+) scenarios and (\d+) background context records -> (\S+), "
        r"registry -> (\S+)",
        last,
    )
    assert m is not None, last
    events, truth = Path(m[2]), Path(m[5])
    assert (events, truth, Path(m[6])) == (
        out / "events.jsonl",
        out / "ground_truth.jsonl",
        out / "tenants.yaml",
    )
    assert int(m[1].replace(",", "")) == len(events.read_text().splitlines()) > 0
    assert int(m[3]) + int(m[4]) == len(truth.read_text().splitlines()) and int(m[3]) > 0 and int(m[4]) > 0
    assert (out / "tenants.yaml").stat().st_size > 0


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--tenants", "1"], "tenants must be within 3..250"),
        (["--scenarios", "no_such_attack"], "unknown scenario 'no_such_attack'"),
        (["--duration", "0"], "duration_s and slice_s must be positive"),
    ],
)
def test_simulate_out_of_range_is_one_line(
    isolated: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    assert main(["simulate", *flags, "--output", str(isolated / "sim")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("ssa simulate: ") and words in line
    assert not (isolated / "sim").exists()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", *SIM_ARGS, "--start-ms", SIM_START_MS, "--output", str(out)]) == 0
    return out


def test_scan_reports_its_counts(simulated: Path, isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alerts = isolated / "alerts.jsonl"
    argv = ["scan", str(simulated / "events.jsonl"), "--tenants", str(simulated / "tenants.yaml")]
    assert main([*argv, "--output", str(alerts)]) == 0
    line = _one_line(capsys.readouterr().err)
    m = re.fullmatch(
        r"scan: ([\d,]+) events, ([\d,]+) alerts, 0 rejected lines, 0 late, 0 detector failures", line
    )
    assert m is not None, line
    assert int(m[1].replace(",", "")) == len((simulated / "events.jsonl").read_text().splitlines())
    written = [json.loads(x) for x in alerts.read_text().splitlines()]
    assert int(m[2]) == len(written) > 0
    assert {a["category"] for a in written} <= {"brute_force", "port_scan"}


def test_evaluate_prints_the_scorecard(
    simulated: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", str(simulated / "events.jsonl"), str(simulated / "ground_truth.jsonl"),
            "--tenants", str(simulated / "tenants.yaml")]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["events"] == len((simulated / "events.jsonl").read_text().splitlines())
    assert set(card["categories"]) == {"brute_force", "port_scan"}
    assert card["alerts"] > 0
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert f"events {card['events']}, alerts {card['alerts']}" in table
    assert re.search(r"^port_scan\s+\d", table, re.MULTILINE)


def test_evaluate_malformed_or_missing_truth_is_one_line(
    simulated: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = isolated / "truth.jsonl"
    bad.write_text('{"scenario": "x"}\nnot json\n')
    assert main(["evaluate", str(simulated / "events.jsonl"), str(bad)]) == 1
    assert _one_line(capsys.readouterr().err).startswith(f"ssa evaluate: malformed ground truth at {bad}:1: ")
    missing = isolated / "none.jsonl"
    assert main(["evaluate", str(simulated / "events.jsonl"), str(missing)]) == 1
    assert _one_line(capsys.readouterr().err) == f"ssa evaluate: no such file: {missing}"


def test_ingest_sshd_is_the_syslog_reader(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for name in ("syslog", "sshd", "SSHD"):
        out = isolated / f"{name}.jsonl"
        argv = ["ingest", str(SAMPLES / "auth.log"), "--format", name, "--year", "2025", "--tenant", "t-acme"]
        assert main([*argv, "--output", str(out)]) == 0
        m = re.search(r"^ingest: ([\d,]+) events \(auth ([\d,]+)\)", capsys.readouterr().err, re.MULTILINE)
        assert m is not None and m[1] == m[2]
        outputs.append(out.read_bytes())
        assert int(m[1].replace(",", "")) == len(outputs[-1].splitlines()) > 0
    assert outputs[0] == outputs[1] == outputs[2]
    assert {json.loads(x)["kind"] for x in outputs[0].splitlines()} == {"auth"}


def test_every_format_alias_names_a_format() -> None:
    assert set(FORMAT_ALIASES.values()) <= set(FORMATS)
    assert FORMAT_ALIASES["sshd"] == "syslog"


def test_the_cli_takes_every_alias_the_parsers_know(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One alias table: ``--format nfdump-csv`` once failed at the CLI while the parsers knew it."""
    from ssa.cli import resolve_format

    for alias, name in FORMAT_ALIASES.items():
        assert resolve_format(alias.upper()) == name


def test_unknown_format_says_which_format_reads_what(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = isolated / "o.jsonl"
    assert main(["ingest", str(SAMPLES / "auth.log"), "--format", "ssh", "--output", str(out)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("ssa ingest: unknown --format 'ssh': ")
    for name, spec in FORMATS.items():
        assert f"{name} " in line and spec.description in line
    assert f"syslog (or sshd) reads {FORMATS['syslog'].description}" in line
    assert not out.exists()


def test_ingest_expected_failures_are_one_line(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(isolated / "o.jsonl")
    assert main(["ingest", "udp://127.0.0.1:2055", "--format", "zeek", "--output", out]) == 1
    assert _one_line(capsys.readouterr().err).startswith("ssa ingest: udp:// input is NetFlow/IPFIX")
    assert main(["ingest", str(isolated / "none.log"), "--format", "sshd", "--output", out]) == 1
    assert _one_line(capsys.readouterr().err) == f"ssa ingest: no such file: {isolated / 'none.log'}"


def test_dashboards_build_writes_what_it_counts(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = isolated / "built"
    assert main(["dashboards", "build", "--out", str(out), "--es-auth", "none"]) == 0
    m = re.fullmatch(r"dashboards: wrote (\d+) files under (\S+)", _one_line(capsys.readouterr().err))
    assert m is not None and Path(m[2]) == out
    files = [p for p in out.rglob("*") if p.is_file()]
    assert int(m[1]) == len(files) > 0
    assert any(p.suffix == ".json" for p in files)


def test_dashboards_publish_failures_are_one_line(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = isolated / "token"
    argv = ["dashboards", "publish", "--url", "http://127.0.0.1:1", "--token-file", str(token)]
    assert main(argv) == 1
    assert _one_line(capsys.readouterr().err).startswith(
        f"ssa dashboards publish: cannot read token file {token}"
    )
    token.write_text("secret\n")
    assert main(argv) == 1  # port 1: nothing listens
    assert _one_line(capsys.readouterr().err).startswith("ssa dashboards publish: cannot reach Grafana at ")


def test_down_and_status_where_nothing_runs(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # ``down`` for real, on an empty data folder: the shared stack's pid files are elsewhere.
    assert main(["down"]) == 0
    assert capsys.readouterr().err.splitlines() == ["elasticsearch: not running", "kafka: not running"]
    assert main(["status"]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["kafka", "stopped"], ["elasticsearch", "stopped"]]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["report", "--from", "yesterday", "--to", "now"],
         "ssa report: cannot read --from 'yesterday': give epoch ms, an ISO 8601 time (2025-01-15T10:00Z) or now-7d"),
        (["report", "--from", "now", "--to", "now-1d"], "ssa report: --to must be after --from"),
        (["alerts", "list", "--since", "last week"],
         "ssa alerts list: cannot read --since 'last week': give epoch ms, an ISO 8601 time (2025-01-15T10:00Z) or now-7d"),
        (["demo", "--tenants", "2"], "ssa demo: tenants must be within 3..250 (cross-tenant scenarios need 3), got 2"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_before_any_service(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    line: str,
) -> None:
    monkeypatch.setenv("SSA_ES_URL", "http://127.0.0.1:1")  # a service call would fail otherwise
    monkeypatch.setattr("streams.demo.run_demo", _must_not_run)
    assert main(argv) == 1
    assert _one_line(capsys.readouterr().err) == line


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command went on after a bad value")


def test_report_anonymize_without_a_key_is_one_line(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--from", "now-1d", "--to", "now", "--anonymize"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("ssa report: --anonymize needs a secret key of at least ")


def test_a_service_that_does_not_answer_is_one_line(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SSA_ES_URL", "http://127.0.0.1:1")
    assert main(["alerts", "list"]) == 1
    assert (
        _one_line(capsys.readouterr().err)
        == "ssa alerts list: Elasticsearch at http://127.0.0.1:1 did not answer"
    )


def test_a_bad_setting_is_one_line(isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("SSA_KAFKA_PORT", "many")
    assert main(["status"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line == "ssa status: environment SSA_KAFKA_PORT: kafka_port must be an integer, got 'many'"


@pytest.mark.parametrize(
    ("target", "argv"),
    [
        ("detectors.scan.scan", ["scan", str(SAMPLES / "auth.log")]),
        (
            "ingest.pipeline.run_ingest",
            ["ingest", str(SAMPLES / "auth.log"), "--format", "sshd", "--output", "-"],
        ),
        ("dashboards.build.build_all", ["dashboards", "build"]),
    ],
)
def test_an_unexpected_value_error_keeps_its_traceback(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    target: str,
    argv: list[str],
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(target, broken)
    with pytest.raises(ValueError, match="a bug deep inside"):
        main(argv)
    assert "a bug deep inside" not in capsys.readouterr().err  # not turned into a user's error line


# --- commands on the shared stack -------------------------------------------------------------
def _own_settings(stack: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Point every ``SSA_*`` setting at the stack, with topics, groups and indices of this test."""
    run = f"cli{uuid.uuid4().hex[:8]}"
    overrides = {
        "topic_prefix": f"test.{run}.telemetry.",
        "topic_alerts": f"test.{run}.alerts",
        "topic_metrics": f"test.{run}.metrics",
        "topic_dlq": f"test.{run}.dlq",
        "detect_group_id": f"test-{run}-detect",
        "indexer_group_id": f"test-{run}-indexer",
        "index_alerts_prefix": f"test-{run}-alerts-",
        "index_metrics_prefix": f"test-{run}-metrics-",
        "tenants_file": str(tmp_path / "tenants.yaml"),
        "checkpoint_dir": str(tmp_path / "checkpoints"),
    }
    for name, value in (stack.to_env() | {f"SSA_{k.upper()}": v for k, v in overrides.items()}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SSA_SETTINGS_FILE", raising=False)
    settings = load_settings()
    assert settings.index_alerts_prefix == overrides["index_alerts_prefix"]
    return settings


@pytest.fixture
def own(stack: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from infra.clients import es_client

    settings = _own_settings(stack, monkeypatch, tmp_path)
    yield settings
    # Indices and topics go with the session's leftovers; the templates the indexer put are named
    # after the test's prefixes.
    es = es_client(settings)
    try:
        for prefix in (settings.index_alerts_prefix, settings.index_metrics_prefix):
            found = es.options(ignore_status=404).indices.get_index_template(name=prefix.rstrip("-") + "*")
            for template in found.get("index_templates", []):
                es.indices.delete_index_template(name=template["name"])
    finally:
        es.close()


@pytest.mark.integration
def test_up_and_status_on_the_running_stack(stack: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up"]) == 0
    captured = capsys.readouterr()
    assert "kafka: already running" in captured.err and "elasticsearch: already running" in captured.err
    assert [line.split()[:2] for line in captured.out.splitlines()] == [
        ["kafka", "healthy"],
        ["elasticsearch", "healthy"],
    ]
    assert main(["status"]) == 0
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()] == [
        ["kafka", "healthy"],
        ["elasticsearch", "healthy"],
    ]


@pytest.mark.integration
def test_ingest_to_kafka(own: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from infra.bootstrap import ensure_topics
    from streams.demo import records_in_topic

    ensure_topics(own)
    argv = ["ingest", str(SAMPLES / "auth.log"), "--format", "sshd", "--year", "2025", "--tenant", "t-acme"]
    assert main(argv) == 0
    m = re.search(r"^ingest: ([\d,]+) events \(auth ", capsys.readouterr().err, re.MULTILINE)
    assert m is not None
    records = records_in_topic(own, own.telemetry_topics["auth"])
    assert len(records) == int(m[1].replace(",", "")) > 0


@pytest.mark.integration
def test_alerts_and_report_on_an_empty_prefix(own: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "list"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and _one_line(captured.err) == "alerts: 0 shown"
    assert main(["report", "--from", "2001-01-01", "--to", "2001-01-02", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["alerts"] == 0
    assert report["period"]["from_ms"] == 978_307_200_000


@pytest.mark.integration
def test_simulate_detect_index_then_the_analyst_commands(
    own: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.clients import es_client
    from streams.demo import alert_ids_in_topic

    assert main(["simulate", *SIM_ARGS, "--kafka"]) == 0
    assert "simulate: " in capsys.readouterr().err

    assert main(["detect", "--bounded", "--no-indexer"]) == 0
    assert "detect: job finished" in capsys.readouterr().out
    ids = alert_ids_in_topic(own, own.topic_alerts)
    assert ids, "the job wrote no alert for the injected attacks"

    # ``ssa index`` runs until interrupted: stop it once every alert is searchable (or at 90 s).
    es = es_client(own)
    done = threading.Event()

    def interrupt_when_indexed() -> None:
        import _thread

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not done.is_set():
            es.indices.refresh(index=own.index_alerts_pattern, ignore_unavailable=True, allow_no_indices=True)
            got = es.count(
                index=soc_alias(own.index_alerts_prefix), ignore_unavailable=True, allow_no_indices=True
            )
            threat = own.index_threat_prefix + "*"  # the SOC overview below needs threat levels too
            es.indices.refresh(index=threat, ignore_unavailable=True, allow_no_indices=True)
            levels = es.count(index=threat, ignore_unavailable=True, allow_no_indices=True)["count"]
            if got["count"] >= len(ids) and levels > 0:
                break
            time.sleep(0.5)
        if not done.is_set():
            _thread.interrupt_main()

    # A process started in the background by a non-interactive shell inherits SIGINT ignored, and
    # then interrupt_main() does nothing (a CI run launched that way hung here): Python's own
    # handler, for the call only.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_when_indexed, daemon=True)
    watcher.start()
    try:
        assert main(["index"]) == 0
    finally:
        done.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)
    capsys.readouterr()
    es.indices.refresh(index=own.index_alerts_pattern)
    assert es.count(index=soc_alias(own.index_alerts_prefix))["count"] == len(ids)  # each alert once
    es.close()

    assert main(["alerts", "list", "--json"]) == 0
    captured = capsys.readouterr()
    listed = [json.loads(line) for line in captured.out.splitlines()]
    assert {a["alert_id"] for a in listed} == ids
    assert _one_line(captured.err) == f"alerts: {len(ids)} shown"

    first = sorted(ids)[0]
    assert main(["alerts", "show", first, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["alert_id"] == first
    assert main(["alerts", "ack", first, "--by", "ana", "--reason", "looking"]) == 0
    assert first in capsys.readouterr().out
    assert main(["alerts", "close", first, "--by", "bo"]) == 0
    capsys.readouterr()
    assert main(["alerts", "list", "--status", "closed", "--json"]) == 0
    assert [json.loads(line)["alert_id"] for line in capsys.readouterr().out.splitlines()] == [first]
    assert main(["alerts", "ack", first]) == 1  # closed: the workflow refuses, in one line
    assert _one_line(capsys.readouterr().err).startswith("ssa alerts ack: ")

    # An alert's ts is the end of its window, which the bounded run closed ahead of the clock.
    tomorrow = str(int(time.time() * 1000) + 86_400_000)
    assert main(["report", "--from", "now-1d", "--to", tomorrow, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["alerts"] == len(ids)
    # The SOC overview section: the board's queries on what the pipeline wrote.
    overview = report["tables"]
    assert [r["key"] for r in overview["overview_stage"]] == list(STAGES)
    assert overview["overview_level"][0]["level_rank"] in (0, 1, 2, 3)  # the cloud's level at the end
    assert overview["overview_tenants"] and overview["overview_course"]
    assert sum(r["tenants"] for r in overview["overview_levels"]) == len(overview["overview_tenants"])


@pytest.mark.integration
def test_demo_end_to_end(own: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seed", "5", "--tenants", "3", "--minutes", "1", "--rate", "20"]) == 0
    captured = capsys.readouterr()
    assert "Situational summary (run " in captured.out
    assert "[4/4]" in captured.err
