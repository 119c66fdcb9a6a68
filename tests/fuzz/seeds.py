"""Seed inputs per format, built from ``tests/samples``: the real sample files of the line formats,
NetFlow v5/v9/IPFIX packets and a pcap of them from ``netflow_gen``, and CICFlowMeter and Argus
rows written here (synthetic: the CIC-IDS2017 sample is not used for anything, and Argus has no
sample file yet)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from ingest.parsers import FORMAT_NAMES
from tests.samples.netflow_gen import ipfix_packet, pcap_file, v5_packet, v9_packet

__all__ = ["SAMPLES", "SAMPLE_FILES", "seed_inputs", "split_records"]

SAMPLES: Final = Path(__file__).resolve().parents[1] / "samples"
HOSTILE: Final = SAMPLES / "hostile"

SAMPLE_FILES: Final[dict[str, tuple[str, ...]]] = {
    "vpcflow": ("vpcflow_v2.log", "vpcflow_custom.log", "vpcflow_cwl.jsonl"),
    "nprobe-csv": ("nprobe.csv", "nprobe_dump.txt"),
    "nfdump": ("nfdump.csv", "nfdump17.csv"),
    "zeek": ("zeek_conn.log", "zeek_conn.json", "zeek_conn_kafka.json"),
    "suricata": ("suricata_eve.json", "suricata_eve_bad.json"),
    "auditd": ("audit.log", "audit_bad.log"),
    "falco": ("falco.jsonl", "falco_bad.jsonl"),
    "syslog": ("auth.log", "auth_bad.log", "auth_linux.log"),
    "cloudaudit": (
        "cloudtrail.json",
        "cloudtrail.jsonl",
        "cloudtrail_eventbridge.jsonl",
        "cloudtrail_cwl.jsonl",
    ),
}

_CIC_SHORT: Final = (
    b"Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Tot Fwd Pkts,"
    b"Tot Bwd Pkts,TotLen Fwd Pkts,TotLen Bwd Pkts,Flow Byts/s,Flow Pkts/s,Fwd Pkt Len Max,Label\n"
    b"10.1.0.5-10.2.0.7-40000-443-6,10.1.0.5,40000,10.2.0.7,443,6,05/03/2024 10:00:01,1500000,12,10,"
    b"2400,9000,7600.0,14.66,1460,Benign\n"
    b"10.2.0.7-198.51.100.9-53000-53-17,10.2.0.7,53000,198.51.100.9,53,17,05/03/2024 10:00:02 PM,0,1,0,"
    b"64,0,Infinity,Infinity,64,Benign\n"
    b"10.1.0.5-10.1.0.6-0-0-0,10.1.0.5,0,10.1.0.6,0,0,2024-03-05 10:00:03,10,1,1,0,0,NaN,2.0E5,0,Scan\n"
)
_CIC_LONG: Final = (
    b"Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp,"
    b" Flow Duration, Total Fwd Packets, Total Backward Packets,Total Length of Fwd Packets,"
    b" Total Length of Bwd Packets, Label\n"
    b"10.1.0.5-10.2.0.7-40001-22-6,10.1.0.5,40001,10.2.0.7,22,6,5/3/2024 9:15,320,3,2,180,120,BENIGN\n"
    b"10.1.0.5-10.2.0.7-40002-22-6,10.1.0.5,40002,10.2.0.7,22,6,5/3/2024 9:16,41,2,0,0,0,Brute Force\n"
)


_ARGUS: Final = (
    b"StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label\n"
    b"2024/03/05 10:00:01.123456,1.5,tcp,10.1.0.5,40000,   ->,10.2.0.7,443,FSPA_FSPA,0,0,12,2400,900,"
    b"flow=Background\n"
    b"2024/03/05 10:00:02.000000,0.000,udp,10.2.0.7,53000,  <->,198.51.100.9,53,CON,0,0,2,180,80,flow=Normal\n"
    b"2024/03/05 10:00:03.5,0,icmp,10.1.0.5,0x0008,   ->,10.1.0.6,0x0000,ECO,0,,1,98,98,flow=Background\n"
    b"2024/03/05 10:00:04,0,arp,10.1.0.5,,   who,10.1.0.1,,CON,0,0,2,120,60,flow=Background\n"
)


def _netflow_seeds() -> list[tuple[str, bytes]]:
    flows = [
        ("10.1.0.5", "10.2.0.7", 40000, 443, 6, 1200, 10, 1000, 2000),
        ("198.51.100.9", "10.1.0.5", 53, 53000, 17, 80, 1, 3000, 3000),
    ]
    absolute = [(*f[:7], 1709632800000 + f[7], 1709632800000 + f[8]) for f in flows]
    v5 = v5_packet(flows, 1709632800, 10**7)
    v9 = v9_packet(flows, 1709632800, 10**7)
    ipfix = ipfix_packet(absolute, 1709632800)
    return [
        ("v5.bin", v5),
        ("v9.bin", v9),
        ("ipfix.bin", ipfix),
        ("mixed.bin", v5 + v9 + ipfix),
        ("capture.pcap", pcap_file([("192.0.2.1", v5), ("192.0.2.2", v9), ("192.0.2.3", ipfix)])),
    ]


def seed_inputs(fmt: str, hostile: bool = True) -> list[tuple[str, bytes]]:
    """(name, bytes) of each seed input of a format, plus (``hostile``) its regression samples
    (``tests/samples/hostile/<format>/``)."""
    if fmt not in FORMAT_NAMES:
        raise KeyError(fmt)
    if fmt == "netflow":
        seeds = _netflow_seeds()
    elif fmt == "cicflowmeter":
        seeds = [("cic_short.csv", _CIC_SHORT), ("cic_long.csv", _CIC_LONG)]
    elif fmt == "argus":
        seeds = [("argus.binetflow", _ARGUS)]
    else:  # a format added later: its samples by name, else random input only
        names = SAMPLE_FILES.get(fmt) or sorted(p.name for p in SAMPLES.glob(f"{fmt}*") if p.is_file())
        seeds = [(name, (SAMPLES / name).read_bytes()) for name in names] or [("empty", b"")]
    folder = HOSTILE / fmt
    if hostile and folder.is_dir():
        seeds += [(f"hostile-{p.name}", p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]
    return seeds


def split_records(data: bytes) -> list[bytes]:
    """The lines of a text input as the reader cuts them (no trailing empty piece)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines
