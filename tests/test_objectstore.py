"""Reading a log-archive bucket (ingest.objectstore): VPC flow logs and CloudTrail objects under the
key layouts AWS writes, in delivery order, remembering what was read, against a real local
S3-compatible server (moto's ThreadedMotoServer over HTTP, boto3 pointed at it) and a folder with
the same layout. The S3 tests skip when boto3 or moto is not installed; the layout, state and
folder tests run without them."""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import stat
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.objectstore import (
    BucketState,
    Listed,
    Located,
    ObjectStoreError,
    S3Store,
    classify,
    read_bucket,
)
from ingest.pipeline import run_ingest
from tests.test_raw_records import ListSink

SAMPLES = Path(__file__).parent / "samples"
BUCKET = "ssa-log-archive"
ACCT, OTHER = "111122223333", "444455556666"
HEADER = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
T0 = 1_709_632_800  # 2024-03-05T10:00:00Z


def vpc_key(account: str, stamp: str, n: int, region: str = "us-east-1", prefix: str = "") -> str:
    day = f"{stamp[:4]}/{stamp[4:6]}/{stamp[6:8]}"
    return (
        f"{prefix}AWSLogs/{account}/vpcflowlogs/{region}/{day}/"
        f"{account}_vpcflowlogs_{region}_fl-0a1b2c3d4e5f6a7b8_{stamp}_{n:08x}.log.gz"
    )


def ct_key(account: str, stamp: str, unique: str, region: str = "us-east-1", org: str = "") -> str:
    day = f"{stamp[:4]}/{stamp[4:6]}/{stamp[6:8]}"
    org_dir = f"{org}/" if org else ""
    return f"AWSLogs/{org_dir}{account}/CloudTrail/{region}/{day}/{account}_CloudTrail_{region}_{stamp}_{unique}.json.gz"


def vpc_body(account: str, start: int, count: int, seed: int) -> bytes:
    """A text flow-log file as AWS writes it: the header line, then default-format v2 records."""
    lines = [HEADER]
    for i in range(count):
        s = start + i
        lines.append(
            f"2 {account} eni-0a1b2c3d4e5f6{seed:05d} 10.1.{seed % 250}.{i % 250 + 1} 198.51.100.{i % 200 + 1} "
            f"{40000 + i} 443 6 {10 + i} {4000 + 17 * i} {s} {s + 55} ACCEPT OK"
        )
    lines.append(f"2 {account} eni-0a1b2c3d4e5f6{seed:05d} - - - - - - - {start} {start + 60} - NODATA")
    return ("\n".join(lines) + "\n").encode()


RECORDS = json.loads((SAMPLES / "cloudtrail_real.json").read_text())["Records"]


def ct_body(first: int, count: int) -> bytes:
    """A CloudTrail file as AWS delivers it: one line of {"Records": [...]}."""
    return json.dumps({"Records": RECORDS[first : first + count]}, separators=(",", ":")).encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# The archive: objects of both kinds, two accounts, an organisation trail, keyed by name time.
OBJECTS: dict[str, bytes] = {
    vpc_key(ACCT, "20240305T1005Z", 1): vpc_body(ACCT, T0, 30, 1),
    vpc_key(ACCT, "20240305T1010Z", 2): vpc_body(ACCT, T0 + 300, 25, 2),
    vpc_key(OTHER, "20240305T1010Z", 3): vpc_body(OTHER, T0 + 300, 20, 3),
    ct_key(ACCT, "20240305T1015Z", "Mu0KsOhtH1ar15ZZ"): ct_body(0, 8),
    ct_key(OTHER, "20240305T1020Z", "Xa9KsOhtH1ar15QQ", org="o-a1b2c3d4e5"): ct_body(8, 7),
    vpc_key(ACCT, "20240305T1020Z", 4): vpc_body(ACCT, T0 + 900, 15, 4),
}
DELIVERY = sorted(OBJECTS, key=lambda k: (classify(k).stamp_ms, k))  # type: ignore[union-attr]


def expected_ids(keys: list[str], tmp: Path) -> list[str]:
    """Event ids ``ssa ingest`` gives the objects' files, in the order given."""
    ids: list[str] = []
    for i, key in enumerate(keys):
        path = tmp / f"expect-{i}.gz"
        path.write_bytes(gz(OBJECTS[key]))
        sink = ListSink()
        run_ingest(path, "vpcflow" if "vpcflowlogs" in key else "cloudtrail", sink=sink)
        assert not sink.dlqs
        ids.extend(e.id for e in sink.events)
    return ids


