"""Real tools' traffic as CICFlowMeter (its 2017-2018 releases) records it, hand-made from the
tools' and the exporter's documented behaviour; no dataset's records.

What CICFlowMeter does to a connection: a record starts at the first packet (its sender is the
source), ends at the first FIN (the packets after it, the FIN's ACK and the other side's FIN, are a
record of their own with no SYN: the *tail*), or at the flow timeout (120 s by default: the rest of
the connection goes on in records with no SYN). Byte counts are payload only; the flag counts hold
the first packet's flags. ``Timestamp`` is the record's first packet, ``Flow Duration`` in
microseconds."""

from __future__ import annotations

from datetime import datetime, timedelta

from ingest.tenants import TenantRegistry
from tests.test_flowdir import SAMPLES, cic, cic_flow, flows, run

T0 = datetime(2017, 7, 5, 9, 0, 0)
ATTACKER, VICTIM, BOT, C2 = "172.16.0.1", "10.1.0.5", "10.1.0.5", "185.244.25.235"


def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def record(src: str, dst: str, sport: int, dport: int, start_s: float, dur_s: float,
           out: tuple[int, int], back: tuple[int, int], first: str = "SYN") -> dict[str, str]:  # fmt: skip
    """One record: (packets, payload bytes) each way, its first packet's flag, the time it
    starts (seconds after T0, written as CICFlowMeter writes it: 12-hour clock, no AM/PM)."""
    at = T0 + timedelta(seconds=start_s)
    return {
        **cic_flow(src, dst, sport, dport, out, back, first),
        "Timestamp": at.strftime("%d/%m/%Y %I:%M:%S"), "Flow Duration": str(int(dur_s * 1_000_000)),
    }  # fmt: skip


def closed(src: str, dst: str, sport: int, dport: int, start_s: float, dur_s: float,
           out: tuple[int, int], back: tuple[int, int]) -> list[dict[str, str]]:  # fmt: skip
    """A connection that ends with a FIN: its record, then the tail after the FIN."""
    tail = {
        **record(src, dst, sport, dport, start_s + dur_s, 0.0002, (1, 0), (1, 0), "FIN"),
        "ACK Flag Count": "1",
    }
    return [record(src, dst, sport, dport, start_s, dur_s, out, back), tail]


def alerts_of(rows: list[dict[str, str]], detector: str) -> list:
    reg = registry()
    return [a for a in run(flows("cicflowmeter", cic(rows), reg), reg) if a.detector == detector]


def test_http_beacon_every_minute_with_its_tails_is_a_beacon() -> None:
    """An HTTP bot checking in with a new connection each time (Python requests without a session),
    every 60 s with a few seconds' jitter, for 3 hours: each check-in leaves its record and its tail."""
    rows = []
    for i in range(180):
        start = i * 60 + (i * 7) % 5
        rows += closed(BOT, C2, 40000 + i, 8080, start, 0.25, (4, 220 + i % 3), (3, 180))
    beacons = alerts_of(rows, "c2.beacon")
    assert [a.entity.id for a in beacons] == [BOT]
    assert beacons[0].evidence["connections"] == 180  # the tails are no check-ins


def test_slowloris_against_a_server_that_cuts_slow_requests() -> None:
    """slowloris's default 150 sockets, a header line every 15 s, against Apache's mod_reqtimeout
    (20-40 s for the headers): each connection closed by the server after ~30 s (the server's FIN
    ends the record), the tool opening another at once; 10 minutes."""
    rows = []
    for sock in range(150):
        for k in range(20):
            start = sock * 0.2 + k * 30.5
            rows += closed(ATTACKER, VICTIM, 20000 + sock * 20 + k, 80, start, 30.0, (4, 300), (2, 0))
    slow = alerts_of(rows, "dos.slow_connections")
    assert slow and slow[0].evidence["held"] >= 100
    # 3,000 alike short HTTP sessions of one source, but held open on nothing: not password guessing
    assert alerts_of(rows, "brute_force.flow_guessing") == []


def test_slowloris_held_open_and_cut_by_the_flow_timeout() -> None:
    """The same tool against a server without a request timeout: each socket stays open, and
    CICFlowMeter cuts it every 120 s (the first record has the SYN, the next ones none)."""
    rows = []
    for sock in range(150):
        for part in range(5):
            start = sock * 0.2 + part * 120
            first = "SYN" if part == 0 else "PSH"
            rows.append(record(ATTACKER, VICTIM, 20000 + sock, 80, start, 119.9, (8, 560), (8, 0), first))
    slow = alerts_of(rows, "dos.slow_connections")
    assert slow and slow[0].evidence["held"] >= 100
    assert alerts_of(rows, "brute_force.flow_guessing") == []


