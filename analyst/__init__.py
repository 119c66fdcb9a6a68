"""The analyst's side: the alert and incident workflow and the incident statistics report.

Public entry points (the ``ssa`` command line calls these):

- :class:`analyst.alerts.AlertStore` (``ssa alerts list|show|ack|close``)
- :class:`analyst.incidents.IncidentStore` (``ssa incidents list|show|ack|close|snooze``)
- :func:`analyst.report.build_report`, :func:`analyst.anonymize.anonymize` and
  :func:`analyst.render.render` (``ssa report``)

It reads what the job wrote to Elasticsearch; Grafana's boards are ``dashboards/``.
Modules are imported where used (matplotlib is not loaded by ``import analyst``).
"""

from __future__ import annotations

__all__: list[str] = []
