"""Anonymized exports: keyed tenant pseudonyms and k-tenant suppression.

Method (also written into every anonymized export, :data:`METHOD`):

1. Tenant ids are replaced by ``T-`` + the first 12 hex digits of HMAC-SHA256(key, tenant id). The
   key is secret and kept by the exporter: the same key gives the same pseudonym in every export
   (so trends can be followed), and without the key a pseudonym cannot be linked to a tenant by
   hashing candidate ids. The key comes from the file named by ``--key-file`` or
   ``SSA_REPORT_KEY_FILE`` (at least 16 bytes), never from a variable's value: like every other
   secret of the project it is a file, since environment values show in process listings.
2. Every table cell describing fewer than k distinct tenants (default 5; the current and the
   previous period together for trend rows) is suppressed, and so is any summary figure when the
   whole report covers fewer than k tenants; the incident figures of the summary also when the
   incidents concern fewer than k tenants. Rows of the per-tenant table describe one tenant
   each, so they are suppressed whenever k > 1. The same rule covers every table: the incident
   tables, the trend over time (one row per time bucket and severity) and the threat level (the
   cloud's level describes the tenants of the report; a tenant-scoped report's level, one).
   A row that describes no tenant at all (zero in both periods) has nothing to hide and is shown.
3. Secondary suppression: when a table has exactly one suppressed row, the smallest remaining
   non-zero row is suppressed too, so the hidden value cannot be recovered as total minus the
   others.

What was removed is counted in ``Report.anonymization`` (``rows``, ``suppressed``,
``secondary``, ``summary_hidden``) for the report's method section.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from analyst.report import Report, Row, Table

__all__ = ["DEFAULT_K", "METHOD", "AnonymizeError", "anonymize", "load_key", "pseudonym"]

DEFAULT_K: Final = 5
MIN_KEY_BYTES: Final = 16
METHOD: Final = (
    "Tenants are pseudonymised with HMAC-SHA256 under a secret key held by the exporter "
    "(T- plus 12 hex digits; stable across exports made with the same key). Any cell describing "
    "fewer than k={k} distinct tenants is suppressed (shown as 'suppressed'), including per-tenant "
    "rows when k>1, all summary figures when the report covers fewer than k tenants, and the "
    "incident figures when the incidents concern fewer than k tenants; rows describing no tenant "
    "(zero) are shown; when a table has a single suppressed row, its smallest other non-zero row is "
    "suppressed too so the value cannot be derived from the total."
)


class AnonymizeError(ValueError):
    pass


def load_key(key_file: str | None = None, env: Mapping[str, str] | None = None) -> bytes:
    env = os.environ if env is None else env
    path = key_file or env.get("SSA_REPORT_KEY_FILE")
    if path:
        try:
            key = Path(path).read_bytes().strip()
        except OSError as exc:
            raise AnonymizeError(f"cannot read pseudonym key file {path}: {exc.strerror or exc}") from None
    elif env.get("SSA_REPORT_KEY"):
        raise AnonymizeError(
            "SSA_REPORT_KEY is not read: put the pseudonym key in a file readable only by you and "
            "name it with --key-file or SSA_REPORT_KEY_FILE"
        )
    else:
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise AnonymizeError(
            f"--anonymize needs a secret key of at least {MIN_KEY_BYTES} bytes in a file "
            "(--key-file or SSA_REPORT_KEY_FILE)"
        )
    return key


def pseudonym(tenant: str, key: bytes) -> str:
    return "T-" + hmac.new(key, tenant.encode(), hashlib.sha256).hexdigest()[:12]


def _suppress_row(row: Row) -> Row:
    return dataclasses.replace(row, values=dict.fromkeys(row.values), suppressed=True)


def _suppress_table(table: Table, k: int, key: bytes, counts: dict[str, int]) -> Table:
    rows = []
    for row in table.rows:
        name = pseudonym(row.key, key) if table.name == "tenant" or table.tenant_keys else row.key
        tenants = frozenset(pseudonym(t, key) for t in row.tenants)
        new = dataclasses.replace(row, key=name, tenants=tenants)
        rows.append(_suppress_row(new) if 0 < len(row.tenants) < k else new)
    hidden = [r for r in rows if r.suppressed]
    shown = [r for r in rows if not r.suppressed and r.tenants]  # zero rows protect nothing
    counts["rows"] += len(rows)
    counts["suppressed"] += len(hidden)
    if len(hidden) == 1 and shown:
        smallest = min(shown, key=lambda r: (r.values.get("count") or 0, r.key))
        rows = [_suppress_row(r) if r is smallest else r for r in rows]
        counts["suppressed"] += 1
        counts["secondary"] += 1
    if table.name == "tenant":
        rows.sort(key=lambda r: r.key)  # pseudonym order leaks nothing about size
    return dataclasses.replace(table, rows=rows)


def _is_incident_figure(name: str) -> bool:
    return "incident" in name


def anonymize(report: Report, key: bytes, k: int = DEFAULT_K) -> Report:
    """A copy of ``report`` with pseudonymous tenants and cells of fewer than ``k`` tenants hidden."""
    if k < 1:
        raise AnonymizeError("k must be at least 1")
    summary = dict(report.summary)
    if len(report.tenants) < k or int(report.summary.get("tenants") or 0) < k:
        summary = dict.fromkeys(summary)
    elif int(report.summary.get("incident_tenants") or 0) < k:
        summary = {n: (None if _is_incident_figure(n) else v) for n, v in summary.items()}
    counts = {"rows": 0, "suppressed": 0, "secondary": 0}
    tables = [_suppress_table(t, k, key, counts) for t in report.tables]
    counts["summary_hidden"] = sum(
        1 for n, v in summary.items() if v is None and report.summary.get(n) is not None
    )
    return dataclasses.replace(
        report,
        tenant=pseudonym(report.tenant, key) if report.tenant else None,
        summary=summary,
        tables=tables,
        tenants=frozenset(pseudonym(t, key) for t in report.tenants),
        method=METHOD.format(k=k),
        anonymized=True,
        anonymization=counts,
    )
