"""Tenant registry: lookups (IPv4 fast path, IPv6, caching), accounts, reload-on-change, speed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from ingest.tenants import RegistryError, RegistryWatcher, TenantRegistry

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def test_ip_lookups_v4_v6_and_invalid(registry):
    assert registry.tenant_of_ip("10.1.0.5") == "t-acme"
    assert registry.tenant_of_ip("10.1.255.255") == "t-acme"
    assert registry.tenant_of_ip("10.2.0.0") == "t-beta"
    assert registry.tenant_of_ip("10.3.0.1") is None
    assert registry.tenant_of_ip("2001:db8:1::10") == "t-acme"
    assert registry.tenant_of_ip("2001:DB8:1:0::10") == "t-acme"
    assert registry.tenant_of_ip("2001:db8:2::1") is None
    assert registry.tenant_of_ip("::ffff:10.2.0.7") == "t-beta"  # IPv4-mapped IPv6
    for bad in ("", None, "10.1.0", "010.1.0.5", "10.1.0.5 ", "10.1.0.256", "not-an-ip", "::g", "1.2.3.4/32"):
        assert registry.tenant_of_ip(bad) is None, bad
    # cached answers are the same answers
    assert [registry.tenant_of_ip("10.1.0.5") for _ in range(3)] == ["t-acme"] * 3


def test_other_lookups_unchanged(registry):
    assert registry.tenant_of_vm("vm-beta-01") == "t-beta"
    assert registry.vm_of_ip("10.1.0.5") == "vm-acme-01"
    assert registry.vm_of_disk("/var/lib/libvirt/images/vm-beta-01.qcow2") == "vm-beta-01"
    assert registry.is_management_ip("172.31.9.9") and registry.is_management_ip("172.31.0.1")
    assert not registry.is_management_ip("10.1.0.5") and not registry.is_management_ip(None)
    assert registry.is_peered("t-acme", "t-acme") and not registry.is_peered("t-acme", "t-beta")
    assert registry.industry_of("t-beta") == "internet"
    assert registry.tenant_of_account("444455556666") == "t-beta"
    assert registry.tenant_of_account("000000000000") is None


def test_round_trip_keeps_accounts_and_omits_empty(registry, tmp_path):
    path = tmp_path / "t.yaml"
    registry.dump(path)
    again = TenantRegistry.load(path)
    assert again.tenants == registry.tenants
    plain = TenantRegistry.from_dict({"tenants": [{"id": "t", "cidrs": ["10.0.0.0/8"]}]})
    assert "accounts" not in plain.to_dict()["tenants"][0]
    with pytest.raises(RegistryError, match="account 1 belongs to a and b"):
        TenantRegistry.from_dict(
            {"tenants": [{"id": "a", "accounts": ["1"]}, {"id": "b", "accounts": ["1"]}]}
        )


def test_lookup_cache_is_bounded(registry):
    for i in range(70_000):
        registry.tenant_of_ip(f"10.{i % 200}.{(i // 200) % 256}.{i % 256}")
    assert len(registry._tenant_cache) <= 65536


def _write(path: Path, data: str, bump: int) -> None:
    path.write_text(data, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_watcher_reloads_on_change_and_keeps_last_good(tmp_path):
    path = tmp_path / "tenants.yaml"
    _write(path, "tenants:\n  - {id: t-a, cidrs: [10.1.0.0/16]}\n", 0)
    watcher = RegistryWatcher(path, check_interval_s=0.0)
    assert watcher.current().tenant_of_ip("10.1.0.1") == "t-a"
    _write(path, "tenants:\n  - {id: t-b, cidrs: [10.1.0.0/16]}\n  - {id: t-c, cidrs: [10.9.0.0/16]}\n", 5)
    reloaded = watcher.current()
    assert reloaded.tenant_of_ip("10.1.0.1") == "t-b" and reloaded.tenant_of_ip("10.9.0.1") == "t-c"
    assert watcher.last_error is None
    _write(path, "tenants: [ {id: broken\n", 10)
    assert watcher.current() is reloaded  # a bad edit never blinds detection
    assert watcher.last_error is not None and "not valid YAML" in watcher.last_error
    _write(path, "tenants:\n  - {id: t-d, cidrs: [10.1.0.0/16]}\n", 15)
    assert watcher.current().tenant_of_ip("10.1.0.1") == "t-d"
    clone = pickle.loads(pickle.dumps(watcher))
    assert clone.current().tenant_of_ip("10.1.0.1") == "t-d"


def test_watcher_checks_at_most_every_interval(tmp_path):
    path = tmp_path / "tenants.yaml"
    _write(path, "tenants:\n  - {id: t-a, cidrs: [10.1.0.0/16]}\n", 0)
    watcher = RegistryWatcher(path, check_interval_s=60.0)
    first = watcher.current(now=1000.0)
    _write(path, "tenants:\n  - {id: t-b, cidrs: [10.1.0.0/16]}\n", 5)
    assert watcher.current(now=1010.0) is first
    assert watcher.current(now=1061.0).tenant_of_ip("10.1.0.1") == "t-b"


# --- provider service ranges ---------------------------------------------------------------------
SERVICES = {
    "tenants": [{"id": "t-a", "cidrs": ["10.1.0.0/16"]}],
    "provider_services": [
        {"name": "object-storage", "cidrs": ["52.216.0.0/15", "52.216.8.0/24", "2600:1fa0::/32"]},
        {"name": "dns", "cidrs": ["169.254.169.253/32", "10.1.0.2/32"], "ports": [53]},
        {"name": "metadata", "cidrs": ["169.254.169.254/32", "fd00:ec2::254/128"], "ports": [80]},
    ],
}


def test_provider_services_lookup_by_address_and_port():
    reg = TenantRegistry.from_dict(SERVICES)
    assert reg.has_provider_services and not TenantRegistry().has_provider_services
    assert reg.service_of_ip("52.217.255.255") == "object-storage"  # last address of the /15
    assert reg.service_of_ip("52.218.0.0") is None and reg.service_of_ip("52.215.255.255") is None
    assert reg.service_of_ip("2600:1fa0:1::9") == "object-storage"
    assert reg.service_of_ip("fd00:ec2::254") == "metadata"
    assert reg.service_of_ip("::ffff:169.254.169.253") == "dns"
    # a service address inside a tenant's range stays the tenant's address for every other lookup
    assert reg.service_of_ip("10.1.0.2") == "dns" and reg.tenant_of_ip("10.1.0.2") == "t-a"
    assert reg.service_of_ip("10.1.0.3") is None
    # ports: a listed port only; no ports means every port
    assert reg.provider_service("10.1.0.2", 53) == "dns"
    assert reg.provider_service("10.1.0.2", 22) is None and reg.provider_service("10.1.0.2") is None
    assert (
        reg.provider_service("52.216.1.1", 443)
        == reg.provider_service("52.216.1.1", 9000)
        == "object-storage"
    )
    for bad in ("", None, "52.216.1", "not-an-ip", "52.216.1.1/32"):
        assert reg.service_of_ip(bad) is None, bad
    assert [reg.service_of_ip("52.216.1.1") for _ in range(2)] == ["object-storage"] * 2  # cached


def test_provider_services_round_trip(tmp_path):
    reg = TenantRegistry.from_dict(SERVICES)
    path = tmp_path / "t.yaml"
    reg.dump(path)
    again = TenantRegistry.load(path)
    assert again.provider_services == reg.provider_services
    assert again.provider_service("169.254.169.254", 80) == "metadata"
    assert "provider_services" not in TenantRegistry.from_dict({"tenants": []}).to_dict()


@pytest.mark.parametrize(
    ("services", "message"),
    [
        ({"name": "s"}, r"provider_services\[0\]\.cidrs: a service needs at least one CIDR"),
        (
            {"name": "s", "cidrs": ["52.216.0.0/33"]},
            r"provider_services\[0\]\.cidrs\[0\]: '52.216.0.0/33' is not",
        ),
        ({"name": "s", "cidrs": "52.216.0.0/15"}, r"provider_services\[0\]\.cidrs: expected a list"),
        (
            {"name": "", "cidrs": ["52.216.0.0/15"]},
            r"provider_services\[0\]\.name: expected a non-empty string",
        ),
        (
            {"name": "s", "cidrs": ["1.2.3.0/24"], "ports": [70000]},
            r"provider_services\[0\]\.ports\[0\]: expected a port",
        ),
        ({"name": "s", "cidrs": ["1.2.3.0/24"], "ports": ["53"]}, r"provider_services\[0\]\.ports\[0\]"),
        ({"name": "s", "cidrs": ["1.2.3.0/24"], "ports": [True]}, r"provider_services\[0\]\.ports\[0\]"),
        (
            {"name": "s", "cidrs": ["1.2.3.0/24"], "port": [53]},
            r"provider_services\[0\]: unknown field\(s\) port",
        ),
        ("s3", r"provider_services\[0\]: expected a mapping"),
    ],
)
def test_provider_services_errors_name_the_field(services, message):
    with pytest.raises(RegistryError, match=message):
        TenantRegistry.from_dict({"provider_services": [services]}, source="reg.yaml")


def test_provider_services_may_not_overlap_each_other_but_may_overlap_tenants():
    two = [{"name": "a", "cidrs": ["52.216.0.0/15"]}, {"name": "b", "cidrs": ["52.217.1.0/24"]}]
    with pytest.raises(RegistryError, match=r"reg.yaml: provider_services: address ranges overlap: a and b"):
        TenantRegistry.from_dict({"provider_services": two}, source="reg.yaml")
    with pytest.raises(RegistryError, match="duplicate service name 'a'"):
        TenantRegistry.from_dict({"provider_services": [two[0], {"name": "a", "cidrs": ["1.2.3.0/24"]}]})
    # one service's own nested or adjacent prefixes (as ip-ranges.json lists them) are merged
    one = TenantRegistry.from_dict(
        {"provider_services": [{"name": "a", "cidrs": ["52.216.0.0/16", "52.217.0.0/16", "52.216.4.0/24"]}]}
    )
    assert one._service_ranges._starts == [int.from_bytes(bytes([52, 216, 0, 0]), "big")]
