"""A Grafana organisation per tenant (``ssa tenants provision|revoke``, issue 22).

Each tenant gets the organisation ``SSA tenant <tenant>`` holding:

- the five SSA data sources with the same uids as the provider's (so the built dashboards work
  unchanged), each naming only that tenant's index pattern of its kind
  (``dashboards.datasource.datasources(settings, tenant)``) and sending the tenant's own Elasticsearch API
  key (``Authorization: ApiKey ...``, from the key file ``infra.es_security`` wrote; Grafana keeps
  it encrypted in ``secureJsonData``, it never comes back out of the API). With Elasticsearch
  security off there is no key: the data sources go without one and the line says so.
- the tenant dashboard (``TENANT_BOARDS``), its ``$tenant`` variable pinned to the tenant as a
  hidden constant. The provider-wide boards (SOC overview, pipeline health, cross-tenant matrix,
  VM escape per host) stay in the provider's organisation.

What isolates a tenant is the API key's role, enforced by Elasticsearch: a user of the tenant's
organisation who edits a data source's index pattern still reads only what the key may read.
Users are not made here: add the tenant's people to its organisation (Viewer) in Grafana.

Requests are built by pure functions (:class:`GrafanaRequest`) and sent as built, with the admin's
basic auth and ``X-Grafana-Org-Id`` for the calls inside an organisation;
``tests/test_grafana_orgs.py`` checks each against the operations and body models of Grafana's
published OpenAPI (``infra.api_specs``). Sent only when ``grafana_admin_user`` and
``grafana_admin_password_file`` are set (``grafana_url``; ``grafana_es_url``, default ``es_url``, is
Elasticsearch as Grafana reaches it); otherwise provisioning says in one line that it skipped.
Grafana needs ``users.allow_org_create`` only for non-admins: the server admin may always create
organisations, and becomes Admin of each one it creates.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from dashboards.datasource import datasources
from infra.settings import Settings

__all__ = [
    "TENANT_BOARDS",
    "GrafanaOrgError",
    "GrafanaRequest",
    "create_org_request",
    "dashboard_request",
    "datasource_bodies",
    "datasource_request",
    "delete_org_request",
    "find_org_request",
    "get_datasource_request",
    "grafana_configured",
    "org_name",
    "provision_grafana",
    "revoke_grafana",
    "tenant_dashboard",
]

TENANT_BOARDS: Final = ("ssa-tenant",)
BUILT_JSON: Final = Path(__file__).resolve().parent / "built" / "json"


class GrafanaOrgError(RuntimeError):
    """Grafana refused or could not be reached; one line."""


@dataclass(frozen=True)
class GrafanaRequest:
    method: str
    path: str  # under the Grafana URL, starting "/api/"
    body: dict[str, Any] | None = None
    org_id: int | None = None  # sent as X-Grafana-Org-Id


def org_name(tenant: str) -> str:
    return f"SSA tenant {tenant}"


def find_org_request(tenant: str) -> GrafanaRequest:
    return GrafanaRequest("GET", "/api/orgs/name/" + quote(org_name(tenant), safe=""))


def create_org_request(tenant: str) -> GrafanaRequest:
    return GrafanaRequest("POST", "/api/orgs", {"name": org_name(tenant)})


def delete_org_request(org_id: int) -> GrafanaRequest:
    return GrafanaRequest("DELETE", f"/api/orgs/{int(org_id)}")


def datasource_bodies(
    settings: Settings, tenant: str, api_key: str | None, es_url: str, ca_pem: str | None = None
) -> list[dict[str, Any]]:
    """The tenant's data sources: the provider's uids and names, the tenant's index patterns,
    the tenant's key (base64 ``id:api_key``) in an encrypted header when there is one."""
    bodies = []
    for ds in datasources(settings, tenant):
        json_data = ds.json_data()
        secure: dict[str, str] = {}
        if api_key:
            json_data["httpHeaderName1"] = "Authorization"
            secure["httpHeaderValue1"] = f"ApiKey {api_key}"
        if ca_pem:
            json_data["tlsAuthWithCACert"] = True
            secure["tlsCACert"] = ca_pem
        body: dict[str, Any] = {"name": ds.name, "uid": ds.uid, "type": "elasticsearch", "access": "proxy",
                                "url": es_url, "basicAuth": False, "jsonData": json_data}  # fmt: skip
        if secure:
            body["secureJsonData"] = secure
        bodies.append(body)
    return bodies


def datasource_request(body: Mapping[str, Any], org_id: int, exists: bool) -> GrafanaRequest:
    """Update the data source of that uid in place, or create it."""
    if exists:
        return GrafanaRequest(
            "PUT", f"/api/datasources/uid/{quote(body['uid'], safe='')}", dict(body), org_id
        )
    return GrafanaRequest("POST", "/api/datasources", dict(body), org_id)


def get_datasource_request(uid: str, org_id: int) -> GrafanaRequest:
    return GrafanaRequest("GET", f"/api/datasources/uid/{quote(uid, safe='')}", None, org_id)


