"""Per-tenant Elasticsearch index names: the layout that index-level privileges can enforce.

Document-level security is a paid Elasticsearch feature; index-level privileges are in the free
Basic licence. So each tenant's documents live in indices of its own, and a tenant's role grants
exactly one wildcard pattern per kind of document, ``tenant_index_pattern``. The provider's SOC
reads every tenant through the kind's alias (``soc_alias``) or the prefix pattern.

Names: ``<prefix>t-<part>.<YYYY.MM.DD>`` for a tenant's documents and ``<prefix>soc.<YYYY.MM.DD>``
for documents no tenant may read (the cloud-wide threat level, the pipeline's own health counts).
``<part>`` is the tenant id in lower case (index names must be lower case); an id with capitals
gets ``~`` and a short hash of the exact id, so ``Acme`` and ``acme`` never share an index. Tenant
ids hold no ``.`` (``infra.secure.check_tenant_id``), so the pattern ``<prefix>t-<part>.*`` can
match no other tenant's index: the literal part ends at the first dot, and ``t-a.`` is not a
prefix of ``t-a-b.`` or ``t-ab.``. The ``t-`` marker keeps tenant indices apart from the ``soc``
ones and from the unscoped daily indices of earlier versions (``<prefix>YYYY.MM.DD``), which a
tenant named like a year would otherwise match.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Final

from infra.secure import PROVIDER, TENANT_ID_RE
from infra.settings import Settings

SOC_PART: Final = "soc"
_TENANT_ID: Final = re.compile(TENANT_ID_RE)
TENANT_MARK: Final = "t-"


def index_tenant_part(tenant: str) -> str:
    lower = tenant.lower()
    if lower == tenant:
        return lower
    return f"{lower}~{hashlib.blake2b(tenant.encode(), digest_size=3).hexdigest()}"


def _day(ts_ms: int) -> str:
    return time.strftime("%Y.%m.%d", time.gmtime(ts_ms / 1000))


def tenant_index(prefix: str, tenant: str, ts_ms: int) -> str:
    """The daily index of ``tenant``'s documents of one kind (``prefix``, e.g. ``ssa-alerts-``)."""
    return f"{prefix}{TENANT_MARK}{index_tenant_part(tenant)}.{_day(ts_ms)}"


def soc_index(prefix: str, ts_ms: int) -> str:
    """The daily index of documents of one kind that belong to no tenant."""
    return f"{prefix}{SOC_PART}.{_day(ts_ms)}"


def tenant_index_pattern(prefix: str, tenant: str) -> str:
    """The one pattern a tenant's role grants for one kind: its indices and no other's."""
    return f"{prefix}{TENANT_MARK}{index_tenant_part(tenant)}.*"


def tenant_prefixes(settings: Settings) -> dict[str, str]:
    """The kinds of document kept per tenant, by name, with their index prefixes."""
    return {
        "alerts": settings.index_alerts_prefix,
        "incidents": settings.index_incidents_prefix,
        "metrics": settings.index_metrics_prefix,
        "threat": settings.index_threat_prefix,
        "warnings": settings.index_warnings_prefix,
    }


def tenant_index_patterns(settings: Settings, tenant: str) -> list[str]:
    """Every index pattern a tenant's role grants (read), one per kind."""
    return [tenant_index_pattern(prefix, tenant) for prefix in tenant_prefixes(settings).values()]


def soc_alias(prefix: str) -> str:
    """The alias the provider's SOC reads a kind through: the prefix without its separator."""
    return prefix.rstrip("-_.") or prefix


# --- which index a document goes to, and how readers reach them ---------------------------------
NOT_INDEX_TENANTS: Final = frozenset({"", "-", "unknown", "public", "management", "_cloud", "_provider"})
"""``tenant`` values that name no tenant: such documents go to the ``soc`` index."""

COPY_FIELD: Final = "copy"
"""Marks the per-tenant copies of an alert or incident that involves several tenants (``tenant``
for the tenant's own reduced copy, ``shared`` for another tenant's copy of an alert); the full
document, the one the SOC counts, is in the ``soc`` index without it."""

SHARED_COPY_FIELD: Final = "shared_copy"
"""``true`` on the copy written to a tenant the alert is not about first (the non-owning tenant)."""


FILTERED_KINDS: Final = frozenset({"alerts", "incidents"})
"""The kinds whose SOC alias leaves out the per-tenant copies (``soc_alias_filter``)."""


def is_index_tenant(tenant: object) -> bool:
    """Whether ``tenant`` is an id that gets indices of its own: a tenant id as the secure mode
    allows it (letters, digits, ``-``, ``_``; no dot: ``infra.secure.check_tenant_id``), not a
    placeholder (``-``, ``unknown``, ``_cloud``...) and not the provider feeder's name."""
    if not isinstance(tenant, str) or tenant in NOT_INDEX_TENANTS or tenant == PROVIDER:
        return False
    return _TENANT_ID.fullmatch(tenant) is not None


def document_index(prefix: str, tenant: object, ts_ms: int) -> str:
    """The daily index of a document of one kind: its tenant's, or the ``soc`` one when the
    document belongs to no tenant (``is_index_tenant``)."""
    if is_index_tenant(tenant):
        return tenant_index(prefix, tenant, ts_ms)  # type: ignore[arg-type]
    return soc_index(prefix, ts_ms)


def soc_alias_filter() -> dict[str, Any]:
    """The alerts and incidents aliases' filter: the per-tenant copies of a multi-tenant alert or
    incident are left out, so the SOC counts each once (its full document in the ``soc`` index). A filtered alias is
    a Basic-licence feature; document-level security is not, and is not needed here."""
    return {"bool": {"must_not": [{"exists": {"field": COPY_FIELD}}]}}


def soc_template_aliases(prefix: str, *, filtered: bool = False) -> dict[str, Any]:
    """The ``aliases`` of a kind's index template: every new index of the kind joins the SOC
    alias (``filtered`` for alerts and incidents)."""
    return {soc_alias(prefix): {"filter": soc_alias_filter()} if filtered else {}}


def read_index(prefix: str, tenant: str | None) -> str:
    """What a reader searches for one kind: a tenant's own pattern when scoped to a tenant (the
    indices its role grants), else the SOC alias."""
    return tenant_index_pattern(prefix, tenant) if tenant else soc_alias(prefix)


def alias_existing_indices(es: Any, settings: Settings) -> list[str]:
    """Put the SOC aliases on indices made before the templates carried them (the shared daily
    indices of earlier versions, ``<prefix>YYYY.MM.DD``, and any other index of the prefixes), so
    the SOC keeps reading its history through the alias. Idempotent; returns the kinds done."""
    done = []
    for kind, prefix in tenant_prefixes(settings).items():
        names = list(es.indices.get(index=prefix + "*", ignore_unavailable=True, allow_no_indices=True))
        if not names:
            continue
        add: dict[str, Any] = {"index": prefix + "*", "alias": soc_alias(prefix)}
        if kind in FILTERED_KINDS:
            add["filter"] = soc_alias_filter()
        es.indices.update_aliases(actions=[{"add": add}])
        done.append(kind)
    return done
