"""CloudTrail as AWS writes it (issue 19): the real share and policy actions, ARNPrefix resources,
cross-account copies in both trails and instance credentials used elsewhere, from the parser
through the default cross-tenant rules. ``samples/cloudtrail_real.json`` holds our own records in
the shapes AWS documents (account 111122223333 is t-acme, 444455556666 t-beta, 999988887777 is
outside the registry)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.registry import all_detectors
from ingest.parsers import ListOutput, ParseContext, parse_bytes
from ingest.parsers.cloudtrail_grants import PUBLIC, SHARE_ACTIONS, grants
from ingest.schema import AuditEvent
from ingest.tenants import TenantRegistry

SAMPLES = Path(__file__).parent / "samples"
BETA, UNKNOWN = "444455556666", "999988887777"
FRA, RSO = "cross_tenant.foreign_resource_access", "cross_tenant.resource_shared_out"


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def parse(data: bytes, registry: TenantRegistry) -> ListOutput:
    return parse_bytes("cloudaudit", data, ParseContext(registry=registry))


def by_record(events: list) -> dict[int, AuditEvent]:
    """The real sample's events by their record number (the end of our eventIDs)."""
    return {int(e.extra["eventID"].rsplit("-", 1)[1]): e for e in events}


# --- parser ----------------------------------------------------------------------------------------
def test_real_records_map_resources_owners_and_trail_copies(registry):
    out = parse((SAMPLES / "cloudtrail_real.json").read_bytes(), registry)
    assert out.dlqs == [] and len(out.events) == 20
    ev = by_record(out.events)
    # ListObjects names the bucket only as resources[0].ARNPrefix; the owner is in resources[1]
    owner_copy, caller_copy = ev[12], ev[13]
    assert (owner_copy.action, owner_copy.resource, owner_copy.resource_tenant) == (
        "s3.ListObjects",
        "arn:aws:s3:::acme-shared/",
        "t-acme",
    )
    assert (owner_copy.tenant, owner_copy.extra["trail_copy"]) == ("t-acme", "owner")
    assert (caller_copy.tenant, caller_copy.extra["trail_copy"], caller_copy.resource_tenant) == (
        "t-beta",
        "caller",
        "t-acme",
    )
    # a refused call's caller copy has the owner's accountId blanked: the caller is not the owner
    redacted = ev[15]
    assert (redacted.result, redacted.resource, redacted.resource_tenant) == (
        "failure",
        "arn:aws:s3:::acme-private/",
        None,
    )
    assert "resource_account" not in redacted.extra
    assert ev[10].resource == "arn:aws:ec2:us-east-1:111122223333:subnet/subnet-0abc1234def567890"
    assert ev[10].resource_tenant == "t-acme"
    assert all("trail_copy" not in e.extra for n, e in ev.items() if n not in (12, 13, 14, 15, 16))


def test_real_share_and_policy_grantees(registry):
    ev = by_record(parse((SAMPLES / "cloudtrail_real.json").read_bytes(), registry).events)
    granted = {n: e.extra["grantees"] for n, e in ev.items() if "grantees" in e.extra}
    assert granted == {
        1: ["t-beta"],  # account 444455556666 is t-beta in the registry
        2: [PUBLIC],
        4: [UNKNOWN],
        5: [UNKNOWN],
        6: [UNKNOWN],
        7: ["t-beta"],  # the Service principal and the Deny statement grant nothing
        8: ["t-acme", UNKNOWN],  # the kms:CallerAccount-narrowed * is the key's own account
        9: ["t-acme"],
        10: [UNKNOWN],
        11: [PUBLIC],  # the owner's own canonical id is not a grantee
    }
    assert {n: e.extra["revoked"] for n, e in ev.items() if "revoked" in e.extra} == {3: [UNKNOWN]}


def record(name: str, params: object, **more: object) -> bytes:
    rec = {
        "eventVersion": "1.10",
        "userIdentity": {
            "type": "IAMUser",
            "arn": "arn:aws:iam::111122223333:user/bob",
            "accountId": "111122223333",
        },
        "eventTime": "2024-03-05T11:00:00Z",
        "eventSource": name.split(".")[0] + ".amazonaws.com",
        "eventName": name.split(".")[1],
        "sourceIPAddress": "198.51.100.23",
        "requestParameters": params,
        "eventID": "e0",
        "recipientAccountId": "111122223333",
        **more,
    }
    return json.dumps(rec).encode()


