"""``ssa dashboards publish``: push the datasources and built dashboards to a Grafana over HTTP.

Idempotent: datasources are looked up by uid and updated in place (created when missing), the
``SSA`` folder is created once, and every dashboard is posted with its stable uid, ``id: null`` and
``overwrite: true``, so a second run gives each dashboard a new version and nothing new.
Every failure is raised as :class:`PublishError` with one line saying what to do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from dashboards.datasource import api_payloads
from infra.settings import Settings, load_settings

__all__ = ["FOLDER_TITLE", "FOLDER_UID", "PublishError", "PublishResult", "publish", "read_token"]

FOLDER_UID: Final = "ssa"
FOLDER_TITLE: Final = "SSA"


class PublishError(RuntimeError):
    """Publishing failed; ``str()`` is one line fit for the terminal."""


@dataclass
class PublishResult:
    url: str
    datasources_created: list[str] = field(default_factory=list)
    datasources_updated: list[str] = field(default_factory=list)
    dashboards: dict[str, int] = field(default_factory=dict)  # uid -> version now in Grafana

    def summary(self) -> str:
        versions = ", ".join(f"{uid} v{version}" for uid, version in sorted(self.dashboards.items()))
        return (
            f"published to {self.url}: datasources created {len(self.datasources_created)}, "
            f"updated {len(self.datasources_updated)}; dashboards: {versions}"
        )


def read_token(path: str | Path) -> str:
    """The API token (service account token) from a file; refuses an empty file."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PublishError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    if not token:
        raise PublishError(f"token file {path} is empty")
    return token


def _reason(exc: Exception) -> str:
    text = str(exc)
    if m := re.search(r"\[Errno -?\d+\] ([^'\")]+)", text):
        return m.group(1).strip().lower()
    if m := re.search(r"Failed to resolve '([^']+)'", text):
        return f"cannot resolve host {m.group(1)}"
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _explain(exc: Exception, url: str, doing: str) -> PublishError:
    if isinstance(exc, GrafanaUnauthorizedError):
        return PublishError(
            f"Grafana at {url} refused the token (401 Unauthorized) while {doing}: check --token-file"
        )
    if isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        return PublishError(
            f"Grafana at {url} refused the token (403 Forbidden) while {doing}: "
            "the service account needs the Editor role (Admin for datasources)"
        )
    if isinstance(exc, GrafanaTimeoutError):
        return PublishError(f"Grafana at {url} did not answer in time while {doing}")
    if isinstance(exc, GrafanaServerError | GrafanaClientError):
        return PublishError(f"Grafana at {url} answered {exc.status_code} while {doing}: {exc.message}")
    if isinstance(exc, niquests.exceptions.RequestException | GrafanaException | OSError):
        return PublishError(f"cannot reach Grafana at {url} while {doing}: {_reason(exc)}")
    return PublishError(f"unexpected error from Grafana at {url} while {doing}: {exc}")


def _load_built(built_dir: Path) -> dict[str, dict[str, Any]]:
    json_dir = built_dir / "json"
    files = sorted(json_dir.glob("*.json"))
    if not files:
        raise PublishError(f"no dashboards in {json_dir}: run `ssa dashboards build` first")
    models = {}
    for path in files:
        try:
            model = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PublishError(f"cannot read dashboard {path}: {exc}") from None
        if not isinstance(model, dict) or not model.get("uid"):
            raise PublishError(f"dashboard {path} has no uid")
        models[model["uid"]] = model
    return models


def _call(url: str, doing: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise _explain(exc, url, doing) from None
    except Exception as exc:
        raise _explain(exc, url, doing) from None


def publish(
    url: str,
    token: str,
    built_dir: str | Path,
    *,
    settings: Settings | None = None,
    datasource_url: str | None = None,
    timeout: float = 10.0,
) -> PublishResult:
    """Push datasources (auth from ``settings``) and every dashboard under ``built_dir/json``.

    ``datasource_url`` is Elasticsearch's URL as Grafana reaches it (default ``settings.es_url``).
    """
    models = _load_built(Path(built_dir))
    settings = settings or load_settings()
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    result = PublishResult(url=url)
    _call(url, "checking the token", api.organization.get_current_organization)
    for body in api_payloads(settings, datasource_url):
        uid = body["uid"]
        existing = _call(url, f"looking up datasource {uid}", api.datasource.get_datasource_by_uid, uid)
        if existing:
            _call(url, f"updating datasource {uid}", api.datasource.update_datasource_by_uid, uid, body)
            result.datasources_updated.append(uid)
        else:
            _call(url, f"creating datasource {uid}", api.datasource.create_datasource, body)
            result.datasources_created.append(uid)
    if not _call(url, "looking up the SSA folder", api.folder.get_folder, FOLDER_UID):
        _call(url, "creating the SSA folder", api.folder.create_folder, FOLDER_TITLE, FOLDER_UID)
    for uid, model in models.items():
        payload = {
            "dashboard": {**model, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "ssa dashboards publish",
        }
        answer = _call(url, f"saving dashboard {uid}", api.dashboard.update_dashboard, payload)
        if not isinstance(answer, dict):
            raise PublishError(f"Grafana at {url} gave no answer for dashboard {uid}")
        result.dashboards[uid] = int(answer.get("version") or 0)
    return result
