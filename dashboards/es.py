"""The Elasticsearch client of :mod:`infra.clients` (API key or basic auth, CA file, from settings)."""

from __future__ import annotations

from infra.clients import es_client

__all__ = ["es_client"]