def test_bucket_name_is_the_fallback_when_resources_name_no_arn(registry):
    data = record(
        "s3.GetObject",
        {"bucketName": "acme-data", "key": "a.csv"},
        resources=[{"type": "AWS::S3::Object", "accountId": "111122223333"}],
    )
    (event,) = parse(data, registry).events
    assert isinstance(event, AuditEvent)
    assert (event.resource, event.resource_tenant) == ("arn:aws:s3:::acme-data/a.csv", "t-acme")


def test_a_grantee_of_the_wrong_type_sends_the_record_to_the_dlq(registry):
    params = {
        "snapshotId": "snap-1",
        "createVolumePermission": {"add": {"items": [{"userId": 999988887777}]}},
    }
    out = parse(record("ec2.ModifySnapshotAttribute", params), registry)
    assert out.events == []
    (dlq,) = out.dlqs
    assert "requestParameters.createVolumePermission.add.items[].userId" in dlq.reason


# --- grantees of the policy and ACL shapes ---------------------------------------------------------
def _policy(*statements: dict) -> dict:
    return {"bucketName": "b", "bucketPolicy": {"Version": "2012-10-17", "Statement": list(statements)}}


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}, [PUBLIC]),
        ({"Effect": "Allow", "Principal": {"AWS": "*"}}, [PUBLIC]),
        ({"Effect": "Deny", "Principal": "*", "Condition": {"Bool": {"aws:SecureTransport": False}}}, []),
        (
            {"Effect": "Allow", "Principal": {"AWS": [BETA, f"arn:aws:iam::{UNKNOWN}:role/R"]}},
            [BETA, UNKNOWN],
        ),
        ({"Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"}}, []),
        ({"Effect": "Allow", "Principal": {"CanonicalUser": "abc123"}}, ["canonical:abc123"]),
        ({"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:root"}}, [PUBLIC]),
        # a * narrowed to callers of named accounts grants those accounts; IAM keys are case-insensitive
        (
            {
                "Effect": "Allow",
                "Principal": "*",
                "Condition": {"StringEquals": {"AWS:PrincipalAccount": [UNKNOWN]}},
            },
            [UNKNOWN],
        ),
        # narrowed to an organisation or a VPC endpoint: not public, and no account to name
        (
            {
                "Effect": "Allow",
                "Principal": "*",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}},
            },
            [],
        ),
        (
            {
                "Effect": "Allow",
                "Principal": "*",
                "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}},
            },
            [],
        ),
        # narrowed by something that says nothing about who: still anyone
        (
            {"Effect": "Allow", "Principal": "*", "Condition": {"Bool": {"aws:SecureTransport": True}}},
            [PUBLIC],
        ),
    ],
)
def test_bucket_policy_statements(statement, expected):
    assert grants("s3.PutBucketPolicy", _policy(statement)) == (expected, [])


