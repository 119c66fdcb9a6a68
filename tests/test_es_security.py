"""Tenant roles and API keys in Elasticsearch (infra/es_security.py), and the analyst's own key.

Every request ``infra.es_security`` builds is checked against the request types of the published
Elasticsearch API specification (``infra.api_specs``: the pinned ``@elastic/elasticsearch`` npm
package's generated ``typesWithBodyKey.d.ts``), fetched into ``.cache/api-specs`` when absent; those
tests skip only when it is not cached and the registry cannot be reached. The live tests (marker
``integration``) run on the plain local node, which has no X-Pack security: provisioning must say
so in one line, and an analyst's key file must still be sent (``Authorization: ApiKey``) and set
the tenant scope.
"""

from __future__ import annotations

import base64
import fnmatch
import http.client
import io
import json
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from infra import api_specs, es_security
from infra.api_specs import ApiSpecError, ApiSpecUnavailable, TypeSpec, check
from infra.clients import api_key_tenant, read_es_api_key
from infra.settings import Settings, SettingsError
from infra.tenant_indices import soc_alias, tenant_index, tenant_index_patterns

TENANTS = ["acme", "acme-b", "acmeb", "Acme", "t_1"]
DAY = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def spec() -> TypeSpec:
    try:
        return api_specs.load_es_types(fetch=True)
    except ApiSpecUnavailable as exc:
        pytest.skip(f"Elasticsearch API types not cached and the npm registry is unreachable: {exc}")


def _requests(settings: Settings, tenant: str) -> list[es_security.EsRequest]:
    return [
        es_security.put_role_request(settings, tenant),
        es_security.create_api_key_request(settings, tenant),
        es_security.get_api_key_request("VuaCfGcBCdbkQm-e5aOx"),
        es_security.invalidate_api_keys_request(tenant),
        es_security.invalidate_api_key_id_request("VuaCfGcBCdbkQm-e5aOx"),
        es_security.delete_role_request(tenant),
    ]


@pytest.mark.parametrize("tenant", TENANTS)
def test_every_request_conforms_to_the_published_types(spec: TypeSpec, tenant: str) -> None:
    for req in _requests(Settings(), tenant):
        assert check(spec, req.api, req.as_spec_value()) == [], req


def test_the_spec_catches_a_misspelt_missing_or_mistyped_field(spec: TypeSpec) -> None:
    good = es_security.put_role_request(Settings(), "acme").as_spec_value()
    misspelt = json.loads(json.dumps(good))
    misspelt["body"]["indicies"] = misspelt["body"].pop("indices")
    assert check(spec, "SecurityPutRoleRequest", misspelt) == ["$.body: unknown field 'indicies'"]
    missing = json.loads(json.dumps(good))
    del missing["body"]["indices"][0]["names"]
    assert check(spec, "SecurityPutRoleRequest", missing) == [
        "$.body.indices[0]: missing required field 'names'"
    ]
    no_name = {k: v for k, v in good.items() if k != "name"}
    assert check(spec, "SecurityPutRoleRequest", no_name) == ["$: missing required field 'name'"]
    key = es_security.create_api_key_request(Settings(), "acme").as_spec_value()
    key["body"]["role_descriptors"]["ssa-tenant-acme"]["indices"][0]["privileges"] = "read"
    assert check(spec, "SecurityCreateApiKeyRequest", key) != []
    key["body"]["role_descriptors"]["ssa-tenant-acme"]["indices"][0]["privileges"] = ["read"]
    key["body"]["expiration"] = {"days": 1}
    assert check(spec, "SecurityCreateApiKeyRequest", key) != []


def test_role_reads_exactly_the_tenants_indices() -> None:
    settings = Settings()
    for tenant in TENANTS:
        role = es_security.role_descriptor(settings, tenant)
        assert role["cluster"] == []
        (grant,) = role["indices"]
        assert grant["privileges"] == ["read", "view_index_metadata"]
        assert grant["allow_restricted_indices"] is False
        assert grant["names"] == tenant_index_patterns(settings, tenant)
        for other in TENANTS:
            for prefix in (settings.index_alerts_prefix, settings.index_incidents_prefix):
                index = tenant_index(prefix, other, DAY)
                matched = any(fnmatch.fnmatchcase(index, p) for p in grant["names"])
                assert matched == (other == tenant), (tenant, index)
        key = es_security.create_api_key_request(settings, tenant).body
        assert key is not None and key["role_descriptors"] == {es_security.role_name(tenant): role}


