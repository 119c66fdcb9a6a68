"""Tenant scoping shared by the analyst's stores (alerts, incidents).

A store made with ``tenant_scope="X"`` puts ``tenant: X`` in every query *and* checks every hit's
tenant before returning it; a hit of another tenant raises :class:`TenantScopeError` (it would
mean the filter was bypassed). An id that exists only for another tenant is reported as not
found, so a scoped user learns nothing about it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AnalystError", "NotFoundError", "ScopedStore", "TenantScopeError"]


class AnalystError(RuntimeError):
    """A workflow request cannot be done; the message says why, on one line."""


class NotFoundError(AnalystError):
    pass


class TenantScopeError(AnalystError):
    pass


class ScopedStore:
    what = "document"  # named in messages
    es: Any  # the subclass's Elasticsearch client
    index: str  # and index pattern

    def __init__(self, tenant_scope: str | None) -> None:
        self.tenant_scope = tenant_scope

    def show(self, doc_id: str) -> dict[str, Any]:
        """The document with this id (within the scope), with ``_index``, ``_seq_no``,
        ``_primary_term`` (for an optimistic-concurrency update)."""
        resp = self.es.search(
            index=self.index,
            query={"bool": {"filter": [{"ids": {"values": [doc_id]}}, *self._scope_filters(None)]}},
            seq_no_primary_term=True,
            size=2,
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        docs = self._checked(resp["hits"]["hits"])
        if not docs:
            raise self._not_found(doc_id)
        if len(docs) > 1:
            raise AnalystError(
                f"{self.what} {doc_id} is in several indices: {', '.join(d['_index'] for d in docs)}"
            )
        return docs[0]

    def _scope_filters(self, tenant: str | None) -> list[dict[str, Any]]:
        if self.tenant_scope is not None and tenant not in (None, self.tenant_scope):
            raise TenantScopeError(f"this view is scoped to tenant {self.tenant_scope}; cannot list {tenant}")
        wanted = self.tenant_scope or tenant
        return [{"term": {"tenant": wanted}}] if wanted else []

    def _checked(self, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
        docs = []
        for hit in hits:
            source = dict(hit["_source"])
            if self.tenant_scope is not None and source.get("tenant") != self.tenant_scope:
                raise TenantScopeError(
                    f"refusing output: {self.what} {hit['_id']} belongs to another tenant than {self.tenant_scope}"
                )
            source["_index"] = hit["_index"]
            if "_seq_no" in hit:
                source["_seq_no"], source["_primary_term"] = hit["_seq_no"], hit["_primary_term"]
            docs.append(source)
        return docs

    def _not_found(self, doc_id: str) -> NotFoundError:
        scope = f" for tenant {self.tenant_scope}" if self.tenant_scope else ""
        return NotFoundError(f"no {self.what} {doc_id}{scope}")
