"""Coverage-guided fuzz target of one parser (atheris / libFuzzer).

``python -m tests.fuzz.fuzz_parsers FORMAT [libFuzzer options] [CORPUS_DIR ...]`` parses every
input libFuzzer makes with ``parse_bytes`` and raises ``InvariantBroken`` when an invariant of
``tests.fuzz.invariants`` breaks, so libFuzzer records the input as a crash. With no corpus
directory given, it seeds ``.cache/fuzz/corpus/<format>/`` from the format's samples (never
committed) and fuzzes there; a dictionary of hostile tokens guides the mutations. ``make fuzz``
runs every format through ``tests.fuzz.run_all``. The target ``all`` fuzzes every format in one
process (the first byte of an input picks its format): the short run of the test suite uses it.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Final

import atheris

from infra.settings import PROJECT_ROOT

with atheris.instrument_imports(include=["ingest"]):
    from ingest.parsers import FORMAT_NAMES

from tests.fuzz.invariants import check_parse
from tests.fuzz.seeds import seed_inputs
from tests.fuzz.strategies import HOSTILE_TOKENS

__all__ = ["FUZZ_DIR", "corpus_dir", "main", "write_dictionary"]

FUZZ_DIR: Final = PROJECT_ROOT / ".cache" / "fuzz"


ALL: Final = "all"  # one target for every format: the input's first byte picks the format


def seeds(fmt: str, hostile: bool = True) -> list[tuple[str, bytes]]:
    """Seed inputs of the target ``fmt`` (for ``all``: each format's, behind its selector byte)."""
    if fmt != ALL:
        return seed_inputs(fmt, hostile)
    return [(f"{name}-{i}", bytes([i]) + data) for i, name in enumerate(FORMAT_NAMES)
            for _, data in seed_inputs(name, hostile)]  # fmt: skip


def corpus_dir(fmt: str, root: Path | None = None, hostile: bool = True) -> Path:
    """``.cache/fuzz/corpus/<format>/`` (or ``root/<format>``), seeded with the format's samples
    and (``hostile``) its regression samples; idempotent."""
    path = (root or FUZZ_DIR / "corpus") / fmt
    path.mkdir(parents=True, exist_ok=True)
    for name, data in seeds(fmt, hostile):
        digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()[:12]
        target = path / f"seed-{Path(name).stem}-{digest}"
        if not target.exists():
            target.write_bytes(data)
    return path


def write_dictionary() -> Path:
    """A libFuzzer dictionary of the hostile values the property tests also use."""
    path = FUZZ_DIR / "hostile.dict"
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    for token in HOSTILE_TOKENS:
        raw = token.encode("utf-8", "surrogatepass")
        if raw and len(raw) <= 64:
            entries.append('"' + "".join(f"\\x{b:02x}" for b in raw) + '"')
    path.write_text("\n".join(entries) + "\n")
    return path


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in (*FORMAT_NAMES, ALL):
        sys.exit(f"usage: python -m tests.fuzz.fuzz_parsers FORMAT|{ALL} [libFuzzer options]\n"
                 f"formats: {', '.join(FORMAT_NAMES)}")  # fmt: skip
    fmt, options = argv[1], argv[2:]

    def one_input(data: bytes) -> None:
        if fmt != ALL:
            check_parse(fmt, data)
        elif data:
            check_parse(FORMAT_NAMES[data[0] % len(FORMAT_NAMES)], data[1:])

    if not any(not opt.startswith("-") for opt in options):
        options.append(str(corpus_dir(fmt)))
    if not any(opt.startswith("-dict=") for opt in options):
        options.insert(0, f"-dict={write_dictionary()}")
    atheris.Setup([argv[0], *options], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
