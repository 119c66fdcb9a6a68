"""``make fuzz``: run the fuzz target of every format (or those named) for a set time each.

``python -m tests.fuzz.run_all [--seconds N] [FORMAT ...]``. Each format runs in its own process
for ``N`` seconds in all; libFuzzer stops at the first crash, so the run is resumed (same corpus)
until the time is spent, without the inputs that crashed. Crashes go to ``.cache/fuzz/<format>/`` (``crash-*``, ``timeout-*``,
``oom-*``); one summary line per format gives the executions and the crashes of this run, or why
its target did not run (it exited non-zero leaving no crash input: an import error, a missing
package). Exits 1 if any format crashed or did not run. ``summarise`` reads libFuzzer's own statistics from its output.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ingest.parsers import FORMAT_NAMES
from tests.fuzz.fuzz_parsers import FUZZ_DIR, corpus_dir

__all__ = ["FuzzRun", "fuzz_format", "main", "summarise"]

MAX_RESUMES: Final = 20  # a format that keeps crashing needs fixing, not more fuzzing
_EXECUTED: Final = re.compile(rb"stat::number_of_executed_units:\s*(\d+)")
_PROGRESS: Final = re.compile(rb"^#(\d+)\s", re.MULTILINE)
_WROTE_UNIT: Final = b"Test unit written to"  # libFuzzer, on saving a crash, timeout or OOM input
_ARTIFACT: Final = ("crash-", "timeout-", "oom-", "leak-")


@dataclass
class FuzzRun:
    fmt: str
    executions: int = 0
    crashes: int = 0
    seconds: float = 0.0
    failure: str = ""  # why the target stopped without libFuzzer finding a crash (it did not run)

    def line(self) -> str:
        where = FUZZ_DIR / self.fmt
        if self.failure:
            return f"fuzz {self.fmt:13s} did not run: {self.failure}"
        return (f"fuzz {self.fmt:13s} {self.executions:>10,} executions in {self.seconds:5.1f} s, "
                f"{self.crashes} crashes" + (f" (in {where})" if self.crashes else ""))  # fmt: skip


def summarise(output: bytes) -> int:
    """Executions libFuzzer reports: its final statistics, else its last progress line."""
    final = _EXECUTED.findall(output)
    if final:
        return int(final[-1])
    progress = _PROGRESS.findall(output)
    return int(progress[-1]) if progress else 0


def _last_line(output: bytes) -> str:
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def _artifacts(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(_ARTIFACT)} if folder.is_dir() else set()


def _drop_from_corpus(corpus: Path, crashes_dir: Path, artifacts: set[str]) -> None:
    """Take crashing inputs out of the corpus: libFuzzer replays the corpus first on resuming, and
    a seed that crashes would stop every resumed run at once."""
    bad = {(crashes_dir / name).read_bytes() for name in artifacts}
    for path in corpus.iterdir():
        if path.is_file() and path.read_bytes() in bad:
            path.unlink()


def fuzz_format(fmt: str, seconds: int, log: Path | None = None) -> FuzzRun:
    crashes_dir = FUZZ_DIR / fmt
    crashes_dir.mkdir(parents=True, exist_ok=True)
    before = _artifacts(crashes_dir)
    corpus = corpus_dir(fmt)
    run = FuzzRun(fmt)
    start = time.monotonic()
    for _ in range(MAX_RESUMES):
        left = seconds - (time.monotonic() - start)
        if left < 1:
            break
        cmd = [sys.executable, "-m", "tests.fuzz.fuzz_parsers", fmt, f"-max_total_time={int(left)}",
               "-print_final_stats=1", "-timeout=20", "-rss_limit_mb=2048",
               f"-artifact_prefix={crashes_dir}/", str(corpus)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, check=False)
        run.executions += summarise(proc.stderr)
        if log is not None:
            with log.open("ab") as fh:
                fh.write(proc.stderr)
        if proc.returncode == 0:
            break
        if _WROTE_UNIT not in proc.stderr:  # exited non-zero, no input saved: the target did not run
            run.failure = _last_line(proc.stderr)
            break
        _drop_from_corpus(corpus, crashes_dir, _artifacts(crashes_dir) - before)
    run.seconds = time.monotonic() - start
    run.crashes = len(_artifacts(crashes_dir) - before)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run_all")
    parser.add_argument("formats", nargs="*", help=f"default: all of {', '.join(FORMAT_NAMES)}")
    parser.add_argument("--seconds", type=int, default=600, help="fuzzing time per format")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.formats) - set(FORMAT_NAMES))
    if unknown:
        parser.error(f"unknown formats {', '.join(unknown)}; choose from {', '.join(FORMAT_NAMES)}")
    failed = False
    for fmt in args.formats or FORMAT_NAMES:
        log = FUZZ_DIR / f"{fmt}.log"
        log.unlink(missing_ok=True)
        run = fuzz_format(fmt, args.seconds, log)
        print(run.line(), flush=True)
        failed |= run.crashes > 0 or bool(run.failure)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
