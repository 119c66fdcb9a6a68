"""Inside or outside, for addresses the tenant registry does not name.

A cloud's registry names its tenants' addresses, and the rules that watch a host talking out (a
C2 beacon, a spam run) take a tenant's address to an address of no tenant as outbound. A capture
scanned offline without a registry (``ssa scan`` without ``--tenants``), or a private network the
registry leaves out, would have no inside at all, and those rules would see nothing. There, a
flow is outbound when its source is a private address and its destination is on the internet:

- private: RFC 1918 (10/8, 172.16/12, 192.168/16), RFC 6598 shared address space behind carrier
  NAT (100.64/10), RFC 4193 unique local IPv6 (fc00::/7), the ranges network monitors take as
  internal by default;
- on the internet: globally routable by the IANA special-purpose address registries
  (``ipaddress``'s ``is_global``), so neither private, loopback, link-local, multicast nor
  documentation space.

An alert raised this way has no tenant (``tenant`` null), as alerts about outside attackers do.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Final

__all__ = ["is_private", "unowned_outbound"]

_PRIVATE: Final = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


@lru_cache(maxsize=65536)
def _scope(address: str) -> int:
    """1 private, 2 globally routable, 0 neither or not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return 0
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return 1
    return 2 if ip.is_global and not ip.is_multicast else 0  # is_global lets multicast through


def is_private(address: str) -> bool:
    return _scope(address) == 1


def unowned_outbound(src: str, dst: str) -> bool:
    """A flow between two addresses of no tenant that leaves a private network for the internet."""
    return _scope(src) == 1 and _scope(dst) == 2
