"""Grafana dashboards as code and their publishing (the analyst's workflow and the report are
``analyst/``).

Public entry points (the ``ssa`` command line calls these):

- :func:`dashboards.build.build_all` and :func:`dashboards.publish.publish` (``ssa dashboards``)

Modules are imported where used (the Grafana SDK is not loaded by ``import dashboards``).
"""

from __future__ import annotations

__all__: list[str] = []
