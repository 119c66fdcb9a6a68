"""Issue 20, item 3: the provider's own service ranges are neither exfiltration nor floods, and the
control-plane cross-tenant signals hold on CloudTrail records in AWS's shapes.

Flow side: the same traffic runs against the samples registry with and without its
``provider_services``, so each look-alike is quiet *because of* the entry, and the skips are counted.
Control plane: ``samples/cloudtrail_cross_tenant_*.json`` (our records in the shapes the CloudTrail
record-contents and userIdentity references document; account 111122223333 is t-acme,
444455556666 t-beta, 999988887777 outside the registry) go through the parser and the cross-tenant
rules, with the parser given the registry and without it (accounts left as ids)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from detectors.alert import Alert
from detectors.base import Detector
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.rules.cross_tenant.foreign_resource_access import ForeignResourceAccess
from detectors.rules.cross_tenant.resource_shared_out import ResourceSharedOut
from detectors.rules.dos.distributed_flood import DistributedFlood
from detectors.rules.dos.source_flood import SourceFlood
from detectors.rules.exfiltration.external_upload import ExternalUpload
from detectors.samples import SAMPLE_START_MS, samples_registry
from ingest.parsers import ParseContext, parse_bytes
from ingest.schema import Event, FlowEvent
from ingest.tenants import TenantRegistry

SAMPLES = Path(__file__).parent / "samples"
WITH = samples_registry()
WITHOUT = TenantRegistry.from_dict({k: v for k, v in WITH.to_dict().items() if k != "provider_services"})
FRA, RSO = ForeignResourceAccess.meta.id, ResourceSharedOut.meta.id
ACME_VM = "10.1.1.10"


def flow(n: int, dst: str, dst_port: int, **kw: Any) -> FlowEvent:
    raw = {
        "kind": "flow", "id": f"ps-{n}", "ts": SAMPLE_START_MS + n * 1000, "source": "test", "tenant": "t-acme",
        "src_ip": ACME_VM, "dst_ip": dst, "src_port": 40000 + n % 20000, "dst_port": dst_port, "proto": "tcp",
        **kw,
    }  # fmt: skip
    return msgspec.convert(raw, FlowEvent)


def run(
    detector_cls: type[Detector], registry: TenantRegistry, events: list[Event]
) -> tuple[list[Alert], dict]:
    engine = DetectionEngine([detector_cls(DetectorConfig.default())], DetectionContext(registry=registry))
    alerts = engine.run(sorted(events, key=lambda e: (e.ts, e.id)))
    return alerts, engine.stats()["detectors"][detector_cls.meta.id]


def backup(dst: str, port: int = 443, source: str = "test") -> list[Event]:
    """10 GB in 5 minutes from one VM to one address, as one bidirectional record per 30 s."""
    extra = {"conn_state": "SF"} if source == "zeek" else {}
    return [
        flow(i * 30, dst, port, source=source, bytes_out=1_000_000_000, bytes_in=2_000_000,
             packets_out=700_000, packets_in=40_000, duration_ms=30_000, extra=extra)
        for i in range(10)
    ]  # fmt: skip


def backup_one_way(dst: str) -> list[Event]:
    """The same backup as a VPC flow log writes it: one record per direction, no reverse counters."""
    out: list[Event] = []
    for i in range(10):
        out.append(flow(i * 30, dst, 443, source="vpcflow", bytes_out=1_000_000_000, packets_out=700_000))
        reply = dict(src_ip=dst, dst_ip=ACME_VM, src_port=443, dst_port=40000 + i * 30)
        out.append(
            msgspec.convert(
                {
                    **msgspec.to_builtins(out[-1]),
                    **reply,
                    "id": f"r-{i}",
                    "bytes_out": 2_000_000,
                    "packets_out": 40_000,
                },
                FlowEvent,
            )
        )
    return out


# --- the provider's services on the flow side ------------------------------------------------------
@pytest.mark.parametrize("events", [backup("52.216.44.10"), backup("52.216.44.10", source="zeek"),
                                    backup_one_way("52.216.44.10")],
                         ids=["test", "zeek", "vpcflow-one-way"])  # fmt: skip
def test_backup_to_object_storage_is_not_exfiltration(events):
    alerts, counters = run(ExternalUpload, WITH, events)
    assert alerts == []
    assert counters["provider_service"] == 10  # the uploads, not the storage's replies
    alerts, counters = run(ExternalUpload, WITHOUT, events)  # without the entry it is an upload
    assert [a.evidence["top_destination"] for a in alerts] == ["52.216.44.10"]
    assert "provider_service" not in counters


def test_service_ports_are_honoured_and_neighbours_still_alert():
    registry_ssh = run(ExternalUpload, WITH, backup("192.0.2.70", port=22))[0]  # registry serves 443 only
    neighbour = run(ExternalUpload, WITH, backup("52.218.0.10"))[0]  # just past 52.216.0.0/15
    assert [a.evidence["top_destination"] for a in registry_ssh + neighbour] == ["192.0.2.70", "52.218.0.10"]
    assert run(ExternalUpload, WITH, backup("192.0.2.70", port=443))[0] == []


def dns_queries(dst: str, source: str = "test") -> list[Event]:
    """A resolver-heavy VM at AWS's link-local cap: 1,000 queries a second for a minute."""
    return [
        flow(i, dst, 53, proto="udp", source=source, bytes_out=70_000, bytes_in=200_000, packets_out=1000,
             packets_in=1000, duration_ms=1000)
        for i in range(60)
    ]  # fmt: skip


