"""VM escape (T1611): per hypervisor host and emulator, the signals seen and the VMs involved.

Reads the evidence fields every VM-escape detector fills (``detectors/rules/vm_escape``,
INDEX_FIELDS.md): ``evidence.host``, ``evidence.signal``, ``evidence.vm`` when a guest is involved
and ``evidence.emulator`` when a process is (a flow to the management plane names none, so those
alerts count under ``NO_EMULATOR``).
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import common as cm

from dashboards.panels import (
    ALERTS_DS,
    count,
    dashboard_url,
    date_histogram,
    field_link,
    max_,
    query,
    raw_data,
    terms,
    terms_variable,
    transformation,
)

__all__ = ["NO_EMULATOR", "SLUG", "UID", "build"]

UID: Final = "ssa-vm-escape"
SLUG: Final = "ssa-vm-escape"
FILTER: Final = "category:vm_escape AND evidence.host:$host"
NO_EMULATOR: Final = "(no process)"


def _host_url() -> str:
    return dashboard_url(UID, SLUG, {"host": '${__data.fields["evidence.host"]}'})


def _tenant_url() -> str:
    return dashboard_url("ssa-tenant", "ssa-tenant-view", {"tenant": "${__data.fields.tenant}"})


def build() -> db.Dashboard:
    signals = (
        table.Panel()
        .id(1)
        .title("Signals per host and emulator")
        .datasource(ALERTS_DS)
        .with_target(
            query(
                FILTER,
                [count()],
                [
                    terms("evidence.host", "2", size=50),
                    terms("evidence.emulator", "3", size=10, missing=NO_EMULATOR),
                    terms("evidence.signal", "4", size=20),
                ],
            )
        )
        .override_by_name("evidence.host", [field_link("This host only", _host_url())])
        .span(12)
        .height(9)
    )
    vms = (
        table.Panel()
        .id(2)
        .title("VMs involved (per host)")
        .datasource(ALERTS_DS)
        .with_target(
            query(
                FILTER,
                [count(), max_("score", "5")],
                [
                    terms("evidence.host", "2", size=50),
                    terms("evidence.vm", "3", size=50),
                    terms("tenant", "4", size=5),
                ],
            )
        )
        .override_by_name("tenant", [field_link("Tenant view", _tenant_url())])
        .override_by_name("evidence.host", [field_link("This host only", _host_url())])
        .span(12)
        .height(9)
    )
    over_time = (
        timeseries.Panel()
        .id(3)
        .title("VM escape alerts over time by host")
        .datasource(ALERTS_DS)
        .with_target(query(FILTER, [count()], [terms("evidence.host", "2", size=20), date_histogram("3")]))
        .draw_style(cm.GraphDrawStyle.BARS)
        .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        .span(24)
        .height(8)
    )
    alerts = (
        table.Panel()
        .id(4)
        .title("VM escape alerts")
        .datasource(ALERTS_DS)
        .with_target(query(FILTER, [raw_data(200)]))
        .with_transformation(
            transformation(
                "organize",
                {
                    "includeByName": {
                        name: True
                        for name in (
                            "ts",
                            "severity",
                            "status",
                            "tenant",
                            "evidence.host",
                            "evidence.emulator",
                            "evidence.vm",
                            "evidence.signal",
                            "summary",
                            "alert_id",
                        )
                    }
                },
            )
        )
        .override_by_name("tenant", [field_link("Tenant view", _tenant_url())])
        .span(24)
        .height(9)
    )
    return (
        db.Dashboard("SSA / VM escape")
        .uid(UID)
        .tags(["ssa", "vm_escape", "T1611"])
        .description("Guest-to-host breakout signals per hypervisor host and emulator, and the VMs involved.")
        .refresh("30s")
        .time("now-24h", "now")
        .timezone("utc")
        .with_variable(
            terms_variable("host", "Host", "evidence.host", lucene="category:vm_escape", include_all=True)
        )
        .with_panel(signals)
        .with_panel(vms)
        .with_panel(over_time)
        .with_panel(alerts)
    )
