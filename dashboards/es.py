"""An Elasticsearch 8.x client from :class:`infra.settings.Settings` (secrets read from files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from infra.settings import Settings

__all__ = ["es_client"]


def _read_secret(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def es_client(settings: Settings, request_timeout: float = 30.0) -> Elasticsearch:
    """Client for ``settings.es_url`` with API key, or basic auth, and CA file when set."""
    kwargs: dict[str, Any] = {"request_timeout": request_timeout}
    if settings.es_api_key_file:
        kwargs["api_key"] = _read_secret(settings.es_api_key_file)
    elif settings.es_username:
        password = _read_secret(settings.es_password_file) if settings.es_password_file else ""
        kwargs["basic_auth"] = (settings.es_username, password)
    if settings.es_ca_file:
        kwargs["ca_certs"] = settings.es_ca_file
    return Elasticsearch(settings.es_url, **kwargs)
