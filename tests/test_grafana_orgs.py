"""A Grafana organisation per tenant (dashboards/grafana_orgs.py), checked against Grafana's API.

Every request is checked against the operations and body models of Grafana's published OpenAPI
document, as Grafana Labs' generated Go client carries them (``infra.api_specs``: the pinned
``github.com/grafana/grafana-openapi-client-go`` module zip, fetched into ``.cache/api-specs`` with
``go mod download`` when absent; the spec tests skip only when it is not cached and the proxy
cannot be reached). Grafana cannot run here: the sending code is exercised against a loopback
HTTP server that answers like Grafana and checks each request it receives against the same spec.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dashboards import grafana_orgs
from dashboards.datasource import datasources
from dashboards.grafana_orgs import GrafanaRequest
from infra import api_specs, es_security
from infra.api_specs import ApiSpecError, ApiSpecUnavailable, GrafanaApi
from infra.settings import Settings
from infra.tenant_indices import tenant_index_pattern, tenant_index_patterns

BUILT = Path(grafana_orgs.BUILT_JSON)


@pytest.fixture(scope="module")
def api() -> GrafanaApi:
    try:
        return api_specs.load_grafana_api(fetch=True)
    except ApiSpecUnavailable as exc:
        pytest.skip(f"Grafana's API models not cached and the Go proxy is unreachable: {exc}")


def _all_requests(settings: Settings, tenant: str, key: str | None) -> list[tuple[str, GrafanaRequest]]:
    reqs = [
        ("getOrgByName", grafana_orgs.find_org_request(tenant)),
        ("createOrg", grafana_orgs.create_org_request(tenant)),
        ("deleteOrgByID", grafana_orgs.delete_org_request(7)),
    ]
    for body in grafana_orgs.datasource_bodies(settings, tenant, key, "https://es:9200", "-----BEGIN CERT"):
        reqs.append(("getDataSourceByUID", grafana_orgs.get_datasource_request(body["uid"], 7)))
        reqs.append(("addDataSource", grafana_orgs.datasource_request(body, 7, exists=False)))
        reqs.append(("updateDataSourceByUID", grafana_orgs.datasource_request(body, 7, exists=True)))
    for uid in grafana_orgs.TENANT_BOARDS:
        model = json.loads((BUILT / f"{uid}.json").read_text())
        reqs.append(
            ("postDashboard", grafana_orgs.dashboard_request(grafana_orgs.tenant_dashboard(model, tenant), 7))
        )
    return reqs


@pytest.mark.parametrize("key", ["a2lkOmtzZWNyZXQ=", None])
@pytest.mark.parametrize("tenant", ["acme", "Acme Corp/1"])
def test_every_request_is_an_operation_of_grafanas_api_with_a_conforming_body(
    api: GrafanaApi, tenant: str, key: str | None
) -> None:
    for op_id, req in _all_requests(Settings(), tenant, key):
        assert api.operation(req.method, req.path.split("?")[0]).op_id == op_id, req.path
        assert api.check_request(req.method, req.path, req.body) == [], (op_id, req.body)


def test_the_spec_catches_a_misspelt_missing_or_mistyped_field(api: GrafanaApi) -> None:
    assert api.check_request("POST", "/api/orgs", {"nmae": "x"}) == ["$: unknown field 'nmae'"]
    body = grafana_orgs.datasource_bodies(Settings(), "acme", "k", "http://es:9200")[0]
    typo = {**body, "jsonDate": body.pop("jsonData")}
    assert api.check_request("POST", "/api/datasources", typo) == ["$: unknown field 'jsonDate'"]
    assert api.check_request("POST", "/api/datasources", {**body, "basicAuth": "no"}) == [
        "$.basicAuth: expected boolean, got string"
    ]
    assert api.check_request("PUT", "/api/datasources/uid/x", {**body, "secureJsonData": {"k": 1}}) == [
        "$.secureJsonData.k: expected string, got number"
    ]
    assert api.check_request("POST", "/api/dashboards/db", None) == [
        "postDashboard: a body (SaveDashboardCommand) is expected"
    ]
    with pytest.raises(ApiSpecError, match="no operation POST /api/organisations"):
        api.operation("POST", "/api/organisations")
    # The spec's required fields and enums are read too.
    assert api.check_request("POST", "/api/teams/3/members", {}) == ["$: missing required field 'userId'"]
    assert api.check_request("POST", "/api/orgs/7/users", {"role": "Viewer", "loginOrEmail": "a"}) == []
    assert api.check_request("POST", "/api/orgs/7/users", {"role": "viewer", "loginOrEmail": "a"}) == [
        "$.role: expected 'None' or 'Viewer' or 'Editor' or 'Admin', got string 'viewer'"
    ]


def test_datasources_name_only_the_tenants_indices_and_carry_its_key() -> None:
    settings = Settings()
    bodies = grafana_orgs.datasource_bodies(settings, "acme", "a2lkOmtzZWNyZXQ=", "https://es:9200")
    assert [b["uid"] for b in bodies] == [ds.uid for ds in datasources(settings)]
    assert sorted(b["jsonData"]["index"] for b in bodies) == sorted(tenant_index_patterns(settings, "acme"))
    assert bodies[0]["jsonData"]["index"] == tenant_index_pattern(settings.index_alerts_prefix, "acme")
    for body, ds in zip(bodies, datasources(settings), strict=True):
        assert body["jsonData"]["httpHeaderName1"] == "Authorization"
        assert body["secureJsonData"] == {"httpHeaderValue1": "ApiKey a2lkOmtzZWNyZXQ="}
        assert body["url"] == "https://es:9200" and body["jsonData"]["timeField"] == ds.time_field
    assert all("secureJsonData" not in b for b in grafana_orgs.datasource_bodies(settings, "acme", None, "x"))


def test_tenant_dashboard_pins_the_tenant() -> None:
    model = json.loads((BUILT / "ssa-tenant.json").read_text())
    board = grafana_orgs.tenant_dashboard(model, "acme")
    (var,) = [v for v in board["templating"]["list"] if v["name"] == "tenant"]
    assert var == {"type": "constant", "name": "tenant", "label": "Tenant", "query": "acme", "hide": 2,
                   "skipUrlSync": False, "current": {"text": "acme", "value": "acme"}}  # fmt: skip
    assert board["id"] is None and board["uid"] == model["uid"] and board["panels"] == model["panels"]
    assert model["templating"]["list"][0]["type"] == "query"  # the built board is left as it was


def _zip(members: dict[str, str]) -> bytes:
    out = io.BytesIO()
    prefix = f"{api_specs.GRAFANA_MODULE}@{api_specs.GRAFANA_MODULE_VERSION}/"
    with zipfile.ZipFile(out, "w") as z:
        for name, text in members.items():
            z.writestr(prefix + name, text)
    return out.getvalue()


_CLIENT = """func (a *Client) CreateOrgWithParams(params *CreateOrgParams, opts ...ClientOption) (*X, error) {
	op := &runtime.ClientOperation{
		ID:                 "createOrg",
		Method:             "POST",
		PathPattern:        "/orgs",
	}
}
"""
_PARAMS = "type CreateOrgParams struct {\n\n\tBody *models.CreateOrgCommand\n}\n"


def test_go_reader_refuses_what_it_does_not_understand(tmp_path: Path) -> None:
    model = 'type CreateOrgCommand struct {\n\n\t// Required: true\n\tName *string `json:"name"`\n}\n'
    api = api_specs.read_grafana_api(_zip({"client/orgs/orgs_client.go": _CLIENT,
                                           "client/orgs/create_org_parameters.go": _PARAMS,
                                           "models/create_org_command.go": model}))  # fmt: skip
    assert api.check_request("POST", "/api/orgs", {}) == ["$: missing required field 'name'"]
    embedded = "type CreateOrgCommand struct {\n\tOtherModel\n}\n"
    api = api_specs.read_grafana_api(_zip({"client/orgs/orgs_client.go": _CLIENT,
                                           "client/orgs/create_org_parameters.go": _PARAMS,
                                           "models/create_org_command.go": embedded}))  # fmt: skip
    with pytest.raises(ApiSpecError, match="unsupported struct member 'OtherModel'"):
        api.check_request("POST", "/api/orgs", {})
    odd = _CLIENT.replace('"createOrg",', '"createOrg", Extra: 1,')
    with pytest.raises(ApiSpecError, match="operations of a shape not understood"):
        api_specs.read_grafana_api(_zip({"client/orgs/orgs_client.go": odd,
                                         "client/orgs/create_org_parameters.go": _PARAMS,
                                         "models/create_org_command.go": model}))  # fmt: skip
    fake = tmp_path / f"grafana-openapi-client-go-{api_specs.GRAFANA_MODULE_VERSION}.zip"
    fake.write_bytes(_zip({"models/x.go": ""}))
    with pytest.raises(ApiSpecError, match="is not the pinned"):
        api_specs.load_grafana_api(tmp_path, fetch=False)
    assert not fake.exists()


def test_without_admin_credentials_grafana_is_skipped_in_one_line() -> None:
    lines: list[str] = []
    assert grafana_orgs.provision_grafana(Settings(), ["acme", "beta"], {}, say=lines.append) == []
    grafana_orgs.revoke_grafana(Settings(), "acme", say=lines.append)
    assert lines == [
        "grafana: grafana_admin_user and grafana_admin_password_file are not set: "
        "no tenant organisation made for 2 tenant(s)",
        "grafana: grafana_admin_user and grafana_admin_password_file are not set: no organisation removed",
    ]


# --- the sender, against a loopback server answering as Grafana does ----------------------------
class _Grafana(BaseHTTPRequestHandler):
    api: GrafanaApi
    log: list[dict[str, Any]]
    orgs: dict[str, int]
    datasources: set[tuple[int, str]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body: Any = json.loads(self.rfile.read(length)) if length else None
        path = self.path
        org_header = str(self.headers.get("X-Grafana-Org-Id") or 0)
        entry = {"method": self.command, "path": path, "body": body, "org": self.headers.get("X-Grafana-Org-Id"),
                 "auth": self.headers.get("Authorization"),
                 "errors": self.api.check_request(self.command, path, body)}  # fmt: skip
        self.log.append(entry)
        status, out = 200, dict[str, Any]()
        from urllib.parse import unquote

        if self.command == "GET" and path.startswith("/api/orgs/name/"):
            name = unquote(path.rsplit("/", 1)[1])
            status, out = (200, {"id": self.orgs[name], "name": name}) if name in self.orgs else (404, {})
        elif self.command == "POST" and path == "/api/orgs":
            self.orgs[body["name"]] = org = 10 + len(self.orgs)
            out = {"orgId": org, "message": "Organization created"}
        elif self.command == "DELETE" and path.startswith("/api/orgs/"):
            org = int(path.rsplit("/", 1)[1])
            for name in [k for k, v in self.orgs.items() if v == org]:
                del self.orgs[name]
        elif self.command == "GET" and path.startswith("/api/datasources/uid/"):
            status = 200 if (int(org_header), path.rsplit("/", 1)[1]) in self.datasources else 404
        elif self.command == "POST" and path == "/api/datasources":
            self.datasources.add((int(org_header), body["uid"]))
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_grafana(api: GrafanaApi) -> Iterator[tuple[str, type[_Grafana]]]:
    handler = type("G", (_Grafana,), {"api": api, "log": [], "orgs": {}, "datasources": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_provision_and_revoke_send_only_conforming_requests(
    tmp_path: Path, fake_grafana: tuple[str, type[_Grafana]]
) -> None:
    url, handler = fake_grafana
    (tmp_path / "pw").write_text("admin-secret\n")
    settings = Settings(data_dir=str(tmp_path), grafana_url=url, grafana_admin_user="admin",
                        grafana_admin_password_file=str(tmp_path / "pw"), grafana_es_url="https://es:9200")  # fmt: skip
    key = es_security._write_key(settings, "acme", {"id": "kid", "api_key": "ksecret"})
    lines: list[str] = []
    grafana_orgs.provision_grafana(settings, ["acme", "beta"], {"acme": key}, say=lines.append)
    first = len(handler.log)
    grafana_orgs.provision_grafana(settings, ["acme"], {"acme": key}, say=lines.append)
    second = handler.log[first:]
    grafana_orgs.revoke_grafana(settings, "beta", say=lines.append)
    grafana_orgs.revoke_grafana(settings, "beta", say=lines.append)
    log = handler.log
    assert log and all(e["errors"] == [] for e in log), [e for e in log if e["errors"]]
    admin = "Basic " + base64.b64encode(b"admin:admin-secret").decode()
    assert all(e["auth"] == admin for e in log)
    # Calls inside an organisation name it; acme's data sources carry acme's key, beta's none.
    inside = [e for e in log if e["path"].startswith(("/api/datasources", "/api/dashboards"))]
    assert inside and all(e["org"] in ("10", "11") for e in inside)
    sent_keys = {e["org"]: (e["body"].get("secureJsonData") or {}).get("httpHeaderValue1")
                 for e in inside if e["path"] == "/api/datasources" or e["method"] == "PUT"}  # fmt: skip
    assert sent_keys == {"10": "ApiKey " + base64.b64encode(b"kid:ksecret").decode(), "11": None}
    assert lines[0].startswith(
        "acme: grafana organisation 'SSA tenant acme' (id 10, new), 5 data sources with the tenant's API key"
    )
    assert "no key (Elasticsearch security is off)" in lines[1]
    assert "(id 10, kept)" in lines[2]
    assert lines[3:] == ["beta: grafana organisation 'SSA tenant beta' (id 11) deleted",
                         "beta: grafana organisation 'SSA tenant beta' absent"]  # fmt: skip
    assert not any("ksecret" in line or "admin-secret" in line for line in lines)
    # The second run updated acme's data sources in place (PUT), created nothing.
    assert [e["method"] for e in second if e["path"].startswith("/api/datasources")] == ["GET", "PUT"] * 5
    assert not any(e["method"] == "POST" and e["path"] in ("/api/orgs", "/api/datasources") for e in second)


def test_unreachable_grafana_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x")
    settings = Settings(grafana_url="http://127.0.0.1:9", grafana_admin_user="admin",
                        grafana_admin_password_file=str(tmp_path / "pw"))  # fmt: skip
    with pytest.raises(grafana_orgs.GrafanaOrgError, match=r"^cannot reach Grafana at http://127.0.0.1:9: "):
        grafana_orgs.provision_grafana(settings, ["acme"], {}, say=print)
