"""A VM sends a large volume to one address outside every tenant.

Bytes a tenant address initiates towards one address that no tenant, the management plane or a
provider service owns are summed per (tenant, source) over the window; the heaviest destination
at or above ``params.min_bytes_to_one_destination`` (100 MB in 5 minutes by default) is reported.
Flows to the provider's own services (the registry's ``provider_services``: object storage,
container registry, update mirrors... at their ports) are skipped before they reach any state
and counted in ``counters["provider_service"]``: a VM writing 10 GB of backups to the provider's
object storage is the commonest large upload a cloud sees and is not exfiltration. An upload to
an attacker's bucket hosted in the same shared storage ranges is therefore left to the control
plane (a ``PutObject`` on a bucket of an account outside the registry raises
``cross_tenant.foreign_resource_access``). Response records are never the subject
(``detectors.flowdir``).

What counts is a TCP record's data, its bytes beyond a bare header a packet
(``flowdir.data_bytes``): a client's record of a download holds its acknowledgements, one bare
packet per two segments received (RFC 9293 section 3.8.6.3), ~2 % of the bytes downloaded, so a
VM pulling 10 GB in 5 minutes "sent" 180 MB of ACKs to the server (VPC Flow Logs and NetFlow write
them as a record of their own; Zeek's ``orig_ip_bytes`` counts them too). An upload's full packets
count at ~96 % of their bytes.

Long records count at their rate, as in ``dos.source_flood``: a record longer than the window adds
its bytes times window over duration. The threshold is a volume per window, so it is a rate (100 MB
in 5 minutes: 2.7 Mbit/s kept up for the whole window), and what a flow exporter reports for one
transfer depends on its timeouts: NetFlow/IPFIX cut a long flow at the active timeout (Cisco 1800 s,
60-120 s in many deployments; RFC 7011 section 5 leaves it to the exporter), VPC Flow Logs at the
aggregation interval (60 or 600 s), Argus at its status interval, while Zeek writes a connection
once, when it ends. Without this, an hour-long two-way session written once by Zeek lands all its
bytes in the window where it ends: a one-hour Microsoft Teams video call relayed over udp/3478
(Microsoft 365 "URLs and IP address ranges", Teams media on UDP 3478-3481; 1-4 Mbit/s each way for
video, Microsoft "Prepare your organization's network for Teams", bandwidth requirements) is
400-500 MB "sent" in five minutes, where NetFlow would have shown its steady ~1 Mbit/s. An upload at
the threshold's rate or more still alerts whatever the exporter; a slower one, spread over hours,
is under the threshold in every format (lower ``min_bytes_to_one_destination`` or use
``cross_tenant.foreign_transfer_volume``'s baselines to watch those).

The evidence names the uploading address (``sources``) and the destination it accuses
(``destinations``: the heaviest, the one over the threshold), so the alert covers those flows and
not the host's other traffic.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, cast

from detectors.addrscope import unowned_outbound
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import data_bytes
from detectors.meta import DetectorMeta, technique
from detectors.rules.common import fmt_bytes, source_entity
from detectors.state import Span, TopCounts
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["ExternalUpload", "UploadState"]


class UploadState:
    __slots__ = ("by_dst", "span", "total")

    def __init__(self, cap: int) -> None:
        self.span = Span()
        self.total = 0
        self.by_dst = TopCounts(cap)  # bytes per external destination, heaviest kept

    def __getstate__(self) -> tuple[object, ...]:
        return (self.span, self.total, self.by_dst)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.span, self.total, self.by_dst = s  # type: ignore[assignment]


class ExternalUpload(WindowedDetector[UploadState]):
    meta = DetectorMeta(
        id="exfiltration.external_upload",
        version="1.3.0",
        title="Large upload to an external address",
        category="exfiltration",
        score=75,
        severity="high",
        attack=(technique("Exfiltration", "T1048", "Exfiltration Over Alternative Protocol"),),
        kinds=frozenset({"flow"}),
        description="Bytes sent by one VM to a single address outside all tenants, the management plane and "
        "the provider's services reach params.min_bytes_to_one_destination within a window.",
        false_positives=(
            "off-site backups or replication to a provider outside the registry (list the destination "
            "addresses in params.allowed_destinations; the provider's own storage goes in the registry's "
            "provider_services)",
            "large legitimate uploads (media, data exchange with partners)",
        ),
        note="Identify the destination (evidence.top_destination) and the process that sent it; compare "
        "with the VM's normal outbound volume. Block the destination if unknown.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {"min_bytes_to_one_destination": int, "allowed_destinations": list}

    def configure(self, config: DetectorConfig) -> None:
        self.min_bytes = int(self.params["min_bytes_to_one_destination"])
        self.allowed = frozenset(self.params["allowed_destinations"])
        self._cap = 256

    def new_state(self, key: Hashable) -> UploadState:
        return UploadState(self._cap)

    def observe_batch(self, batch: Batch) -> None:
        batch = batch.initiated()  # a response record is never the subject
        allowed, max_ids = self.allowed, self.max_ids
        max_keys, cap = self.max_keys, self._cap
        reg = batch.registry
        service = reg.provider_service if reg.has_provider_services else None
        skipped = 0
        events = batch.flows
        window = self._size
        # The pane of the current event time, cached locally: a batch spans seconds, a pane minutes.
        pane, cur, bucket = self._pane, -1, cast(dict[Hashable, Any], {})
        for ev, src_t, dst_t in zip(events, batch.src_tenants, batch.dst_tenants, strict=True):
            if dst_t is not None:  # only to outside every tenant and mgmt ...
                continue
            if src_t is None and not unowned_outbound(ev.src_ip, ev.dst_ip):
                continue  # ... from a tenant, or from a private address no tenant owns (addrscope)
            try:
                sent = data_bytes(ev)  # a download's ACKs are no upload
                dst = ev.dst_ip
                if sent <= 0 or dst in allowed:
                    continue
                if service is not None and service(dst, ev.dst_port) is not None:
                    skipped += 1  # the provider's own storage, registry, mirrors: not exfiltration
                    continue
                if ev.duration_ms > window:  # a long record (Zeek, Argus, NetFlow active timeout): its rate
                    sent = sent * window // ev.duration_ms
                ts = ev.ts
                key = (ev.tenant, ev.src_ip)
                if ts - ts % pane != cur:
                    bucket, cur = self.bucket(ts), ts - ts % pane
                st: UploadState | None = bucket.get(key)
                if st is None:  # Detector.state, inlined: created, or counted when the pane is full
                    if len(bucket) >= max_keys:
                        self.counters["overflow"] += 1
                        continue
                    st = bucket[key] = UploadState(cap)
                st.total += sent
                by_dst = st.by_dst
                counts = by_dst.counts
                if dst in counts:  # TopCounts.add, its common case inlined
                    counts[dst] += sent
                else:
                    by_dst.add(dst, sent)
                span = st.span  # Span.add, inlined
                if span.count == 0:
                    span.first = span.last = ts
                elif ts < span.first:
                    span.first = ts
                elif ts > span.last:
                    span.last = ts
                span.count += 1
                if len(span.ids) < max_ids:
                    span.ids.append(ev.id)
            except Exception as exc:
                self.error(ev, exc)
        if skipped:
            self.counters["provider_service"] = self.counters.get("provider_service", 0) + skipped

    def merge(self, into: UploadState, other: UploadState) -> None:
        into.span.merge(other.span, self.max_ids)
        into.total += other.total
        into.by_dst.merge(other.by_dst)

    def finish_key(self, window: Window, key: Hashable, state: UploadState) -> Finding | None:
        best = state.by_dst.top()
        if best is None:
            return None
        top, top_bytes = best
        if top_bytes < self.min_bytes:
            return None
        tenant, src = cast(tuple[Any, str], key)
        entity = source_entity(self.reg, src)
        n_dst, more = len(state.by_dst), "+" if state.by_dst.other else ""
        return Finding(
            entity=entity,
            tenant=tenant,
            window=window,
            score=self.meta.score if top_bytes < 10 * self.min_bytes else 85,
            summary=f"{entity.type} {entity.id} sent {fmt_bytes(top_bytes)} to external address {top} "
            f"({fmt_bytes(state.total)} to {n_dst}{more} external destination(s) in this window)",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=state.span.count,
            event_ids=list(state.span.ids),
            evidence={
                "sources": [src],
                "destinations": [top],
                "top_destination": top,
                "bytes_to_top_destination": top_bytes,
                "bytes_external_total": state.total,
                "external_destinations": len(state.by_dst),
                "more_destinations_not_itemised": state.by_dst.other > 0,
                "threshold_bytes": self.min_bytes,
            },
        )
