"""Anomaly detectors on PyOD: windowed flow and process-activity features, per-tenant baselines
learned from the stream (``online``: bounded reservoirs, lazy refits, conformal calibration, kept
with the engine's pickled state), on by default. ``fit`` still fits models on a baseline period
into a models directory, which then seed the learned baselines (``store``).

Imports PyOD lazily (only when a model is fitted or loaded), so the rule engine never pays for it.
"""

__all__: list[str] = []