# --- layouts (no server needed) -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "fmt", "stream"),
    [
        (
            vpc_key(ACCT, "20240305T1005Z", 1, prefix="flow/"),
            "vpcflow",
            f"flow/AWSLogs/{ACCT}/vpcflowlogs/us-east-1/",
        ),
        (
            f"AWSLogs/{ACCT}/vpcflowlogs/eu-west-1/2024/03/05/10/"
            f"{ACCT}_vpcflowlogs_eu-west-1_fl-0123456789abcdef0_20240305T1005Z_ab12cd34.log.gz",
            "vpcflow",
            f"AWSLogs/{ACCT}/vpcflowlogs/eu-west-1/",
        ),
        (
            f"AWSLogs/aws-account-id={ACCT}/aws-service=vpcflowlogs/aws-region=us-east-1/year=2024/month=03/"
            f"day=05/hour=10/{ACCT}_vpcflowlogs_us-east-1_fl-0123456789abcdef0_20240305T1005Z_ab12cd34.log.gz",
            "vpcflow",
            f"AWSLogs/aws-account-id={ACCT}/aws-service=vpcflowlogs/aws-region=us-east-1/",
        ),
        (
            ct_key(ACCT, "20150801T0210Z", "Mu0KsOhtH1ar15ZZ"),
            "cloudaudit",
            f"AWSLogs/{ACCT}/CloudTrail/us-east-1/",
        ),
        (
            ct_key(ACCT, "20150801T0210Z", "Mu0KsOhtH1ar15ZZ", org="o-exampleorgid"),
            "cloudaudit",
            f"AWSLogs/o-exampleorgid/{ACCT}/CloudTrail/us-east-1/",
        ),
    ],
)
def test_layouts_aws_writes_are_recognised(key, fmt, stream):
    found = classify(key)
    assert isinstance(found, Located), found
    assert (found.fmt, found.stream) == (fmt, stream)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (
            f"AWSLogs/{ACCT}/CloudTrail-Digest/us-east-1/2024/03/05/"
            f"{ACCT}_CloudTrail-Digest_us-east-1_trail_us-east-1_20240305T101500Z.json.gz",
            "digest",
        ),
        (vpc_key(ACCT, "20240305T1005Z", 1).replace(".log.gz", ".log.parquet"), "Parquet"),
        (f"AWSLogs/{ACCT}/elasticloadbalancing/us-east-1/2024/03/05/x.log.gz", "not a VPC flow log"),
        (vpc_key(ACCT, "20240305T1005Z", 1).replace(f"AWSLogs/{ACCT}/", f"AWSLogs/{OTHER}/"), "do not match"),
        (vpc_key(ACCT, "20241305T1005Z", 1), "impossible time"),
        ("notes/readme.txt", "not a VPC flow log"),
    ],
)
def test_other_keys_are_skipped_with_a_reason(key, reason):
    found = classify(key)
    assert isinstance(found, str) and reason in found


def test_state_keeps_late_keys_within_the_lookback_and_is_private(tmp_path):
    state = BucketState("s3://b/p")
    objs = [classify(k) for k in DELIVERY]
    for obj in objs:
        assert isinstance(obj, Located)
        state.mark(obj, lookback_ms=600_000)
    acct_vpc = f"AWSLogs/{ACCT}/vpcflowlogs/us-east-1/"
    late = classify(vpc_key(ACCT, "20240305T1012Z", 9))
    too_late = classify(vpc_key(ACCT, "20240305T1009Z", 9))
    assert isinstance(late, Located) and isinstance(too_late, Located)
    assert not state.is_read(late)  # 8 min behind the newest read: within the 10 min lookback
    assert state.is_read(too_late)  # at or below the floor: not read again...
    assert state.is_too_late(too_late)  # ...and, never read, reported as delivered too late
    assert not state.is_too_late(classify(DELIVERY[0]))  # type: ignore[arg-type]
    assert state.streams[acct_vpc].floor_ms == classify(DELIVERY[-1]).stamp_ms - 600_000  # type: ignore[union-attr]
    path = tmp_path / "state" / "b.json"
    state.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert BucketState.load(path, "s3://b/p").streams == state.streams
    with pytest.raises(ValueError, match="belongs to s3://b/p"):
        BucketState.load(path, "s3://other/p")
    path.write_text("{")
    with pytest.raises(ValueError, match="unreadable"):
        BucketState.load(path, "s3://b/p")


