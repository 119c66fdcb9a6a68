"""The Elasticsearch datasources the dashboards and alert rules query: alerts, metrics, and the
awareness stage's incidents (``ssa-incidents``, time field ``last_seen``), threat levels
(``ssa-threat``) and early warnings (``ssa-warnings``), one per index family because a Grafana
Elasticsearch datasource names one index pattern and one time field.

The provider's SOC reads each family through its alias (``infra.tenant_indices.soc_alias``: every
tenant's indices and the SOC's own; the alerts alias counts an alert that involves several tenants
once). A tenant's datasources (``datasources(settings, tenant)``) name that tenant's own pattern
(``tenant_index_pattern``), the only indices its Elasticsearch role grants.

One definition feeds both the provisioning file (values taken from Grafana's environment at start
through ``$VAR`` expansion, secrets never written) and the HTTP API payload of ``publish`` (values
from :class:`infra.settings.Settings`, secrets read from their files at publish time).

Provisioning environment variables (set them on the Grafana container):

=====================  ==========================================================
``SSA_ES_URL``         Elasticsearch URL as Grafana reaches it
``SSA_ES_USERNAME``    basic auth user (``es_auth="basic"``)
``SSA_ES_PASSWORD``    basic auth password (``es_auth="basic"``)
``SSA_ES_API_KEY``     base64 ``id:key`` API key (``es_auth="apikey"``)
=====================  ==========================================================

A CA certificate for TLS is read by Grafana from ``/etc/grafana/ssa/es-ca.crt`` when
``tls_ca=True`` (mount it there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from dashboards.fields import TIME_FIELD, TIME_FIELDS
from dashboards.panels import ALERTS_DS_UID, INCIDENTS_DS_UID, METRICS_DS_UID, THREAT_DS_UID, WARNINGS_DS_UID
from infra.clients import encoded_es_api_key
from infra.settings import Settings
from infra.tenant_indices import read_index

__all__ = ["CA_PATH_IN_GRAFANA", "EsAuth", "SsaDatasource", "api_payloads", "datasources", "provisioning_doc"]

EsAuth = Literal["basic", "apikey", "none"]
CA_PATH_IN_GRAFANA: Final = "/etc/grafana/ssa/es-ca.crt"


@dataclass(frozen=True)
class SsaDatasource:
    uid: str
    name: str
    index: str
    time_field: str = TIME_FIELD

    def json_data(self) -> dict[str, Any]:
        return {"index": self.index, "timeField": self.time_field, "maxConcurrentShardRequests": 5}


def datasources(settings: Settings, tenant: str | None = None) -> list[SsaDatasource]:
    """The SOC's datasources (its aliases), or with ``tenant`` that tenant's (its own patterns)."""
    return [
        SsaDatasource(
            ALERTS_DS_UID, "SSA alerts (Elasticsearch)", read_index(settings.index_alerts_prefix, tenant)
        ),
        SsaDatasource(
            METRICS_DS_UID, "SSA metrics (Elasticsearch)", read_index(settings.index_metrics_prefix, tenant)
        ),
        SsaDatasource(
            INCIDENTS_DS_UID,
            "SSA incidents (Elasticsearch)",
            read_index(settings.index_incidents_prefix, tenant),
            TIME_FIELDS["incidents"],
        ),
        SsaDatasource(
            THREAT_DS_UID,
            "SSA threat levels (Elasticsearch)",
            read_index(settings.index_threat_prefix, tenant),
            TIME_FIELDS["threat"],
        ),
        SsaDatasource(
            WARNINGS_DS_UID,
            "SSA early warnings (Elasticsearch)",
            read_index(settings.index_warnings_prefix, tenant),
            TIME_FIELDS["warnings"],
        ),
    ]


def provisioning_doc(settings: Settings, es_auth: EsAuth = "basic", tls_ca: bool = False) -> dict[str, Any]:
    """Grafana ``provisioning/datasources`` document with ``$SSA_ES_*`` placeholders."""
    items = []
    for ds in datasources(settings):
        item: dict[str, Any] = {
            "name": ds.name,
            "uid": ds.uid,
            "type": "elasticsearch",
            "access": "proxy",
            "url": "${SSA_ES_URL}",
            "editable": False,
            "jsonData": ds.json_data(),
            "secureJsonData": {},
        }
        if es_auth == "basic":
            item["basicAuth"] = True
            item["basicAuthUser"] = "${SSA_ES_USERNAME}"
            item["secureJsonData"]["basicAuthPassword"] = "${SSA_ES_PASSWORD}"
        elif es_auth == "apikey":
            item["jsonData"]["httpHeaderName1"] = "Authorization"
            item["secureJsonData"]["httpHeaderValue1"] = "ApiKey ${SSA_ES_API_KEY}"
        if tls_ca:
            item["jsonData"]["tlsAuthWithCACert"] = True
            item["secureJsonData"]["tlsCACert"] = "$__file{" + CA_PATH_IN_GRAFANA + "}"
        if not item["secureJsonData"]:
            del item["secureJsonData"]
        items.append(item)
    return {"apiVersion": 1, "datasources": items}


def _secret(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def api_payloads(settings: Settings, url: str | None = None) -> list[dict[str, Any]]:
    """Bodies for Grafana's ``/api/datasources`` with auth taken from ``settings``."""
    payloads = []
    for ds in datasources(settings):
        body: dict[str, Any] = {
            "name": ds.name,
            "uid": ds.uid,
            "type": "elasticsearch",
            "access": "proxy",
            "url": url or settings.es_url,
            "jsonData": ds.json_data(),
            "secureJsonData": {},
        }
        if settings.es_api_key_file:
            body["jsonData"]["httpHeaderName1"] = "Authorization"
            # a key file as `ssa tenants provision` writes it (YAML) or a bare base64 key
            body["secureJsonData"]["httpHeaderValue1"] = "ApiKey " + encoded_es_api_key(
                settings.es_api_key_file
            )
        elif settings.es_username:
            body["basicAuth"] = True
            body["basicAuthUser"] = settings.es_username
            if settings.es_password_file:
                body["secureJsonData"]["basicAuthPassword"] = _secret(settings.es_password_file)
        if settings.es_ca_file:
            body["jsonData"]["tlsAuthWithCACert"] = True
            body["secureJsonData"]["tlsCACert"] = Path(settings.es_ca_file).read_text(encoding="utf-8")
        payloads.append(body)
    return payloads
