"""Evaluation: the scorecard (alerts against ground truth) and scripts over real public data.

Scripts take data paths as arguments and write JSON under ``results/``; data is never copied
into the repository. Run everything with ``python -m detectors.evaluation --help``. The
real-data scorecard (``real``: parse + detectors over the labelled real captures, with
``captures`` describing them and ``coverage`` the scoring) is ``ssa evaluate --dataset NAME|all``.
"""

__all__: list[str] = []
