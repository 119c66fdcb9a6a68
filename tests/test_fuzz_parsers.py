"""Every parser on hostile input (issue 18): no exception escapes ``parse_bytes``, records in =
events + DLQ + counted skips, every event survives the canonical decoder and its bounds, DLQ
reasons are in our words (``tests.fuzz.invariants``). Inputs are the samples mutated by
Hypothesis (``tests.fuzz.strategies``), random bytes, the regression samples under
``tests/samples/hostile/`` and a short run of the coverage-guided target of all formats.

Hypothesis profiles: ``ci`` (default: few examples, derandomized, so a run repeats) and ``fuzz``
(many; failures remembered in ``.cache/hypothesis``), chosen with ``HYPOTHESIS_PROFILE=fuzz``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from infra.settings import PROJECT_ROOT
from ingest.parsers import FORMAT_NAMES
from tests.fuzz.invariants import check_parse
from tests.fuzz.seeds import HOSTILE
from tests.fuzz.strategies import hostile_input, netflow_input

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, deadline=None,
                          suppress_health_check=_QUIET)  # fmt: skip
settings.register_profile("fuzz", max_examples=3000, deadline=None, suppress_health_check=_QUIET,
                          database=DirectoryBasedExampleDatabase(PROJECT_ROOT / ".cache" / "hypothesis"))  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@given(data=st.data())
def test_mutated_samples_keep_the_invariants(fmt, data):
    check_parse(fmt, data.draw(hostile_input(fmt), label="input"))


@given(data=netflow_input())
def test_hostile_netflow_packets_keep_the_invariants(data):
    check_parse("netflow", data)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@given(data=st.binary(max_size=512))
def test_random_bytes_keep_the_invariants(fmt, data):
    check_parse(fmt, data)


def _hostile_samples() -> list[tuple[str, str]]:
    if not HOSTILE.is_dir():
        return []
    return [(fmt.name, path.name) for fmt in sorted(HOSTILE.iterdir()) if fmt.is_dir()
            for path in sorted(fmt.iterdir()) if path.is_file()]  # fmt: skip


@pytest.mark.parametrize(("fmt", "name"), _hostile_samples())
def test_regression_samples_keep_the_invariants(fmt, name):
    """Every input the fuzzers ever broke a parser with."""
    out = check_parse(fmt, (HOSTILE / fmt / name).read_bytes())
    assert out.events or out.dlqs or out.skipped


def test_short_fuzz_run_of_every_format_finds_nothing(tmp_path):
    """The coverage-guided target of all formats at once, a few thousand executions from the
    samples of every format (the regression samples have a test of their own): no crash."""
    from tests.fuzz.fuzz_parsers import ALL, corpus_dir

    corpus = corpus_dir(ALL, tmp_path / "corpus", hostile=False)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.fuzz_parsers", ALL, "-runs=4000", "-max_total_time=10",
         "-seed=1", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, check=False, timeout=300,
    )  # fmt: skip
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    found = [line for line in proc.stderr.decode(errors="replace").splitlines() if "InvariantBroken" in line]
    assert proc.returncode == 0 and not crashes, found or proc.stderr.decode(errors="replace")[-2000:]


def test_a_target_that_does_not_start_is_reported_and_fails_make_fuzz(tmp_path, monkeypatch, capsys):
    """A fuzz target that exits before fuzzing (here atheris missing from the virtualenv, as while
    it is being rebuilt) used to be summed up as '0 executions, 0 crashes' and pass."""
    from tests.fuzz import run_all

    (tmp_path / "atheris.py").write_text('raise ImportError("atheris stands in as missing")\n')
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    run = run_all.fuzz_format("zeek", 60)
    assert run.failure == "ImportError: atheris stands in as missing", run
    assert (run.executions, run.crashes) == (0, 0) and run.seconds < 60
    assert run.line().endswith("did not run: ImportError: atheris stands in as missing")

    monkeypatch.setattr(run_all, "fuzz_format", lambda fmt, seconds, log: run)
    assert run_all.main(["--seconds", "1", "zeek"]) == 1
    assert "did not run" in capsys.readouterr().out