def tenant_dashboard(model: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """A built board with its ``$tenant`` variable pinned to ``tenant`` (hidden constant)."""
    board = copy.deepcopy(dict(model))
    board["id"] = None
    variables = (board.get("templating") or {}).get("list") or []
    for i, var in enumerate(variables):
        if var.get("name") == "tenant":
            variables[i] = {"type": "constant", "name": "tenant", "label": "Tenant", "query": tenant,
                            "hide": 2, "skipUrlSync": False,
                            "current": {"text": tenant, "value": tenant}}  # fmt: skip
    return board


def dashboard_request(board: Mapping[str, Any], org_id: int) -> GrafanaRequest:
    body = {"dashboard": dict(board), "overwrite": True, "message": "ssa tenants provision"}
    return GrafanaRequest("POST", "/api/dashboards/db", body, org_id)


def grafana_configured(settings: Settings) -> bool:
    return bool(settings.grafana_admin_user and settings.grafana_admin_password_file)


# --- sending ----------------------------------------------------------------------------------
class _Grafana:
    def __init__(self, settings: Settings, timeout: float = 10.0) -> None:
        from infra.clients import read_secret

        self.url = settings.grafana_url.rstrip("/")
        self.auth = (settings.grafana_admin_user,
                     read_secret(settings.grafana_admin_password_file, "grafana_admin_password_file"))  # fmt: skip
        self.timeout = timeout

    def send(self, req: GrafanaRequest, missing_ok: bool = False) -> Any:
        import niquests

        headers = {"Accept": "application/json"}
        if req.org_id is not None:
            headers["X-Grafana-Org-Id"] = str(req.org_id)
        try:
            resp = niquests.request(req.method, self.url + req.path, json=req.body, headers=headers,
                                    auth=self.auth, timeout=self.timeout)  # fmt: skip
        except (niquests.exceptions.RequestException, OSError) as exc:
            raise GrafanaOrgError(
                f"cannot reach Grafana at {self.url}: {str(exc).splitlines()[0][:160]}"
            ) from None
        status = resp.status_code or 0
        if status == 404 and missing_ok:
            return None
        if status in (401, 403):
            raise GrafanaOrgError(
                f"Grafana at {self.url} refused the admin login ({status}) for {req.method} {req.path}: "
                "check grafana_admin_user and grafana_admin_password_file (a server admin)"
            )
        if status >= 300:
            text = (resp.text or "")[:200].replace("\n", " ")
            raise GrafanaOrgError(
                f"Grafana at {self.url} answered {status} to {req.method} {req.path}: {text}"
            )
        try:
            return resp.json() if resp.content else {}
        except ValueError:
            return {}


def _org_id(grafana: _Grafana, tenant: str, create: bool) -> tuple[int | None, bool]:
    found = grafana.send(find_org_request(tenant), missing_ok=True)
    if found:
        return int(found["id"]), False
    if not create:
        return None, False
    made = grafana.send(create_org_request(tenant))
    return int(made["orgId"]), True


def _encoded_key(path: Path) -> str:
    from infra.clients import encoded_es_api_key

    return encoded_es_api_key(str(path))


def provision_grafana(
    settings: Settings,
    tenants: Iterable[str],
    key_files: Mapping[str, Path],
    say: Callable[[str], None] = print,
    built_dir: Path = BUILT_JSON,
) -> list[str]:
    """Organisation, data sources and dashboards per tenant; one line per tenant, no secret."""
    tenants = list(tenants)
    if not grafana_configured(settings):
        say("grafana: grafana_admin_user and grafana_admin_password_file are not set: "
            f"no tenant organisation made for {len(tenants)} tenant(s)")  # fmt: skip
        return []
    boards = []
    for uid in TENANT_BOARDS:
        path = built_dir / f"{uid}.json"
        try:
            boards.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise GrafanaOrgError(
                f"cannot read dashboard {path}: {exc} (run `ssa dashboards build`)"
            ) from None
    ca_pem = Path(settings.es_ca_file).read_text(encoding="utf-8") if settings.es_ca_file else None
    grafana = _Grafana(settings)
    done = []
    for tenant in tenants:
        org_id, new = _org_id(grafana, tenant, create=True)
        assert org_id is not None
        key = _encoded_key(key_files[tenant]) if tenant in key_files else None
        bodies = datasource_bodies(settings, tenant, key, settings.grafana_es_url or settings.es_url, ca_pem)
        for body in bodies:
            exists = grafana.send(get_datasource_request(body["uid"], org_id), missing_ok=True) is not None
            grafana.send(datasource_request(body, org_id, exists))
        for board in boards:
            grafana.send(dashboard_request(tenant_dashboard(board, tenant), org_id))
        auth = "the tenant's API key" if key else "no key (Elasticsearch security is off)"
        say(f"{tenant}: grafana organisation '{org_name(tenant)}' (id {org_id}, {'new' if new else 'kept'}), "
            f"{len(bodies)} data sources with {auth}, dashboards {', '.join(TENANT_BOARDS)}")  # fmt: skip
        done.append(tenant)
    return done


def revoke_grafana(settings: Settings, tenant: str, say: Callable[[str], None] = print) -> None:
    """Delete the tenant's organisation (its data sources and dashboards go with it)."""
    if not grafana_configured(settings):
        say(
            "grafana: grafana_admin_user and grafana_admin_password_file are not set: no organisation removed"
        )
        return
    grafana = _Grafana(settings)
    org_id, _ = _org_id(grafana, tenant, create=False)
    if org_id is None:
        say(f"{tenant}: grafana organisation '{org_name(tenant)}' absent")
        return
    grafana.send(delete_org_request(org_id))
    say(f"{tenant}: grafana organisation '{org_name(tenant)}' (id {org_id}) deleted")
