"""Each tenant's Elasticsearch role and API key (``ssa tenants provision|revoke``, issue 22).

What a tenant gets, when the cluster runs with security on (the production compose):

- a role ``ssa-tenant-<tenant>`` granting ``read`` and ``view_index_metadata`` on exactly the
  tenant's index patterns (``infra.tenant_indices.tenant_index_patterns``: one
  ``<prefix>t-<tenant>.*`` per kind of document), no cluster privilege, no restricted index;
- an API key named ``ssa-tenant-<tenant>`` whose ``role_descriptors`` are that same role, so the
  key can never do more than the role, whatever the creator may do (Elasticsearch intersects a
  key's descriptors with its creator's privileges);
- ``<secrets>/es-<tenant>.apikey.yaml`` (0600, directory 0700; never printed): ``tenant``,
  ``id``, ``api_key``, ``encoded`` (base64 ``id:api_key``, the ``Authorization: ApiKey`` value),
  ``name``, ``es_url``; and ``<secrets>/analyst-<tenant>.yaml``, a settings file with only
  paths (``SSA_SETTINGS_FILE=...`` makes ``ssa alerts|incidents|report`` act as that tenant).

Keys expire after ``es_api_key_expiration_days`` (90 by default; 0: never), so a leaked key file
stops working on its own. Idempotent: the role is PUT (created or updated); a key whose file
exists and which Elasticsearch still holds, valid, with the same descriptors and more than a third
of its lifetime left, is kept; otherwise a new key is made and the old one invalidated, so running
``ssa tenants provision`` monthly (cron) renews every key before it expires. ``revoke`` invalidates every key of that name, deletes the role
and removes both files.

Security off: the embedded node here has no X-Pack (not on Maven Central), and a cluster may run
with ``xpack.security.enabled: false``. ``security_state`` asks the server (``GET /_xpack``: a node
without X-Pack has no such endpoint; with X-Pack, ``features.security.enabled``; a 401 means
security is on and our credentials were refused), and provisioning then says in one line that
no role or key was made. Nothing is enforced by Elasticsearch in that case.

The requests are built by pure functions (``put_role_request`` ...) as :class:`EsRequest`, which
is what is sent, and ``tests/test_es_security.py`` checks each against the published request
types of the Elasticsearch API (``infra.api_specs``). Provisioning needs the operator's
Elasticsearch credentials (``es_username`` + ``es_password_file``, or an admin
``es_api_key_file``) with ``manage_security``; a tenant's key file is refused for it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from infra.process import ServiceError
from infra.secure import check_tenant_id
from infra.settings import Settings
from infra.tenant_indices import tenant_index_patterns

__all__ = [
    "PRIVILEGES",
    "EsRequest",
    "analyst_settings_file",
    "api_key_file",
    "create_api_key_request",
    "delete_role_request",
    "get_api_key_request",
    "invalidate_api_keys_request",
    "key_is_due",
    "provision_es",
    "put_role_request",
    "revoke_es",
    "role_descriptor",
    "role_name",
    "security_state",
]

PRIVILEGES: Final = ("read", "view_index_metadata")
MANAGED_BY: Final = "ssa tenants provision"


class EsSecurityError(ServiceError):
    """An expected failure (refused credentials, a refused request), as one line."""


def role_name(tenant: str) -> str:
    return f"ssa-tenant-{tenant}"


def api_key_file(settings: Settings, tenant: str) -> Path:
    return settings.secrets_path / f"es-{tenant}.apikey.yaml"


def analyst_settings_file(settings: Settings, tenant: str) -> Path:
    return settings.secrets_path / f"analyst-{tenant}.yaml"


# --- request bodies (pure) --------------------------------------------------------------------
@dataclass(frozen=True)
class EsRequest:
    """One call of the security API: the request type of the published specification it is,
    its path and query parameters, and its JSON body."""

    api: str  # e.g. "SecurityPutRoleRequest"
    method: str
    path: str
    params: dict[str, Any]
    body: dict[str, Any] | None = None

    def as_spec_value(self) -> dict[str, Any]:
        """The request as the specification's type describes it: parameters, and ``body``."""
        return {**self.params, **({"body": self.body} if self.body is not None else {})}


def role_descriptor(settings: Settings, tenant: str) -> dict[str, Any]:
    """Read on the tenant's index patterns and nothing else."""
    return {
        "cluster": [],
        "indices": [
            {
                "names": tenant_index_patterns(settings, tenant),
                "privileges": list(PRIVILEGES),
                "allow_restricted_indices": False,
            }
        ],
        "metadata": {"ssa_tenant": tenant, "managed_by": MANAGED_BY},
    }