def _tgz(members: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_reader_refuses_what_it_does_not_understand() -> None:
    member = "package/lib/api/typesWithBodyKey.d.ts"
    ok = api_specs.read_es_types(
        _tgz({member: "export interface A {\n    x?: string[];\n    y: 'a' | 1;\n}\n"})
    )
    assert check(ok, "A", {"y": 1, "x": ["s"]}) == []
    assert check(ok, "A", {"y": 2}) == ["$.y: expected 'a' or 1, got number 2"]
    generic = api_specs.read_es_types(_tgz({member: "export interface G<T> {\n    x: T;\n}\n"}))
    with pytest.raises(ApiSpecError, match="generic declarations are not supported"):
        generic.resolve("G")
    mapped = api_specs.read_es_types(_tgz({member: "export type M = keyof Foo;\n"}))
    with pytest.raises(ApiSpecError, match="unsupported TypeScript operator 'keyof'"):
        mapped.resolve("M")
    with pytest.raises(ApiSpecError, match="no type 'Missing'"):
        ok.resolve("Missing")
    with pytest.raises(ApiSpecError, match=r"has no package/lib/api/typesWithBodyKey\.d\.ts"):
        api_specs.read_es_types(_tgz({"package/other.js": ""}))


def test_a_tarball_with_another_digest_is_deleted(tmp_path: Path) -> None:
    fake = tmp_path / f"elastic-elasticsearch-{api_specs.ES_PACKAGE_VERSION}.tgz"
    fake.write_bytes(_tgz({"package/lib/api/typesWithBodyKey.d.ts": "export type X = string;\n"}))
    with pytest.raises(ApiSpecError, match="is not the pinned"):
        api_specs.load_es_types(tmp_path, fetch=False)
    assert not fake.exists()


def test_key_file_is_private_and_names_its_tenant(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), es_url="https://es.example:9200")
    path = es_security._write_key(settings, "acme", {"id": "kid", "api_key": "ksecret"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = yaml.safe_load(path.read_text())
    assert doc["encoded"] == base64.b64encode(b"kid:ksecret").decode()
    assert read_es_api_key(str(path)) == (("kid", "ksecret"), "acme")
    analyst = es_security.write_analyst_settings(settings, "acme")
    assert yaml.safe_load(analyst.read_text()) == {
        "es_url": "https://es.example:9200",
        "es_api_key_file": str(path),
    }
    assert api_key_tenant(settings.with_overrides(es_api_key_file=str(path))) == "acme"
    # An operator's key (the base64 value alone) has no tenant; a broken file is one clear error.
    plain = tmp_path / "op.key"
    plain.write_text(base64.b64encode(b"a:b").decode() + "\n")
    assert read_es_api_key(str(plain)) == (base64.b64encode(b"a:b").decode(), None)
    broken = tmp_path / "broken.yaml"
    broken.write_text("tenant: acme\nid: kid\n")
    with pytest.raises(SettingsError, match="has no 'id' and 'api_key'"):
        read_es_api_key(str(broken))


def test_provisioning_refuses_a_tenants_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    path = es_security._write_key(settings, "acme", {"id": "kid", "api_key": "ksecret"})
    with pytest.raises(es_security.EsSecurityError, match="tenant acme's key"):
        es_security.provision_es(settings.with_overrides(es_api_key_file=str(path)), ["acme"], say=print)


def test_cli_refuses_another_tenant_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ssa.cli import main

    settings = Settings(data_dir=str(tmp_path))
    path = es_security._write_key(settings, "acme", {"id": "kid", "api_key": "ksecret"})
    monkeypatch.setenv("SSA_ES_API_KEY_FILE", str(path))
    monkeypatch.setenv("SSA_ES_URL", "http://127.0.0.1:9")  # never reached: refused before
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    for argv in (["alerts", "list", "--tenant", "beta"], ["incidents", "list", "--tenant", "beta"]):
        assert main(argv) == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 2
    assert all("your Elasticsearch API key is tenant acme's; you may read only acme" in ln for ln in lines)


# --- live, on the plain local node -------------------------------------------------------------
class _Recorder(BaseHTTPRequestHandler):
    """A loopback pass-through to the real Elasticsearch that records each request's headers."""

    upstream: tuple[str, int] = ("127.0.0.1", 9200)
    seen: ClassVar[list[dict[str, str]]] = []

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder(stack: Settings) -> Iterator[tuple[str, list[dict[str, str]]]]:
    host_port = stack.es_url.split("//", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    seen: list[dict[str, str]] = []
    handler = type("Rec", (_Recorder,), {"upstream": (host, int(port)), "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_provisioning_on_a_node_without_security_says_so(stack: Settings, tmp_path: Path) -> None:
    settings = stack.with_overrides(secrets_dir=str(tmp_path / "secrets"))
    lines: list[str] = []
    assert es_security.provision_es(settings, ["acme", "beta"], say=lines.append) == {}
    assert len(lines) == 1
    assert lines[0].startswith(f"elasticsearch: security is off at {settings.es_url}")
    assert "no role or API key created for 2 tenant(s)" in lines[0]
    assert not (tmp_path / "secrets").exists() or not list((tmp_path / "secrets").iterdir())


@pytest.mark.integration
def test_cli_provision_without_kafka_on_a_plain_stack(
    stack: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.settings import PROJECT_ROOT
    from ssa.cli import main

    monkeypatch.setenv("SSA_SECRETS_DIR", str(tmp_path / "secrets"))
    for name in ("SSA_ES_API_KEY_FILE", "SSA_GRAFANA_ADMIN_USER", "SSA_GRAFANA_ADMIN_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    registry = str(PROJECT_ROOT / "infra" / "tenants.example.yaml")
    assert main(["tenants", "provision", "--no-kafka", "--tenants", registry]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2, out
    assert out[0].startswith(f"elasticsearch: security is off at {stack.es_url} (the node has no X-Pack")
    assert out[1].startswith("grafana: grafana_admin_user and grafana_admin_password_file are not set")
    assert main(["tenants", "revoke", "--no-kafka", "t-acme"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("elasticsearch: security is off")
    assert main(["tenants", "revoke", "--no-kafka", "../etc"]) == 1
    assert "cannot name Kafka topics" in capsys.readouterr().err


@pytest.mark.integration
def test_analyst_key_is_sent_and_sets_the_scope(
    stack: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recorder: tuple[str, list[dict[str, str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from infra.clients import es_client
    from ssa.cli import main

    prefix = f"ssa-hdtest-{os.getpid()}-alerts-"
    es = es_client(stack)
    docs = {"acme": "a" * 32, "beta": "b" * 32}
    try:
        for tenant, alert_id in docs.items():
            # As the indexer lays them out: the tenant's own index, in the SOC's alias.
            keyword = {"type": "keyword"}
            mappings = {"dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": keyword}}],
                        "properties": {"ts": {"type": "date", "format": "epoch_millis"}}}  # fmt: skip
            es.indices.create(
                index=tenant_index(prefix, tenant, DAY), aliases={soc_alias(prefix): {}}, mappings=mappings
            )
            es.index(
                index=tenant_index(prefix, tenant, DAY),
                id=alert_id,
                refresh=True,
                document={
                    "alert_id": alert_id,
                    "ts": DAY + 60_000,
                    "tenant": tenant,
                    "status": "open",
                    "severity": "high",
                    "category": "port_scan",
                    "summary": f"{tenant} alert",
                    "entity": {"type": "vm", "id": f"{tenant}-vm"},
                    "detector": "t",
                },
            )
        url, seen = recorder
        settings = Settings(data_dir=str(tmp_path), es_url=url)
        key = es_security._write_key(settings, "acme", {"id": "kid", "api_key": "ksecret"})
        monkeypatch.setenv("SSA_ES_URL", url)
        monkeypatch.setenv("SSA_INDEX_ALERTS_PREFIX", prefix)
        monkeypatch.delenv("SSA_ES_USERNAME", raising=False)
        # The provider's SOC view (no key file): both tenants.
        monkeypatch.delenv("SSA_ES_API_KEY_FILE", raising=False)
        assert main(["alerts", "list", "--json"]) == 0
        soc = {json.loads(line)["tenant"] for line in capsys.readouterr().out.splitlines()}
        assert soc == {"acme", "beta"}
        assert not any("authorization" in h for h in seen)
        # The analyst's key: the header goes out, and only acme's alert comes back, no flag given.
        seen.clear()
        monkeypatch.setenv("SSA_ES_API_KEY_FILE", str(key))
        assert main(["alerts", "list", "--json"]) == 0
        out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [d["alert_id"] for d in out] == [docs["acme"]]
        expected = "ApiKey " + base64.b64encode(b"kid:ksecret").decode()
        assert seen and all(h.get("authorization") == expected for h in seen)
        assert main(["alerts", "list", "--tenant", "acme", "--json"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 1
        assert main(["alerts", "list", "--tenant", "beta"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            "ssa alerts list: --tenant beta: your Elasticsearch API key is tenant acme's; you may read only acme"
        ]
    finally:
        made = list(es.indices.get(index=f"{prefix}*", allow_no_indices=True).body)
        if made:
            es.indices.delete(index=",".join(made))
        es.close()


def test_api_keys_expire_and_are_renewed_with_a_third_of_their_life_left() -> None:
    day = 86_400_000
    settings = Settings()
    assert settings.es_api_key_expiration_days == 90
    key = es_security.create_api_key_request(settings, "acme").body
    assert key is not None and key["expiration"] == "90d"
    never = Settings(es_api_key_expiration_days=0)
    never_key = es_security.create_api_key_request(never, "acme").body
    assert never_key is not None and "expiration" not in never_key
    now = 1_800_000_000_000
    assert not es_security.key_is_due({"expiration": now + 31 * day}, settings, now)
    assert es_security.key_is_due({"expiration": now + 29 * day}, settings, now)  # under 90 / 3 days left
    assert es_security.key_is_due({}, settings, now)  # a key made to last forever, before expiry was set
    assert not es_security.key_is_due({}, never, now)
