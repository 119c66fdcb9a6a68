"""Grafana dashboards as code, their publishing, the alert workflow and incident statistics export.

Public entry points (the ``ssa`` command line calls these):

- :func:`dashboards.build.build_all` and :func:`dashboards.publish.publish` (``ssa dashboards``)
- :class:`dashboards.alerts.AlertStore` (``ssa alerts list|show|ack|close``)
- :func:`dashboards.report.build_report`, :func:`dashboards.anonymize.anonymize` and
  :func:`dashboards.render.render` (``ssa report``)

Modules are imported where used (matplotlib and the Grafana SDK are not loaded by ``import dashboards``).
"""

from __future__ import annotations

__all__: list[str] = []