@pytest.mark.parametrize("resolver", ["10.1.0.2", "169.254.169.253"])
def test_dns_to_the_provider_resolver_is_not_a_flood(resolver):
    alerts, counters = run(SourceFlood, WITH, dns_queries(resolver))
    assert alerts == [] and counters["provider_service"] == 60
    assert [a.evidence["victim"] for a in run(SourceFlood, WITHOUT, dns_queries(resolver))[0]] == [resolver]
    # the same query rate to a resolver that is no provider service is a flood
    other = run(SourceFlood, WITH, dns_queries("198.51.100.53"))[0]
    assert [a.evidence["victim"] for a in other] == ["198.51.100.53"]


def fleet(dst: str, port: int = 443) -> list[Event]:
    """60 acme VMs writing to one address of acme's range: 180,000 packets in the minute."""
    return [
        msgspec.convert(
            {**msgspec.to_builtins(flow(i, dst, port, bytes_out=4_500_000, packets_out=3000, duration_ms=1000)),
             "src_ip": f"10.1.2.{i + 1}"},
            FlowEvent,
        )
        for i in range(60)
    ]  # fmt: skip


def test_fleet_writing_to_a_storage_endpoint_in_the_tenant_range_is_not_a_distributed_flood():
    alerts, counters = run(DistributedFlood, WITH, fleet("10.1.0.100"))
    assert alerts == [] and counters["provider_service"] == 60
    assert [a.entity.id for a in run(DistributedFlood, WITHOUT, fleet("10.1.0.100"))[0]] == ["10.1.0.100"]
    assert [a.entity.id for a in run(DistributedFlood, WITH, fleet("10.1.0.101"))[0]] == ["10.1.0.101"]
    # the resolver listed for port 53 only: the same fleet on 443 to its address is a flood again
    assert [a.entity.id for a in run(DistributedFlood, WITH, fleet("10.1.0.2", 443))[0]] == ["10.1.0.2"]


def test_the_skip_costs_nothing_without_services_and_state_stays_picklable():
    import pickle

    det = ExternalUpload(DetectorConfig.default())
    det.bind(WITHOUT)
    engine = DetectionEngine([det], DetectionContext(registry=WITHOUT))
    engine.process(backup("52.216.44.10")[:3])
    assert pickle.loads(pickle.dumps(engine)).state_size() == 1
    assert WITHOUT._service_cache == {}  # never consulted


# --- control plane: CloudTrail in AWS's shapes through the parser and the rules --------------------
TENANTS = TenantRegistry.load(SAMPLES / "tenants.yaml")


def cross_tenant_engine() -> DetectionEngine:
    rules = [c(DetectorConfig.default()) for c in (ForeignResourceAccess, ResourceSharedOut)]
    return DetectionEngine(rules, DetectionContext(registry=TENANTS))


