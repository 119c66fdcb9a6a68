"""``publish`` against a small fake of Grafana's HTTP API on loopback (Grafana cannot run here).

The fake implements only the endpoints publish uses, with Grafana's status codes: 401 for an
unknown token, 403 for a Viewer token, 404 for missing objects, versions bumped on overwrite.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dashboards.build import build_all
from dashboards.publish import PublishError, publish, read_token
from infra.settings import Settings

ALL_DATASOURCES = sorted(
    ["ssa-es-alerts", "ssa-es-metrics", "ssa-es-incidents", "ssa-es-threat", "ssa-es-warnings"]
)


class FakeGrafana:
    def __init__(self) -> None:
        self.datasources: dict[str, dict] = {}
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.versions: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                fake.calls.append((method, self.path))
                token = self.headers.get("Authorization", "")
                if token == "Bearer viewer-token":
                    if method != "GET":
                        return self._reply(403, {"message": "Access denied"})
                elif token != "Bearer good-token":
                    return self._reply(401, {"message": "Invalid API key"})
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                path = self.path
                if path == "/api/org" and method == "GET":
                    return self._reply(200, {"id": 1, "name": "Main"})
                if path.startswith("/api/datasources/uid/"):
                    uid = path.rsplit("/", 1)[1]
                    if method == "GET":
                        return (
                            self._reply(200, fake.datasources[uid])
                            if uid in fake.datasources
                            else self._reply(404, {"message": "not found"})
                        )
                    if method == "PUT":
                        fake.datasources[uid] = body
                        return self._reply(200, {"message": "Datasource updated"})
                if path == "/api/datasources" and method == "POST":
                    if body["uid"] in fake.datasources:
                        return self._reply(409, {"message": "data source with the same uid already exists"})
                    fake.datasources[body["uid"]] = body
                    return self._reply(200, {"message": "Datasource added"})
                if path.startswith("/api/folders/") and method == "GET":
                    uid = path.rsplit("/", 1)[1]
                    return (
                        self._reply(200, fake.folders[uid])
                        if uid in fake.folders
                        else self._reply(404, {"message": "folder not found"})
                    )
                if path == "/api/folders" and method == "POST":
                    fake.folders[body["uid"]] = body
                    return self._reply(200, body)
                if path == "/api/dashboards/db" and method == "POST":
                    dash = body["dashboard"]
                    if dash["uid"] in fake.dashboards and not body.get("overwrite"):
                        return self._reply(412, {"message": "version-mismatch"})
                    fake.versions[dash["uid"]] = fake.versions.get(dash["uid"], 0) + 1
                    fake.dashboards[dash["uid"]] = {**body, "version": fake.versions[dash["uid"]]}
                    return self._reply(
                        200, {"uid": dash["uid"], "version": fake.versions[dash["uid"]], "status": "success"}
                    )
                return self._reply(404, {"message": f"no route {method} {path}"})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def grafana():
    fake = FakeGrafana()
    yield fake
    fake.close()


@pytest.fixture
def built(tmp_path):
    build_all(tmp_path / "built", Settings())
    return tmp_path / "built"


def _settings(tmp_path):
    password = tmp_path / "es-password"
    password.write_text("s3cret\n")
    return Settings().with_overrides(
        es_url="http://es:9200", es_username="grafana", es_password_file=str(password)
    )


def test_publish_is_idempotent(grafana, built, tmp_path):
    settings = _settings(tmp_path)
    first = publish(grafana.url, "good-token", built, settings=settings)
    assert sorted(first.datasources_created) == ALL_DATASOURCES
    assert set(first.dashboards.values()) == {1}
    assert len(first.dashboards) == 5
    ds = grafana.datasources["ssa-es-alerts"]
    assert ds["url"] == "http://es:9200" and ds["basicAuthUser"] == "grafana"
    assert ds["secureJsonData"]["basicAuthPassword"] == "s3cret"
    assert ds["jsonData"]["index"] == "ssa-alerts"  # the SOC's alias (infra.tenant_indices)
    incidents = grafana.datasources["ssa-es-incidents"]
    assert (
        incidents["jsonData"]["index"] == "ssa-incidents"
        and incidents["jsonData"]["timeField"] == "last_seen"
    )
    assert incidents["secureJsonData"]["basicAuthPassword"] == "s3cret"
    second = publish(grafana.url, "good-token", built, settings=settings)
    assert second.datasources_created == [] and sorted(second.datasources_updated) == ALL_DATASOURCES
    assert set(second.dashboards.values()) == {2}  # same uid, new version
    assert len(grafana.dashboards) == 5 and len(grafana.folders) == 1
    for stored in grafana.dashboards.values():
        assert (
            stored["overwrite"] is True and stored["dashboard"]["id"] is None and stored["folderUid"] == "ssa"
        )
    assert "ssa-soc-overview v2" in second.summary()


def test_refused_token_is_one_clear_line(grafana, built, tmp_path):
    with pytest.raises(PublishError) as err:
        publish(grafana.url, "wrong-token", built, settings=_settings(tmp_path))
    assert "refused the token (401" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(PublishError) as err:
        publish(grafana.url, "viewer-token", built, settings=_settings(tmp_path))
    assert "refused the token (403" in str(err.value) and "\n" not in str(err.value)


def test_unreachable_server_is_one_clear_line(built, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PublishError) as err:
        publish(f"http://127.0.0.1:{port}", "good-token", built, settings=_settings(tmp_path), timeout=2)
    assert str(err.value).startswith(f"cannot reach Grafana at http://127.0.0.1:{port}")
    assert "\n" not in str(err.value)


def test_missing_build_and_token_file(tmp_path):
    with pytest.raises(PublishError, match="run `ssa dashboards build` first"):
        publish("http://127.0.0.1:9", "t", tmp_path)
    with pytest.raises(PublishError, match="cannot read token file"):
        read_token(tmp_path / "nope")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(PublishError, match="is empty"):
        read_token(tmp_path / "empty")
