"""CICFlowMeter CSVs of every release's column names: one flow written by CIC-IDS2017's layout,
CSE-CIC-IDS2018's, the current CICFlowMeter's (4.0) and the Python ``cicflowmeter``'s gives the same
flow; a header without a counter column is refused instead of read as zero counts. Rows are made
here from each tool's documented header (no dataset's rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.parsers import ListOutput, ParseContext, parse_bytes
from ingest.parsers.cicflow import missing_count_columns, parse_cic_time
from ingest.schema import FlowEvent
from ssa.cli import main

# The core columns in each layout's names, in CIC-IDS2017's order (addresses, ports, protocol, start,
# duration, forward and backward packets, forward and backward bytes), then two flag counts and a label.
LAYOUTS = {
    "cic-ids2017": (
        "Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp, Flow Duration,"
        " Total Fwd Packets, Total Backward Packets,Total Length of Fwd Packets, Total Length of Bwd Packets,"
        " SYN Flag Count, ACK Flag Count, Label"
    ),
    "cse-cic-ids2018": (
        "Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Tot Fwd Pkts,Tot Bwd Pkts,"
        "TotLen Fwd Pkts,TotLen Bwd Pkts,SYN Flag Cnt,ACK Flag Cnt,Label"
    ),
    "cicflowmeter-4": (  # FlowFeature.java; also the improved CIC-IDS2017 of Engelen et al.
        "Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Total Fwd Packet,"
        "Total Bwd packets,Total Length of Fwd Packet,Total Length of Bwd Packet,SYN Flag Count,ACK Flag Count,Label"
    ),
    "python-cicflowmeter": (  # pip cicflowmeter (flow.py get_data)
        "flow_id,src_ip,src_port,dst_ip,dst_port,protocol,timestamp,flow_duration,tot_fwd_pkts,tot_bwd_pkts,"
        "totlen_fwd_pkts,totlen_bwd_pkts,syn_flag_cnt,ack_flag_cnt,label"
    ),
}
FLOW = (
    "10.0.1.5-93.184.216.34-51515-443-6,10.0.1.5,51515,93.184.216.34,443,6,{ts},{dur},9,8,517,4021,1,8,BENIGN"
)
WHEN = {
    "cic-ids2017": "01/03/2024 10:00:00 AM",
    "cse-cic-ids2018": "01/03/2024 10:00:00",
    "cicflowmeter-4": "01/03/2024 10:00:00 AM",
    "python-cicflowmeter": "2024-03-01 10:00:00",
}
DURATION = {"python-cicflowmeter": "1500000.0000000002"}  # 1e6 * seconds, as it writes it


def parse(data: str, **ctx: object) -> ListOutput:
    return parse_bytes("cicflowmeter", data.encode(), ParseContext(**ctx))  # type: ignore[arg-type]


def flow(out: ListOutput) -> FlowEvent:
    assert not out.dlqs, out.dlqs
    (event,) = out.events
    assert isinstance(event, FlowEvent)
    return event


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_gives_the_same_flow(layout: str) -> None:
    row = FLOW.format(ts=WHEN[layout], dur=DURATION.get(layout, "1500000"))
    event = flow(parse(f"{LAYOUTS[layout]}\n{row}\n"))
    assert (event.src_ip, event.src_port, event.dst_ip, event.dst_port, event.proto) == (
        "10.0.1.5", 51515, "93.184.216.34", 443, "tcp"
    )  # fmt: skip
    assert (event.packets_out, event.packets_in, event.bytes_out, event.bytes_in) == (9, 8, 517, 4021)
    assert (event.ts, event.duration_ms) == (1709287200000 + 1500, 1500)
    assert event.extra["cic_flags"] == 0x02 | 0x10  # SYN and ACK counted


def test_a_header_without_counters_is_refused_not_read_as_zero() -> None:
    header = "Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Total Fwd Pkt,Label"
    out = parse(f"{header}\n{FLOW.format(ts=WHEN['cse-cic-ids2018'], dur=1)}\n")
    assert out.events == []
    assert [d.reason for d in out.dlqs] == [
        "header has no Total Fwd Packets, Total Backward Packets, Total Length of Fwd Packets, "
        "Total Length of Bwd Packets column (a flow's counts would be read as 0)",
        "row under an unusable header",
    ]
    assert missing_count_columns(LAYOUTS["python-cicflowmeter"].split(",")) == []


def test_a_duration_that_is_not_a_number_still_goes_to_the_dlq() -> None:
    out = parse(
        f"{LAYOUTS['python-cicflowmeter']}\n{FLOW.format(ts=WHEN['python-cicflowmeter'], dur='1.5e')}\n"
    )
    assert out.events == [] and len(out.dlqs) == 1
    assert "flow_duration" in out.dlqs[0].reason


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2017-07-07 11:59:50.315195", 1499428790315),
        ("07/07/2017 11:59:50.5 AM", 1499428790500),
        ("2017-07-07 11:59:59.9996", 1499428799999),  # never rounded into the next second
        ("07/07/2017 11:59:50 AM", 1499428790000),
    ],
)
def test_a_seconds_fraction_is_kept_to_the_millisecond(text: str, ms: int) -> None:
    assert parse_cic_time(text) == ms


def test_the_fraction_is_kept_in_a_local_zone() -> None:
    header, ts = LAYOUTS["python-cicflowmeter"], "2017-07-07 08:59:50.315"
    event = flow(parse(f"{header}\n{FLOW.format(ts=ts, dur=0)}\n", timezone="America/Moncton"))
    assert event.ts == 1499428790315  # 08:59:50.315 ADT is 11:59:50.315 UTC


def test_evaluate_refuses_a_capture_without_counters_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSA_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "flows.csv"
    header = "Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Label"
    path.write_text(f"{header}\n10.0.1.5,51515,93.184.216.34,443,6,2024-03-01 10:00:00,1,BENIGN\n")
    assert main(["evaluate", "--capture", str(path), "--format", "cicflowmeter"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"ssa evaluate: {path}: no Total Fwd Packets or Total Backward Packets or ")
    assert err.endswith("every flow's counts would be 0")