def test_ssh_password_guessing_with_its_tails_is_found() -> None:
    """A Patator-style SSH guesser, 10 threads, each connection ~3 s with several failed
    passwords, closed by the server: 600 connections in 10 minutes, each with its tail."""
    rows = []
    for i in range(600):
        rows += closed(ATTACKER, VICTIM, 30000 + i, 22, i * 1.0, 3.0, (14, 1500 + i % 32), (12, 2200))
    guessing = alerts_of(rows, "brute_force.flow_guessing")
    assert [a.entity.id for a in guessing] == [ATTACKER]


def test_closed_browsing_connections_and_their_tails_raise_nothing() -> None:
    """A workstation's browsing: 300 connections to 30 sites over an hour, each with its tail."""
    rows = []
    for i in range(300):
        site = f"93.184.{i % 30}.34"
        rows += closed(
            VICTIM, site, 50000 + i, 443, i * 12.0, 4.0 + i % 7, (9 + i % 5, 700 + 37 * i), (8, 9000 + 91 * i)
        )
    reg = registry()
    assert run(flows("cicflowmeter", cic(rows), reg), reg) == []


def minute_stamps(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The same records with their ``Timestamp`` cut to the minute, as some CICFlowMeter CSVs
    write it (``7/7/2017 8:59``): every record of a minute starts at its first second."""
    return [{**r, "Timestamp": r["Timestamp"].rsplit(":", 1)[0]} for r in rows]


def test_minute_stamped_records_still_show_a_fast_beacon_and_a_guesser() -> None:
    beacon = []
    for i in range(1080):  # every 10 s for 3 hours: six check-ins share each minute's stamp
        beacon += closed(BOT, C2, 40000 + i, 8080, i * 10 + i % 2, 0.25, (4, 220), (3, 180))
    assert [a.entity.id for a in alerts_of(minute_stamps(beacon), "c2.beacon")] == [BOT]
    guesser = []
    for i in range(600):
        guesser += closed(ATTACKER, VICTIM, 30000 + i, 21, i * 1.0, 2.0, (9, 60 + i % 8), (10, 300))
    assert [a.entity.id for a in alerts_of(minute_stamps(guesser), "brute_force.flow_guessing")] == [ATTACKER]


def test_minute_stamped_records_still_show_slowloris_and_an_http_flood() -> None:
    slow = []
    for sock in range(150):
        for k in range(20):
            slow += closed(
                ATTACKER, VICTIM, 20000 + sock * 20 + k, 80, sock * 0.2 + k * 30.5, 30.0, (4, 300), (2, 0)
            )
    held = alerts_of(minute_stamps(slow), "dos.slow_connections")
    assert held and held[0].evidence["held"] >= 100
    flood = []
    for i in range(900):  # one request per connection, 15 a second (Hulk-like), each with its tail
        flood += closed(ATTACKER, VICTIM, 30000 + i, 80, i / 15, 0.05, (5, 340 + i % 40), (4, 11_900))
    floods = alerts_of(minute_stamps(flood), "dos.app_flood")
    assert [a.entity.id for a in floods] == [ATTACKER] and floods[0].evidence["connections"] == 900


def test_an_http_flood_from_three_sources_is_found() -> None:
    """LOIC in HTTP mode on three machines against one web server: each opens a connection per
    request, ~8 a second, for five minutes; every connection with its tail."""
    rows = []
    for n, src in enumerate(("172.16.0.11", "172.16.0.12", "172.16.0.13")):
        for i in range(2400):
            rows += closed(src, VICTIM, 10000 + i, 80, n * 0.04 + i / 8, 0.03, (4, 80 + i % 20), (3, 9_800))
    floods = alerts_of(rows, "dos.app_flood")  # the victim's view, naming its three sources
    assert len(floods) == 5 and {a.entity.id for a in floods} == {VICTIM}
    sources = {"172.16.0.11", "172.16.0.12", "172.16.0.13"}
    assert all(set(a.evidence["sources"]) == sources and a.evidence["connections"] == 1440 for a in floods)