def test_key_policy_is_a_json_string_and_acls_have_three_shapes():
    doc = {"Statement": {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{UNKNOWN}:root"}}}
    assert grants("kms.PutKeyPolicy", {"keyId": "k", "policy": json.dumps(doc)}) == ([UNKNOWN], [])
    one_grant = {
        "AccessControlPolicy": {
            "Owner": {"ID": "owner"},
            "AccessControlList": {
                "Grant": {"Grantee": {"xsi:type": "AmazonCustomerByEmail", "EmailAddress": "x@example.com"}}
            },
        }
    }
    assert grants("s3.PutBucketAcl", one_grant) == (["email:x@example.com"], [])
    assert grants("s3.PutBucketAcl", {"bucketName": "b", "x-amz-acl": ["public-read"]}) == ([PUBLIC], [])
    assert grants("s3.PutBucketAcl", {"bucketName": "b", "x-amz-acl": ["private"]}) == ([], [])
    header = 'uri="http://acs.amazonaws.com/groups/s3/LogDelivery", id="c0ffee"'
    assert grants("s3.PutBucketAcl", {"x-amz-grant-write": [header]}) == (["canonical:c0ffee"], [])


def test_rds_ram_and_kms_grants():
    rds = {"dBClusterSnapshotIdentifier": "c", "attributeName": "restore", "valuesToAdd": ["all"]}
    assert grants("rds.ModifyDBClusterSnapshotAttribute", rds) == ([PUBLIC], [])
    assert grants("rds.ModifyDBSnapshotAttribute", {**rds, "attributeName": "other"}) == ([], [])
    org = "arn:aws:organizations::444455556666:ou/o-1/ou-2"
    assert grants("ram.AssociateResourceShare", {"principals": [org]}) == (["444455556666"], [])
    assert grants("ram.DisassociateResourceShare", {"principals": [UNKNOWN]}) == ([], [UNKNOWN])
    assert grants("kms.CreateGrant", {"granteePrincipal": "ec2.us-east-1.amazonaws.com"}) == ([], [])
    assert grants("s3.GetObject", {"bucketName": "b"}) == ([], [])


def test_the_default_config_lists_every_real_share_action():
    cfg = DetectorConfig.default()
    adding = {a for a in SHARE_ACTIONS if a != "ram.DisassociateResourceShare"}
    for det in (FRA, RSO):
        assert adding <= set(cfg.detectors[det]["params"]["share_actions"])


# --- parser and default rules together ------------------------------------------------------------
def test_cloudtrail_samples_alert_once_per_action(registry):
    events = []
    # the cross-tenant samples (cloudtrail_cross_tenant_*.json) have tests of their own
    for name in ("cloudtrail.json", "cloudtrail.jsonl", "cloudtrail_real.json"):
        events += parse((SAMPLES / name).read_bytes(), registry).events
    ids = by_record([e for e in events if e.extra.get("eventID", "").startswith("c1000000")])
    engine = DetectionEngine(all_detectors(include_anomaly=False), DetectionContext(registry=registry))
    alerts = engine.run(sorted(events, key=lambda e: (e.ts, e.id)))
    found = Counter((a.detector, a.entity.id.rsplit("/", 1)[-1], *a.evidence["details"]) for a in alerts)
    assert found == Counter(
        {
            # cloudtrail.json: beta's cross-account read (its caller copy, record 16, adds nothing) and
            # the real snapshot share to an unknown account
            (FRA, "alice", "success s3.GetObject t-acme"): 1,
            (RSO, "bob", f"success ec2.ModifySnapshotAttribute to {UNKNOWN}"): 1,
            (RSO, "bob", "success ec2.ModifySnapshotAttribute public"): 1,
            (RSO, "bob", f"success ec2.ModifyImageAttribute to {UNKNOWN}"): 1,
            (RSO, "bob", f"success rds.ModifyDBSnapshotAttribute to {UNKNOWN}"): 1,
            (RSO, "bob", f"success s3.PutBucketPolicy to {UNKNOWN}"): 1,
            (RSO, "bob", f"success kms.PutKeyPolicy to {UNKNOWN}"): 1,
            (RSO, "bob", f"success ram.CreateResourceShare to {UNKNOWN}"): 1,
            (RSO, "bob", "success s3.PutBucketAcl public"): 1,
            (FRA, "carol", "failure s3.ListObjects t-acme"): 1,  # records 14 and 15: one refused call
            (
                FRA,
                "i-0abcd1234ef567890",
                "success s3.GetObject with i-0abcd1234ef567890 credentials from t-beta",
            ): 1,
            (
                FRA,
                "i-0abcd1234ef567890",
                "success ec2.DescribeInstances with i-0abcd1234ef567890 credentials from t-beta VPC endpoint",
            ): 1,
            (
                FRA,
                "i-0abcd1234ef567890",
                "success sts.GetCallerIdentity with i-0abcd1234ef567890 credentials from an address no tenant owns",
            ): 1,
        }
    )
    assert all(a.evidence["count"] == 1 for a in alerts)
    cited = [i for a in alerts for i in a.evidence["event_ids"]]
    assert len(cited) == len(set(cited))  # no record is counted twice
    # registry shares used by their grantees, the caller copies and the instance at home raise nothing
    quiet = {ids[n].id for n in (1, 7, 9, 12, 13, 15, 16, 17)}
    assert not quiet & set(cited)
    by_detail = {next(iter(a.evidence["details"])): a for a in alerts}
    stolen = by_detail["success s3.GetObject with i-0abcd1234ef567890 credentials from t-beta"]
    assert (stolen.tenant, stolen.score, stolen.attack.technique_id) == ("t-acme", 85, "T1552.005")
    assert by_detail["success ec2.ModifySnapshotAttribute public"].score == 92