def trail(name: str, parser_registry: TenantRegistry | None) -> list[Event]:
    data = (SAMPLES / f"cloudtrail_cross_tenant_{name}.json").read_bytes()
    out = parse_bytes("cloudaudit", data, ParseContext(registry=parser_registry))
    assert out.dlqs == [] and len(out.events) == len(json.loads(data)["Records"])
    return sorted(out.events, key=lambda e: (e.ts, e.id))


def record_no(event: Event) -> int:
    return int(event.extra["eventID"].rsplit("-", 1)[1])


def found(alerts: list[Alert]) -> Counter:
    return Counter((a.detector, a.tenant, a.score, *a.evidence["details"]) for a in alerts)


INSTANCE = "i-0abcd1234ef567890"


@pytest.mark.parametrize("parser_registry", [TENANTS, None], ids=["parser-with-registry", "parser-without"])
def test_instance_credentials_used_from_another_tenant_or_account(parser_registry):
    events = trail("instance_credentials", parser_registry)
    alerts = cross_tenant_engine().run(events)
    assert found(alerts) == Counter(
        {
            # records 1 and 2: one call, in acme's trail and as beta's network activity event: one alert
            (FRA, "t-acme", 85, f"success s3.GetObject with {INSTANCE} credentials from t-beta"): 1,
            # record 3: the instance writes to a bucket of an account outside the registry
            (FRA, "t-acme", 80, "success s3.PutObject 999988887777"): 1,
            (FRA, "t-acme", 85, f"success ec2.DescribeInstances with {INSTANCE} credentials from t-beta"): 1,
            (
                FRA,
                "t-acme",
                85,
                f"success sts.GetCallerIdentity with {INSTANCE} credentials from 999988887777 VPC endpoint",
            ): 1,
        }
    )
    by_no = {record_no(e): e for e in events}
    cited = {i for a in alerts for i in a.evidence["event_ids"]}
    assert {by_no[n].id for n in (1, 2, 3, 4, 5)} == cited
    # the instance at home, its own network activity copy and S3's KMS call on its behalf: quiet
    assert not {by_no[n].id for n in (6, 7, 8)} & cited
    assert all(a.attack is not None and a.attack.technique_id == "T1552.005" for a in alerts if "with" in
               next(iter(a.evidence["details"])))  # fmt: skip


def test_the_two_trail_copies_give_one_alert_id_in_the_job():
    """The job keys audit events by tenant: the copy in beta's trail runs in another engine than
    acme's, and both must name the same alert (Elasticsearch keeps one by ``_id``)."""
    events = trail("instance_credentials", TENANTS)
    copies = [e for e in events if record_no(e) in (1, 2)]
    assert {e.tenant for e in copies} == {"t-acme", "t-beta"}
    ids = [[a.alert_id for a in cross_tenant_engine().run([e])] for e in copies]
    assert len(ids[0]) == 1 and ids[0] == ids[1]


@pytest.mark.parametrize("parser_registry", [TENANTS, None], ids=["parser-with-registry", "parser-without"])
def test_bucket_and_key_policies_granting_foreign_or_unknown_accounts(parser_registry):
    events = trail("policies", parser_registry)
    alerts = cross_tenant_engine().run(events)
    assert found(alerts) == Counter(
        {
            (RSO, "t-acme", 75, "success s3.PutBucketPolicy to 999988887777"): 1,  # a bare 12-digit account
            (RSO, "t-acme", 75, "success s3.PutBucketPolicy to t-beta"): 1,  # beta, on a bucket not shared
            (RSO, "t-acme", 45, "failure s3.PutBucketPolicy to 999988887777"): 1,  # refused: intent, lower
            (RSO, "t-acme", 75, "success kms.PutKeyPolicy to 999988887777"): 1,
            (RSO, "t-acme", 75, "success kms.PutKeyPolicy to t-beta"): 1,
        }
    )
    by_no = {record_no(e): e for e in events}
    cited = {i for a in alerts for i in a.evidence["event_ids"]}
    assert {by_no[n].id for n in (1, 4, 5, 7, 8)} == cited
    # the tenant's own account and roles, a CloudFront service principal, the registry's share and the
    # default key policy: quiet
    assert not {by_no[n].id for n in (2, 3, 6)} & cited
    assert {a.evidence["dst_tenant"] for a in alerts} == {"999988887777", "t-beta"}
