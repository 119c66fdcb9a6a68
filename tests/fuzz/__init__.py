"""Fuzzing of the parsers: the invariants every parser keeps on hostile input (``invariants``),
the seed inputs built from ``tests/samples`` (``seeds``), the coverage-guided target
(``python -m tests.fuzz.fuzz_parsers FORMAT``) and the ``make fuzz`` driver (``run_all``)."""