def test_state_stays_bounded(tmp_path):
    state = BucketState("x")
    for n in range(50):
        obj = classify(vpc_key(ACCT, f"20240305T10{n:02d}Z", n))
        assert isinstance(obj, Located)
        state.mark(obj, lookback_ms=10 * 3600_000, max_keys=10)
    (stream,) = state.streams.values()
    assert len(stream.done) == 10 and stream.floor_ms == classify(vpc_key(ACCT, "20240305T1039Z", 0)).stamp_ms  # type: ignore[union-attr]


# --- the folder backend -----------------------------------------------------------------------------
def write_folder(root: Path, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gz(data))


def test_folder_reads_in_delivery_order_like_ssa_ingest_and_restarts(tmp_path):
    root = tmp_path / "archive"
    write_folder(root, OBJECTS)
    (root / "AWSLogs" / ACCT / "stray.txt").write_text("not a log")
    state = tmp_path / "state.json"
    sink = ListSink()
    summary = read_bucket(f"file://{root}", sink, state_path=state)
    assert [e.id for e in sink.events] == expected_ids(DELIVERY, tmp_path)
    assert summary.objects == {"vpcflow": 4, "cloudaudit": 2}
    assert summary.ingest.skip_reasons == {"header line": 4, "vpcflow NODATA": 4} and summary.ingest.dlq == 0
    assert sum(summary.objects_skipped.values()) == 1 and not sink.dlqs
    again = ListSink()
    assert read_bucket(str(root), again, state_path=state).objects == {} and again.events == []


# --- against a local S3-compatible server -------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("boto3", reason="boto3 (the S3 client) is not installed in this environment")
    server_mod = pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (the local S3 server)"
    )
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(_ENV)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# boto3's standard chain finds these: nothing of the user's ~/.aws is read.
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/ssa-test-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/ssa-test-aws-credentials",
}


@pytest.fixture()
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> Iterator[tuple[object, str]]:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    name = f"{BUCKET}-{abs(hash(request.node.name)) % 10**8}"
    client.create_bucket(Bucket=name)
    yield client, name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", ()):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


def put(client: object, name: str, key: str, data: bytes, *, raw: bool = False) -> None:
    client.put_object(Bucket=name, Key=key, Body=data if raw else gz(data))  # type: ignore[attr-defined]


def test_s3_out_of_order_late_delivery_and_restart(bucket, s3_endpoint, tmp_path):
    client, name = bucket
    # DELIVERY: vpc 10:05, vpc 10:10 (two accounts), CloudTrail 10:15, vpc 10:20, org CloudTrail 10:20
    late, later = DELIVERY[1], DELIVERY[5]  # late: account 1111's flow log of 10:10
    first = [k for k in DELIVERY if k not in (late, later)]
    for key in reversed(first):  # uploaded newest first: the order read is the names' times
        put(client, name, key, OBJECTS[key])
    put(client, name, "AWSLogs/README.txt", b"stray", raw=True)
    url, state = f"s3://{name}/", tmp_path / "state.json"
    sink = ListSink()
    summary = read_bucket(url, sink, state_path=state, endpoint_url=s3_endpoint, lookback_s=3600)
    assert [e.id for e in sink.events] == expected_ids(first, tmp_path)
    assert summary.objects == {"vpcflow": 3, "cloudaudit": 1}
    assert summary.objects_skipped == {classify("AWSLogs/README.txt"): 1}
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    # A late object (its time before the newest read, within the lookback) and a new one.
    put(client, name, late, OBJECTS[late])
    put(client, name, later, OBJECTS[later])
    sink2 = ListSink()
    summary2 = read_bucket(url, sink2, state_path=state, endpoint_url=s3_endpoint, lookback_s=3600)
    assert [e.id for e in sink2.events] == expected_ids([late, later], tmp_path)
    assert summary2.objects == {"cloudaudit": 1, "vpcflow": 1}
    # A restart reads nothing twice; everything was read exactly once.
    sink3 = ListSink()
    assert read_bucket(url, sink3, state_path=state, endpoint_url=s3_endpoint).objects == {}
    assert sink3.events == []
    assert sorted(e.id for e in sink.events + sink2.events) == sorted(expected_ids(DELIVERY, tmp_path))
    # One delivered later than the lookback allows is not read, and says so (skipped, counted).
    too_late = vpc_key(ACCT, "20240305T0900Z", 77)
    put(client, name, too_late, vpc_body(ACCT, T0 - 3600, 3, 77))
    sink4 = ListSink()
    summary4 = read_bucket(url, sink4, state_path=state, endpoint_url=s3_endpoint, lookback_s=600)
    assert sink4.events == []
    assert any("more than --lookback" in r for r in summary4.objects_skipped)


