"""Anomaly detectors on PyOD: windowed flow and process-activity features, per-tenant baselines,
calibrated scores, fitted once on a baseline period and persisted in a models directory.

Imports PyOD lazily (only when a model is fitted or loaded), so the rule engine never pays for it.
"""

__all__: list[str] = []