def put_role_request(settings: Settings, tenant: str) -> EsRequest:
    name = role_name(tenant)
    return EsRequest("SecurityPutRoleRequest", "PUT", f"/_security/role/{name}", {"name": name},
                     role_descriptor(settings, tenant))  # fmt: skip


def create_api_key_request(settings: Settings, tenant: str) -> EsRequest:
    name = role_name(tenant)
    body: dict[str, Any] = {
        "name": name,
        "role_descriptors": {name: role_descriptor(settings, tenant)},
        "metadata": {"ssa_tenant": tenant, "managed_by": MANAGED_BY},
    }
    days = settings.es_api_key_expiration_days
    if days > 0:
        body["expiration"] = f"{days}d"
    return EsRequest("SecurityCreateApiKeyRequest", "POST", "/_security/api_key", {}, body)


def key_is_due(key: dict[str, Any], settings: Settings, now_ms: int) -> bool:
    """Whether a key Elasticsearch holds (its ``GET /_security/api_key`` entry) should be replaced:
    it expires in less than a third of the configured lifetime, or it never expires while keys
    should (made before expiry was set); one that should not expire is kept."""
    days = settings.es_api_key_expiration_days
    if days <= 0:
        return False
    expires = key.get("expiration")
    if not isinstance(expires, int):
        return True
    return expires - now_ms < days * 86_400_000 // 3


def get_api_key_request(key_id: str) -> EsRequest:
    return EsRequest("SecurityGetApiKeyRequest", "GET", "/_security/api_key", {"id": key_id})


def invalidate_api_keys_request(tenant: str) -> EsRequest:
    """Every key named for the tenant, whoever made it."""
    return EsRequest("SecurityInvalidateApiKeyRequest", "DELETE", "/_security/api_key", {},
                     {"name": role_name(tenant)})  # fmt: skip


def invalidate_api_key_id_request(key_id: str) -> EsRequest:
    return EsRequest("SecurityInvalidateApiKeyRequest", "DELETE", "/_security/api_key", {}, {"ids": [key_id]})


def delete_role_request(tenant: str) -> EsRequest:
    name = role_name(tenant)
    return EsRequest("SecurityDeleteRoleRequest", "DELETE", f"/_security/role/{name}", {"name": name})


# --- talking to Elasticsearch -----------------------------------------------------------------
def _send(es: Any, req: EsRequest) -> Any:
    """Send exactly ``req`` (the typed client method of its API, the body as built)."""
    from elasticsearch import ApiError

    sec = es.security
    try:
        if req.api == "SecurityPutRoleRequest":
            return sec.put_role(name=req.params["name"], body=req.body)
        if req.api == "SecurityCreateApiKeyRequest":
            return sec.create_api_key(body=req.body)
        if req.api == "SecurityGetApiKeyRequest":
            return sec.get_api_key(**req.params)
        if req.api == "SecurityInvalidateApiKeyRequest":
            return sec.invalidate_api_key(body=req.body)
        if req.api == "SecurityDeleteRoleRequest":
            return sec.delete_role(name=req.params["name"])
    except ApiError as exc:
        if exc.meta.status == 404 and req.api in ("SecurityGetApiKeyRequest", "SecurityDeleteRoleRequest"):
            return None
        raise EsSecurityError(f"Elasticsearch refused {req.method} {req.path}: {_reason(exc)}") from None
    raise ValueError(f"no sender for {req.api}")


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return f"{exc.meta.status} {err.get('type', '')}: {str(err.get('reason', ''))[:200]}"
    return f"{getattr(exc.meta, 'status', '?')} {str(exc)[:200]}"


def security_state(es: Any, url: str) -> tuple[bool, str]:
    """Whether the cluster enforces security, asked of the server; and a word on why."""
    from elasticsearch import ApiError, AuthenticationException

    try:
        info = es.xpack.info(categories="features")
    except AuthenticationException:
        raise EsSecurityError(
            f"Elasticsearch at {url} has security on and refused our credentials "
            "(es_username + es_password_file, or es_api_key_file)"
        ) from None
    except ApiError as exc:
        if exc.meta.status in (400, 404, 405):
            return False, "the node has no X-Pack security (no /_xpack endpoint)"
        raise EsSecurityError(f"Elasticsearch at {url} answered GET /_xpack with {_reason(exc)}") from None
    security = (info.body.get("features") or {}).get("security") or {}
    if not security.get("enabled"):
        return False, "xpack.security.enabled is false"
    try:
        who = es.security.authenticate()
    except AuthenticationException:
        raise EsSecurityError(f"Elasticsearch at {url} refused our credentials") from None
    return True, f"authenticated as {who.body.get('username', '?')}"