class CrashingSink(ListSink):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def send_event(self, event):
        if len(self.events) == self.after:
            raise RuntimeError("the process dies here")
        super().send_event(event)

    def send_events(self, events):
        for event in events:
            self.send_event(event)


def test_s3_crash_mid_object_rereads_it_whole_and_loses_nothing(bucket, s3_endpoint, tmp_path):
    client, name = bucket
    for key in DELIVERY:
        put(client, name, key, OBJECTS[key])
    url, state = f"s3://{name}", tmp_path / "state.json"
    first_two = len(expected_ids(DELIVERY[:2], tmp_path))
    crashing = CrashingSink(after=first_two + 5)  # dies 5 events into the third object
    with pytest.raises(RuntimeError, match="dies"):
        read_bucket(url, crashing, state_path=state, endpoint_url=s3_endpoint)
    resumed = ListSink()
    summary = read_bucket(url, resumed, state_path=state, endpoint_url=s3_endpoint)
    # the third object is read again whole, nothing before it
    assert [e.id for e in resumed.events] == expected_ids(DELIVERY[2:], tmp_path)
    assert summary.objects == {"vpcflow": 2, "cloudaudit": 2}
    assert {e.id for e in crashing.events + resumed.events} == set(expected_ids(DELIVERY, tmp_path))


