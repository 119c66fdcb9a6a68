"""Who a CloudTrail call grants a resource to, read from the share and policy actions as AWS logs them.

``grants(action, requestParameters)`` gives the grantees a call adds and those it removes. A
grantee is an account id (``"444455556666"``), ``"public"`` (anyone: the EC2 and RDS group
``all``, a policy ``Principal`` of ``*``, the S3 ``AllUsers`` and ``AuthenticatedUsers`` groups, a
public canned ACL), ``"canonical:<id>"`` or ``"email:<address>"`` for S3 ACL grantees that name no
account, or any other principal text as written. An ARN stands for its account (an organisation or
OU ARN for its management account); AWS service principals (``cloudtrail.amazonaws.com``, ARNs
owned by ``aws`` or ``cloudfront``) grant nothing to a tenant and are left out. Where each action
names its grantees:

- ``ec2.ModifySnapshotAttribute`` / ``ec2.ModifyImageAttribute``: ``createVolumePermission`` /
  ``launchPermission`` ``{"add"|"remove": {"items": [{"userId"} | {"group": "all"} |
  {"organizationArn"} | {"organizationalUnitArn"}]}}``;
- ``rds.ModifyDBSnapshotAttribute`` / ``rds.ModifyDBClusterSnapshotAttribute``: ``attributeName``
  ``restore`` with ``valuesToAdd`` / ``valuesToRemove``;
- ``s3.PutBucketPolicy`` (``bucketPolicy``, an object) and ``kms.PutKeyPolicy`` (``policy``, a JSON
  string): the ``Principal`` of each ``Allow`` statement. A ``*`` narrowed by a condition on the
  caller's account (``aws:PrincipalAccount``, ``aws:SourceAccount``, ``kms:CallerAccount``) grants
  those accounts; one narrowed to an organisation, VPC, address or ARN is not public and counts
  only the accounts of the ARNs it names; ``NotPrincipal`` in an ``Allow`` is everyone else;
- ``s3.PutBucketAcl``: ``AccessControlPolicy.AccessControlList.Grant`` (one object or a list; the
  owner's own canonical id is not a grantee) or the ``x-amz-acl`` / ``x-amz-grant-*`` headers;
- ``kms.CreateGrant``: ``granteePrincipal``;
- ``ram.CreateResourceShare`` / ``ram.AssociateResourceShare``: ``principals`` (removed by
  ``ram.DisassociateResourceShare``).

A grantee field, or the list that holds grantees, of the wrong JSON type (an account id as a
number, ``items`` as an object) raises ``BadField`` naming it, so the record goes to the DLQ instead
of hiding a grant; other fields of the wrong type are not grants and are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from ingest.parsers.flowutil import BadField, clip
from ingest.reader import JsonRejected, load_json

__all__ = ["PUBLIC", "SHARE_ACTIONS", "grants"]

PUBLIC: Final = "public"
_ACCOUNT: Final = re.compile(r"\d{12}")
_PUBLIC_GROUPS: Final = ("/global/AllUsers", "/global/AuthenticatedUsers")
_PUBLIC_CANNED: Final = frozenset({"public-read", "public-read-write", "authenticated-read"})
_ACCOUNT_CONDITIONS: Final = frozenset({"aws:principalaccount", "aws:sourceaccount", "kms:calleraccount"})
_ARN_CONDITIONS: Final = frozenset({"aws:principalarn", "aws:sourcearn", "aws:sourceowner"})
_NARROWING_CONDITIONS: Final = frozenset(
    {
        "aws:principalorgid", "aws:principalorgpaths", "aws:sourceorgid", "aws:sourceorgpaths",
        "aws:sourcevpc", "aws:sourcevpce", "aws:sourceip", "aws:vpcsourceip", "kms:viaservice",
    }
)  # fmt: skip
_GRANT_HEADER: Final = re.compile(r'(id|uri|emailAddress)="([^"]*)"')

Grants = tuple[list[str], list[str]]


def grants(action: str, params: Any) -> Grants:
    """(grantees added, grantees removed) by one call; both empty for any other action."""
    reader = _READERS.get(action)
    if reader is None or not isinstance(params, dict):
        return [], []
    added, removed = reader(params)
    return _unique(added), _unique(removed)


def principal(value: Any) -> str | None:
    """A grantee from one principal as policies and APIs write it; None for AWS services."""
    if not isinstance(value, str) or not value:
        return None
    if value == "*":
        return PUBLIC
    if value.startswith("arn:"):
        parts = value.split(":", 5)
        account = parts[4] if len(parts) > 4 else ""
        if _ACCOUNT.fullmatch(account):
            return account
        return None if account in ("aws", "cloudfront", "") else value
    if value.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return None
    return value


def _who(value: Any, where: str) -> str | None:
    """A grantee field: absent is nothing, a string is a principal, anything else is refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadField(f"bad {where} {clip(value)}: not a string")
    return principal(value)


