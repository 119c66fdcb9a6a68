"""cross tenant rules.

Every cross-tenant alert names the tenants and the way between them in the same evidence keys,
which the leakage board groups on: ``src_tenant`` (the tenant acting: the flow's source, the
caller, the sharer), ``dst_tenant`` (the tenant reached or granted), ``channel`` (``flow`` for
network traffic, else the cloud service of the audited call: ``storage``, ``snapshot``, ``image``,
...) and, for control-plane calls, ``resource``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FLOW_CHANNEL", "audit_labels", "flow_labels"]

FLOW_CHANNEL: Final = "flow"


def flow_labels(src_tenant: str, dst_tenant: str) -> dict[str, str]:
    return {"src_tenant": src_tenant, "dst_tenant": dst_tenant, "channel": FLOW_CHANNEL}


def audit_labels(
    src_tenant: str | None, dst_tenant: str, action: str, resource: str, src_ip: str | None = None
) -> dict[str, str]:
    """Labels of a control-plane hit; the channel is the service prefix of the action
    (``snapshot.Share`` -> ``snapshot``), as the audit parsers write it. ``src_ip``, the address
    the call came from (CloudTrail's ``sourceIPAddress``), when the record has one: with the
    registry it names the VM that made the call, which links the call to that VM's other alerts."""
    labels = {
        "src_tenant": src_tenant or "unknown",
        "dst_tenant": dst_tenant,
        "channel": action.split(".", 1)[0] or "unknown",
        "resource": resource,
    }
    if src_ip:
        labels["src_ip"] = src_ip
    return labels