def test_s3_gzip_bomb_non_gzip_and_corrupt_objects_go_to_the_dlq(bucket, s3_endpoint, tmp_path):
    client, name = bucket
    good = vpc_body(ACCT, T0, 40, 5)
    # 200 MB that compress to ~200 KB: valid records first, then zeros with no newline.
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", mtime=0) as f:
        f.write(good)
        zeros = b"\0" * (1 << 20)
        for _ in range(200):
            f.write(zeros)
    bomb_key = vpc_key(ACCT, "20240305T1005Z", 10)
    put(client, name, bomb_key, bomb.getvalue(), raw=True)
    plain_key = vpc_key(ACCT, "20240305T1010Z", 11)
    put(client, name, plain_key, vpc_body(ACCT, T0 + 300, 5, 6), raw=True)  # named .gz, stored plain
    cut_key = ct_key(ACCT, "20240305T1015Z", "CutKsOhtH1ar15ZZ")
    whole = gz(ct_body(0, 20))
    put(client, name, cut_key, whole[: len(whole) // 2], raw=True)  # a truncated upload
    sink = ListSink()
    tracemalloc.start()
    try:
        summary = read_bucket(
            f"s3://{name}", sink, state_path=tmp_path / "s.json", endpoint_url=s3_endpoint,
            max_object_bytes=4 << 20,
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"peak {peak:,} bytes while reading a 200 MB bomb"
    reasons = [d.reason for d in sink.dlqs]
    assert any("decompresses to more than 4,194,304 bytes" in r for r in reasons), reasons
    assert any("not gzip" in r for r in reasons), reasons
    assert any("gzip stream ends before its end marker" in r for r in reasons), reasons
    assert summary.objects_dlq == 3
    # The bomb's valid records before the cap were read, as ssa ingest reads them.
    bomb_ids = [e.id for e in sink.events if e.source == "vpcflow"]
    assert bomb_ids == expected_ids_of(good, "vpcflow", tmp_path)
    assert all(d.file and d.file.startswith(f"s3://{name}/AWSLogs/") for d in sink.dlqs)
    # Each was dealt with once: a second run reads nothing.
    again = ListSink()
    read_bucket(f"s3://{name}", again, state_path=tmp_path / "s.json", endpoint_url=s3_endpoint)
    assert again.events == [] and again.dlqs == []


def expected_ids_of(data: bytes, fmt: str, tmp: Path) -> list[str]:
    path = tmp / f"one-{fmt}.log"
    path.write_bytes(data)
    sink = ListSink()
    run_ingest(path, fmt, sink=sink)
    return [e.id for e in sink.events]


def test_s3_and_folder_give_the_same_events(bucket, s3_endpoint, tmp_path):
    client, name = bucket
    for key, data in OBJECTS.items():
        put(client, name, f"org-archive/{key}", data)
    root = tmp_path / "copy"
    write_folder(root / "org-archive", OBJECTS)
    from_s3, from_folder = ListSink(), ListSink()
    read_bucket(
        f"s3://{name}/org-archive/", from_s3, state_path=tmp_path / "a.json", endpoint_url=s3_endpoint
    )
    read_bucket(f"file://{root}/org-archive", from_folder, state_path=tmp_path / "b.json")
    assert [e.id for e in from_s3.events] == [e.id for e in from_folder.events]
    assert [e for e in from_s3.events] == [e for e in from_folder.events]
    assert len(from_s3.events) == len(expected_ids(DELIVERY, tmp_path))


def test_s3_unknown_layouts_are_counted_once_while_following(bucket, s3_endpoint, tmp_path):
    client, name = bucket
    digest = (
        f"AWSLogs/{ACCT}/CloudTrail-Digest/us-east-1/2024/03/05/"
        f"{ACCT}_CloudTrail-Digest_us-east-1_trail_us-east-1_20240305T101500Z.json.gz"
    )
    put(client, name, digest, b"{}")
    put(client, name, f"AWSLogs/{ACCT}/elasticloadbalancing/us-east-1/2024/03/05/elb.log.gz", b"x")
    stop = threading.Event()
    sink = ListSink()
    done: list[object] = []
    polls = threading.Semaphore(0)

    class PollCounting(S3Store):
        def walk(self, prefix: str) -> tuple[list[str], list[Listed]]:
            if prefix == "":  # each poll walks from the prefix
                polls.release()
            return super().walk(prefix)

    store = PollCounting(name, s3_endpoint)
    thread = threading.Thread(
        target=lambda: done.append(
            read_bucket(
                f"s3://{name}",
                sink,
                state_path=tmp_path / "s.json",
                store=store,
                follow=True,
                poll_s=0.05,
                stop=stop,
            )
        ),
        daemon=True,
    )
    thread.start()
    try:
        for _ in range(3):  # three polls see only the digest and the ELB log
            assert polls.acquire(timeout=20)
        key = DELIVERY[0]
        put(client, name, key, OBJECTS[key])
        deadline = time.monotonic() + 20
        while len(sink.events) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive() and done
    summary = done[0]
    assert [e.id for e in sink.events] == expected_ids([DELIVERY[0]], tmp_path)
    assert summary.polls > 2  # type: ignore[attr-defined]
    assert summary.objects_skipped == {  # type: ignore[attr-defined]
        "CloudTrail digest file (integrity hashes, no events)": 1,
        classify("x/elb.log.gz"): 1,
    }


def test_s3_missing_bucket_is_one_line(s3_endpoint, tmp_path):
    with pytest.raises(ObjectStoreError, match="no bucket 'no-such-bucket-here'"):
        read_bucket(
            "s3://no-such-bucket-here/x", ListSink(), state_path=tmp_path / "s", endpoint_url=s3_endpoint
        )


def test_cli_reads_a_bucket_to_a_file(bucket, s3_endpoint, tmp_path, capsys):
    from ssa.cli import main

    client, name = bucket
    for key in DELIVERY[:2]:
        put(client, name, key, OBJECTS[key])
    out, state = tmp_path / "events.jsonl", tmp_path / "state.json"
    argv = [
        "ingest",
        f"s3://{name}/AWSLogs/",
        "--endpoint-url",
        s3_endpoint,
        "--output",
        str(out),
        "--state",
        str(state),
    ]
    assert main(argv) == 0
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == expected_ids(DELIVERY[:2], tmp_path)
    assert "2 objects read" in capsys.readouterr().err
    assert main(argv) == 0 and out.read_text() == ""  # nothing new
    assert main(["ingest", f"s3://{name}/", "--format", "zeek", "--output", str(out)]) == 1
    assert "vpcflow or cloudtrail" in capsys.readouterr().err


def test_cli_reads_a_folder_and_refuses_bucket_flags_for_a_file(tmp_path, capsys):
    from ssa.cli import main

    root = tmp_path / "archive"
    write_folder(root, {k: OBJECTS[k] for k in DELIVERY[:3]})
    out, state = tmp_path / "events.jsonl", tmp_path / "state.json"
    argv = ["ingest", root.as_uri(), "--format", "vpcflow", "--output", str(out), "--state", str(state)]
    assert main(argv) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == expected_ids(
        DELIVERY[:3], tmp_path
    )
    assert "3 objects read (vpcflow 3)" in capsys.readouterr().err
    log = tmp_path / "flow.log"
    log.write_bytes(OBJECTS[DELIVERY[0]])
    assert main(["ingest", str(log), "--format", "vpcflow", "--interval", "5", "--output", str(out)]) == 1
    assert "--interval read(s) a bucket" in capsys.readouterr().err
    assert main(["ingest", str(log), "--output", str(out)]) == 1
    assert "--format is required" in capsys.readouterr().err
    assert main(["ingest", str(log), "--format", "vpcflow", "--output", str(out)]) == 0  # as before