def _list(value: Any, where: str) -> list[Any]:
    """A list of grantees: absent is empty, a list is itself, anything else is refused."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadField(f"bad {where} {clip(value)}: not a list")
    return value


# --- EC2 and RDS attributes ----------------------------------------------------------------------
def _ec2_permission(key: str) -> Callable[[dict[str, Any]], Grants]:
    def read(params: dict[str, Any]) -> Grants:
        perm = params.get(key)
        if not isinstance(perm, dict):
            return [], []
        return list(_ec2_items(perm, "add", key)), list(_ec2_items(perm, "remove", key))

    return read


def _ec2_items(perm: dict[str, Any], op: str, key: str) -> Iterator[str]:
    change = perm.get(op)
    where = f"requestParameters.{key}.{op}.items"
    for item in _list(change.get("items") if isinstance(change, dict) else None, where):
        if not isinstance(item, dict):
            raise BadField(f"bad {where}[] {clip(item)}: not an object")
        if _who(item.get("group"), f"{where}[].group") == "all":
            yield PUBLIC
        for field in ("userId", "organizationArn", "organizationalUnitArn"):
            who = _who(item.get(field), f"{where}[].{field}")
            if who is not None:
                yield who


def _rds_restore(params: dict[str, Any]) -> Grants:
    if params.get("attributeName") != "restore":
        return [], []
    return _accounts(params, "valuesToAdd"), _accounts(params, "valuesToRemove")


def _accounts(params: dict[str, Any], key: str) -> list[str]:
    out = []
    for value in _list(params.get(key), f"requestParameters.{key}"):
        who = PUBLIC if value == "all" else _who(value, f"requestParameters.{key}[]")
        if who is not None:
            out.append(who)
    return out


# --- resource policies ---------------------------------------------------------------------------
def _bucket_policy(params: dict[str, Any]) -> Grants:
    return _policy_grantees(params.get("bucketPolicy")), []


def _key_policy(params: dict[str, Any]) -> Grants:
    text = params.get("policy")
    if not isinstance(text, str):
        return [], []
    try:
        doc = load_json(text.encode("utf-8"))
    except (JsonRejected, UnicodeEncodeError):
        raise BadField(f"bad requestParameters.policy {clip(text)}: not a JSON policy document") from None
    return _policy_grantees(doc), []


def _policy_grantees(doc: Any) -> list[str]:
    if not isinstance(doc, dict):
        return []
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    out: list[str] = []
    for st in statements if isinstance(statements, list) else ():
        if isinstance(st, dict) and st.get("Effect") == "Allow":
            out.extend(_statement_grantees(st))
    return out


def _statement_grantees(st: dict[str, Any]) -> list[str]:
    if "NotPrincipal" in st:
        return [PUBLIC]  # everyone but the principals it names
    named = list(_principals(st.get("Principal")))
    if PUBLIC not in named:
        return named
    named = [n for n in named if n != PUBLIC]
    condition = _condition_values(st.get("Condition"))
    accounts = [a for key in _ACCOUNT_CONDITIONS for a in condition.get(key, ())]
    if accounts:
        return named + [a for a in map(principal, accounts) if a is not None]
    arns = [a for key in _ARN_CONDITIONS for a in condition.get(key, ())]
    if arns or _NARROWING_CONDITIONS & condition.keys():
        return named + [a for a in map(principal, arns) if a is not None and a != PUBLIC]
    return [*named, PUBLIC]


def _principals(value: Any) -> Iterator[str]:
    if value == "*":
        yield PUBLIC
        return
    if not isinstance(value, dict):
        return
    for kind, names in value.items():
        if kind not in ("AWS", "CanonicalUser"):
            continue  # Service and Federated principals are not tenants
        for name in names if isinstance(names, list) else [names]:
            who = _who(name, f"policy Principal.{kind}")
            if who is not None:
                yield f"canonical:{name}" if kind == "CanonicalUser" else who


def _condition_values(condition: Any) -> dict[str, list[str]]:
    """Condition key (lower case, as IAM compares them) -> its string values, across operators."""
    out: dict[str, list[str]] = {}
    for clauses in condition.values() if isinstance(condition, dict) else ():
        for key, values in clauses.items() if isinstance(clauses, dict) else ():
            vals = values if isinstance(values, list) else [values]
            out.setdefault(str(key).lower(), []).extend(v for v in vals if isinstance(v, str))
    return out


# --- S3 ACLs -------------------------------------------------------------------------------------
def _bucket_acl(params: dict[str, Any]) -> Grants:
    out: list[str] = []
    policy = params.get("AccessControlPolicy")
    if isinstance(policy, dict):
        owner = policy.get("Owner")
        owner_id = owner.get("ID") if isinstance(owner, dict) else None
        acl = policy.get("AccessControlList")
        grant = acl.get("Grant") if isinstance(acl, dict) else None
        for g in grant if isinstance(grant, list) else [grant]:
            grantee = g.get("Grantee") if isinstance(g, dict) else None
            if isinstance(grantee, dict):
                out.extend(_acl_grantee(grantee, owner_id))
    for name, value in params.items():
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            if name.lower() == "x-amz-acl" and text in _PUBLIC_CANNED:
                out.append(PUBLIC)
            elif name.lower().startswith("x-amz-grant-"):
                for kind, who in _GRANT_HEADER.findall(text):
                    field = {"id": "ID", "uri": "URI", "emailAddress": "EmailAddress"}[kind]
                    out.extend(_acl_grantee({field: who}, None))
    return out, []


def _acl_grantee(grantee: dict[str, Any], owner_id: Any) -> Iterable[str]:
    ident, uri, email = grantee.get("ID"), grantee.get("URI"), grantee.get("EmailAddress")
    if isinstance(uri, str):
        return [PUBLIC] if uri.endswith(_PUBLIC_GROUPS) else []  # LogDelivery is the S3 service
    if isinstance(ident, str) and ident and ident != owner_id:
        return [f"canonical:{ident}"]
    if isinstance(email, str) and email:
        return [f"email:{email}"]
    return []


# --- KMS grants and RAM shares -------------------------------------------------------------------
def _kms_grant(params: dict[str, Any]) -> Grants:
    who = _who(params.get("granteePrincipal"), "requestParameters.granteePrincipal")
    return ([who] if who is not None else []), []


def _ram_added(params: dict[str, Any]) -> Grants:
    return _accounts(params, "principals"), []


def _ram_removed(params: dict[str, Any]) -> Grants:
    return [], _accounts(params, "principals")


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


_READERS: Final[dict[str, Callable[[dict[str, Any]], Grants]]] = {
    "ec2.ModifySnapshotAttribute": _ec2_permission("createVolumePermission"),
    "ec2.ModifyImageAttribute": _ec2_permission("launchPermission"),
    "rds.ModifyDBSnapshotAttribute": _rds_restore,
    "rds.ModifyDBClusterSnapshotAttribute": _rds_restore,
    "s3.PutBucketPolicy": _bucket_policy,
    "s3.PutBucketAcl": _bucket_acl,
    "kms.PutKeyPolicy": _key_policy,
    "kms.CreateGrant": _kms_grant,
    "ram.CreateResourceShare": _ram_added,
    "ram.AssociateResourceShare": _ram_added,
    "ram.DisassociateResourceShare": _ram_removed,
}
SHARE_ACTIONS: Final = tuple(_READERS)
"""The CloudTrail actions that grant or revoke access (``detectors/config/default.yaml`` lists them
as ``share_actions``)."""