def _admin_client(settings: Settings) -> Any:
    from infra.clients import api_key_tenant, es_client

    tenant = api_key_tenant(settings)
    if tenant is not None:
        raise EsSecurityError(
            f"es_api_key_file is tenant {tenant}'s key: provisioning needs the operator's Elasticsearch "
            "credentials (es_username + es_password_file, or an admin key)"
        )
    return es_client(settings)


def _write_key(settings: Settings, tenant: str, created: dict[str, Any]) -> Path:
    from infra.secure import write_private

    key_id, secret = str(created["id"]), str(created["api_key"])
    encoded = created.get("encoded") or base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    doc = {"tenant": tenant, "id": key_id, "api_key": secret, "encoded": encoded,
           "name": role_name(tenant), "es_url": settings.es_url}  # fmt: skip
    path = api_key_file(settings, tenant)
    write_private(path, yaml.safe_dump(doc, sort_keys=False))
    return path


def write_analyst_settings(settings: Settings, tenant: str) -> Path:
    """A settings file (paths only) that makes ``ssa alerts|incidents|report`` act as the tenant."""
    from infra.secure import write_private

    values = {"es_url": settings.es_url, "es_api_key_file": str(api_key_file(settings, tenant))}
    if settings.es_ca_file:
        values["es_ca_file"] = settings.es_ca_file
    path = analyst_settings_file(settings, tenant)
    write_private(path, yaml.safe_dump(values, sort_keys=False))
    return path


def _existing_key(es: Any, settings: Settings, tenant: str) -> str | None:
    """The id of the tenant's key on file if Elasticsearch still holds it valid with today's
    descriptors; else None (after invalidating a stale one)."""
    path = api_key_file(settings, tenant)
    if not path.exists():
        return None
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        key_id = str(doc["id"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    answer = _send(es, get_api_key_request(key_id))
    keys = (answer.body.get("api_keys") if answer is not None else None) or []
    if not keys or keys[0].get("invalidated"):
        return None
    wanted = role_descriptor(settings, tenant)["indices"][0]["names"]
    held = ((keys[0].get("role_descriptors") or {}).get(role_name(tenant)) or {}).get("indices") or [{}]
    stale = sorted(held[0].get("names") or []) != sorted(wanted)
    if stale or key_is_due(keys[0], settings, int(time.time() * 1000)):
        _send(es, invalidate_api_key_id_request(key_id))  # the new key is written before anyone reads it
        return None
    return key_id


def provision_es(
    settings: Settings, tenants: Iterable[str], say: Callable[[str], None] = print
) -> dict[str, Path]:
    """Role and API key per tenant (security on), or one line saying none were made (off).
    Returns the key file of each tenant that has one."""
    tenants = list(tenants)
    for tenant in tenants:
        check_tenant_id(tenant)  # the role's and the files' names are made from it
    es = _admin_client(settings)
    try:
        enforced, why = security_state(es, settings.es_url)
        if not enforced:
            say(f"elasticsearch: security is off at {settings.es_url} ({why}): no role or API key "
                f"created for {len(tenants)} tenant(s); nothing restricts who reads which index")  # fmt: skip
            return {}
        files = {}
        for tenant in tenants:
            _send(es, put_role_request(settings, tenant))
            kept = _existing_key(es, settings, tenant)
            if kept is None:
                created = _send(es, create_api_key_request(settings, tenant))
                files[tenant] = _write_key(settings, tenant, created.body)
            else:
                files[tenant] = api_key_file(settings, tenant)
            conf = write_analyst_settings(settings, tenant)
            patterns = ", ".join(tenant_index_patterns(settings, tenant))
            say(f"{tenant}: elasticsearch role {role_name(tenant)} (read {patterns}), "
                f"{'kept' if kept else 'new'} API key in {files[tenant]}, analyst settings {conf}")  # fmt: skip
        return files
    finally:
        es.close()


def revoke_es(settings: Settings, tenant: str, say: Callable[[str], None] = print) -> None:
    check_tenant_id(tenant)
    es = _admin_client(settings)
    try:
        enforced, why = security_state(es, settings.es_url)
        if enforced:
            answer = _send(es, invalidate_api_keys_request(tenant))
            invalidated = len(answer.body.get("invalidated_api_keys") or [])
            found = _send(es, delete_role_request(tenant))
            role = "deleted" if found is not None and found.body.get("found") else "absent"
            say(
                f"{tenant}: elasticsearch role {role_name(tenant)} {role}, {invalidated} API key(s) invalidated"
            )
        else:
            say(f"elasticsearch: security is off at {settings.es_url} ({why}): no role or key to remove")
    finally:
        es.close()
    for path in (api_key_file(settings, tenant), analyst_settings_file(settings, tenant)):
        path.unlink(missing_ok=True)
