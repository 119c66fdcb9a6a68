"""``ssa ingest s3://BUCKET/PREFIX``: VPC flow logs and CloudTrail read from a log-archive bucket.

A cloud delivers both as gzip objects under fixed key layouts (AWS documentation: "Flow log files",
docs.aws.amazon.com/vpc/latest/userguide/flow-logs-s3-path.html, and "Finding your CloudTrail log
files" / "CloudTrail log file name format", docs.aws.amazon.com/awscloudtrail/latest/userguide/
get-and-view-cloudtrail-log-files.html and cloudtrail-log-file-examples.html):

- VPC flow logs: ``[prefix/]AWSLogs/<account>/vpcflowlogs/<region>/<yyyy>/<mm>/<dd>/[<HH>/]``
  ``<account>_vpcflowlogs_<region>_<flow-log-id>_<yyyymmddTHHmmZ>_<hash>.log.gz`` (``<HH>/`` with
  hourly partitions); with Hive-compatible prefixes the folders are ``aws-account-id=<account>/
  aws-service=vpcflowlogs/aws-region=<region>/year=<yyyy>/month=<mm>/day=<dd>/[hour=<HH>/]``.
  The time in the name is the end of the 5-minute publication interval; the text format's first
  line is the header naming the fields. Parquet files (``.log.parquet``) are not read.
- CloudTrail: ``[prefix/]AWSLogs/[<o-org-id>/]<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/``
  ``<account>_CloudTrail_<region>_<yyyymmddTHHmmZ>_<unique>.json.gz`` (the organisation level for
  organisation trails); the time is the delivery time, the 16-character unique string means nothing.
  Digest (``CloudTrail-Digest``) and Insights (``CloudTrail-Insight``) files carry no events.

The format of an object comes from its key; anything else under the prefix (a digest, an ELB log,
a stray file) is skipped with its reason, counted once per run. Each object is parsed by the parser
``ssa ingest --format vpcflow|cloudtrail`` uses (``ingest.pipeline.open_parser``, one fresh parser
per object, so a flow-log file's header applies to that file), writing through the same
``CountingOutput``: bounds, DLQ, the ahead-of-clock check and the accounting are those of ``ssa
ingest``, and a record gives the event id it gets there (the id hashes the record's bytes, not
where they came from), so the folder backend, ``ssa ingest`` of the unpacked file and a re-read
all name an event the same.

**Order and state.** An object's time is the one in its name. Objects are read in delivery order:
by that time, then by key, across every account and region under the prefix. Per *stream* (the
folder above the date folders: one account, service and region) the state file remembers the
newest object read (``last``) and every key read whose time is within ``lookback`` (default 1 h)
of it (``done``), since AWS delivers some objects late: a late object whose time is within the
lookback of the newest one read is read when it appears; one later than that is not read: it is
skipped with that reason, counted and named in the summary (give a longer ``--lookback`` if a
source lags more). At most
``MAX_KEYS_PER_STREAM`` keys are kept per stream: beyond that the oldest are dropped and the
stream's ``floor`` (the time at or below which everything counts as read) rises with them. The
state (JSON, written atomically through a 0600 temporary file and a rename) is saved after the
sink has accepted an object's events (``flush``), at most once a second while objects are read,
and at the end of each poll: a restart reads nothing saved as read again and loses nothing; an
object whose reading was cut short (a crash, a dropped connection) is not marked and is read again
whole, which gives downstream the same event ids. The state names the URL it belongs to; another
URL's state file is refused.

**Listing.** The prefix is walked with a ``/`` delimiter down to the stream folders (those whose
sub-folders are years); each stream is then listed (``list_objects_v2``, paginated) from
``StartAfter`` = the date folder a day before its floor, so a poll lists about a day of keys per
stream, not the archive's history. A poll costs one LIST per folder above the streams plus about
one per stream. S3 event notifications (SQS) would avoid polling; they are not used here.

**Hostile objects.** A body is decompressed as it is read (``gzip``, chunk by chunk): memory does
not grow with the object. More than ``max_object_bytes`` decompressed bytes (default 1 GiB; AWS's
flow-log files are at most 75 MB) stop the object there: the complete lines before the limit are
parsed as usual and the rest is one DLQ record saying so (a gzip bomb costs the limit's worth of
CPU, never memory). A body that is not gzip, or whose gzip stream is corrupt, is a DLQ record too
(with what came before the damage parsed). An object deleted between the listing and the read is
skipped.

**Backends.** ``s3://bucket/prefix`` through boto3 (imported only when used: the rest of the
project runs without it). The endpoint (``--endpoint-url``, else boto3's own ``AWS_ENDPOINT_URL_S3``
/ ``AWS_ENDPOINT_URL`` and config files), region and credentials come from boto3's standard chain
(environment, ``~/.aws/config`` and ``credentials``, instance roles), never from this project.
A folder with the same layout reads the same way: ``file:///path`` or a plain path.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol

from ingest.dlq import DLQ_RAW_CAP, make_dlq
from ingest.parsers import get_format
from ingest.pipeline import MAX_AHEAD_MS, CountingOutput, IngestProgress, IngestSummary, open_parser
from ingest.producer import Sink
from ingest.tenants import RegistryWatcher, TenantRegistry

__all__ = [
    "DEFAULT_LOOKBACK_S",
    "DEFAULT_MAX_OBJECT_BYTES",
    "DEFAULT_POLL_S",
    "MAX_KEYS_PER_STREAM",
    "BucketState",
    "BucketSummary",
    "Listed",
    "LocalStore",
    "Located",
    "ObjectStore",
    "ObjectStoreError",
    "S3Store",
    "canonical_url",
    "classify",
    "default_state_path",
    "open_store",
    "read_bucket",
]

DEFAULT_LOOKBACK_S: Final = 3600.0
DEFAULT_MAX_OBJECT_BYTES: Final = 1 << 30
DEFAULT_POLL_S: Final = 60.0
MAX_KEYS_PER_STREAM: Final = 20_000
_SAVE_EVERY_S: Final = 1.0
_READ_BYTES: Final = 1 << 20
_CARRY_MAX: Final = 1 << 20  # an unterminated line longer than this is passed on (the parser rejects it)
_MAX_DEPTH: Final = 12  # folders walked below the prefix
_MAX_DIRS: Final = 100_000
_NOTED_MAX: Final = 100_000
_DAY_MS: Final = 86_400_000
_TOO_LATE: Final = (
    "delivered more than --lookback after newer objects of its stream: not read (give a longer --lookback)"
)

_VPC_NAME: Final = re.compile(
    r"(?P<account>\d{12})_vpcflowlogs_(?P<region>[a-z0-9-]+)_(?P<flowlog>fl-[0-9A-Za-z]+)_"
    r"(?P<stamp>\d{8}T\d{4}Z)_(?P<hash>[0-9A-Za-z]+)\.log\.gz"
)
_CT_NAME: Final = re.compile(
    r"(?P<account>\d{12})_CloudTrail_(?P<region>[a-z0-9-]+)_(?P<stamp>\d{8}T\d{4}Z)_"
    r"(?P<unique>[0-9A-Za-z]+)\.json\.gz"
)
_ORG: Final = re.compile(r"o-[a-z0-9]{10,32}")
_YEAR_DIR: Final = re.compile(r"(?:year=)?\d{4}")
_LAYOUT: Final = (
    "not a VPC flow log or CloudTrail object as AWS names them "
    "(AWSLogs/<account>/vpcflowlogs|CloudTrail/<region>/<yyyy>/<mm>/<dd>/<account>_<service>_...gz)"
)


class ObjectStoreError(RuntimeError):
    """A store that cannot be listed or read (no such bucket, refused, unreachable), in one line."""


class _ObjectGone(ObjectStoreError):
    pass


# --- key layouts ----------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Located:
    """An object whose key is one of the layouts above; ordered as it is read (time, then key)."""

    stamp_ms: int
    key: str
    fmt: str = field(compare=False)  # vpcflow | cloudaudit
    stream: str = field(compare=False)  # the key up to the region folder, with its trailing /
    hive: bool = field(compare=False, default=False)
    size: int = field(compare=False, default=0)


def _stamp_ms(text: str) -> int | None:
    try:
        return int(datetime.strptime(text, "%Y%m%dT%H%MZ").replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        return None


def classify(key: str, size: int = 0) -> Located | str:
    """The object of ``key`` if it has a layout above, else the reason it is skipped."""
    parts = key.split("/")
    name, dirs = parts[-1], parts[:-1]
    if name.endswith(".log.parquet"):
        return "Parquet flow-log file: only the text format is read (create the flow log with text files)"
    if "_CloudTrail-Digest_" in name or "CloudTrail-Digest" in dirs:
        return "CloudTrail digest file (integrity hashes, no events)"
    if "_CloudTrail-Insight_" in name or "CloudTrail-Insight" in dirs:
        return "CloudTrail Insights file: not read"
    match = _VPC_NAME.fullmatch(name) or _CT_NAME.fullmatch(name)
    if match is None:
        return _LAYOUT
    fmt, service = ("vpcflow", "vpcflowlogs") if match.re is _VPC_NAME else ("cloudaudit", "CloudTrail")
    account, region = match["account"], match["region"]
    stamp = _stamp_ms(match["stamp"])
    if stamp is None:
        return f"{_LAYOUT}: impossible time {match['stamp']} in the name"
    hive = bool(dirs) and dirs[-1].startswith(("day=", "hour="))
    date_dirs = 3 + (dirs[-1].startswith("hour=") if hive else (len(dirs) >= 4 and _is_hour(dirs)))
    above = dirs[: len(dirs) - date_dirs]
    if len(above) < 4 or not _date_ok(dirs[len(above) :], hive):
        return _LAYOUT
    expect = (
        [f"aws-account-id={account}", f"aws-service={service}", f"aws-region={region}"]
        if hive
        else [account, service, region]
    )
    if above[-3:] != expect:
        return f"{_LAYOUT}: the folders do not match the name's account, service and region"
    rest = above[:-3]
    if rest and _ORG.fullmatch(rest[-1]) and fmt == "cloudaudit":
        rest = rest[:-1]
    if not rest or rest[-1] != "AWSLogs":
        return _LAYOUT
    return Located(stamp, key, fmt, "/".join(above) + "/", hive, size)


def _is_hour(dirs: list[str]) -> bool:
    """Plain layout: whether the last folder is an hour (yyyy/mm/dd/HH) rather than the day."""
    tail = dirs[-4:]
    return len(tail) == 4 and all(d.isdigit() for d in tail) and [len(d) for d in tail] == [4, 2, 2, 2]


def _date_ok(dirs: list[str], hive: bool) -> bool:
    names = ("year=", "month=", "day=", "hour=") if hive else ("", "", "", "")
    widths = (4, 2, 2, 2)
    for d, prefix, width in zip(dirs, names, widths, strict=False):
        value = d[len(prefix) :] if d.startswith(prefix) else None
        if value is None or len(value) != width or not value.isdigit():
            return False
    return True


# --- backends -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Listed:
    key: str
    size: int


class ObjectStore(Protocol):
    """What the reader needs of a bucket: keys are ``/``-separated and listed in key order."""

    def walk(self, prefix: str) -> tuple[list[str], list[Listed]]:
        """One level below ``prefix`` (delimiter ``/``): sub-folder prefixes and objects."""
        ...

    def list(self, prefix: str, start_after: str = "") -> Iterator[Listed]:
        """Every object under ``prefix`` whose key sorts after ``start_after``, in key order."""
        ...

    def open(self, key: str) -> IO[bytes]:
        """The object's stored bytes (still gzip), as a stream; the caller closes it."""
        ...

    def uri(self, key: str) -> str: ...


class S3Store:
    """An S3 bucket (or an S3-compatible server) through boto3."""

    def __init__(self, bucket: str, endpoint_url: str | None = None, client: Any = None) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self._client = client

    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise ObjectStoreError(
                    "reading s3:// needs boto3, which is not installed (pip install boto3); "
                    "a local folder with the same layout needs nothing"
                ) from None
            config = Config(
                retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60
            )
            self._client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    def _pages(self, **kw: Any) -> Iterator[dict[str, Any]]:
        try:
            yield from self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, **kw)
        except Exception as exc:
            raise ObjectStoreError(
                self._explain(exc, f"listing s3://{self.bucket}/{kw.get('Prefix', '')}")
            ) from None

    def walk(self, prefix: str) -> tuple[list[str], list[Listed]]:
        subs: list[str] = []
        objs: list[Listed] = []
        for page in self._pages(Prefix=prefix, Delimiter="/"):
            subs.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
            objs.extend(Listed(o["Key"], int(o.get("Size", 0))) for o in page.get("Contents", ()))
        return subs, objs

    def list(self, prefix: str, start_after: str = "") -> Iterator[Listed]:
        kw: dict[str, Any] = {"Prefix": prefix}
        if start_after:
            kw["StartAfter"] = start_after
        for page in self._pages(**kw):
            for o in page.get("Contents", ()):
                yield Listed(o["Key"], int(o.get("Size", 0)))

    def open(self, key: str) -> IO[bytes]:
        try:
            return self.client().get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise _ObjectGone(f"{self.uri(key)} was deleted before it was read") from None
            raise ObjectStoreError(self._explain(exc, f"reading {self.uri(key)}")) from None

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _explain(self, exc: BaseException, doing: str) -> str:
        """One line in our words for what boto3 raised."""
        code = _error_code(exc)
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        name = type(exc).__name__
        if code in ("NoSuchBucket",):
            return f"{doing}: no bucket {self.bucket!r}{where}"
        if code in (
            "AccessDenied",
            "AllAccessDisabled",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "403",
        ):
            return f"{doing}: refused ({code}): check the credentials boto3 finds and the bucket policy"
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return f"{doing}: no AWS credentials (environment, ~/.aws/credentials or an instance role)"
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
            return f"{doing}: the S3 endpoint{where or ''} did not answer"
        if code:
            return f"{doing}: S3 said {code}"
        return f"{doing}: {name}"


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class LocalStore:
    """A folder holding the bucket's layout; keys are paths below ``root`` with ``/`` separators.
    Symbolic links are not followed; only regular files are objects."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir_and_stem(self, prefix: str) -> tuple[Path, str]:
        folder, _, stem = prefix.rpartition("/")
        return self.root / folder if folder else self.root, stem

    def walk(self, prefix: str) -> tuple[list[str], list[Listed]]:
        folder, stem = self._dir_and_stem(prefix)
        base = prefix[: len(prefix) - len(stem)]
        subs: list[str] = []
        objs: list[Listed] = []
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        except OSError as exc:
            raise ObjectStoreError(f"listing {folder}: {exc.strerror or type(exc).__name__}") from None
        for entry in entries:
            if not entry.name.startswith(stem):
                continue
            if entry.is_dir(follow_symlinks=False):
                subs.append(f"{base}{entry.name}/")
            elif entry.is_file(follow_symlinks=False):
                objs.append(Listed(base + entry.name, entry.stat(follow_symlinks=False).st_size))
        return subs, objs

    def list(self, prefix: str, start_after: str = "") -> Iterator[Listed]:
        found: list[Listed] = []
        stack = [prefix]
        while stack:
            subs, objs = self.walk(stack.pop())
            found.extend(o for o in objs if o.key > start_after)
            stack.extend(s for s in subs if s > start_after[: len(s)] or start_after.startswith(s))
        yield from sorted(found, key=lambda o: o.key)

    def open(self, key: str) -> IO[bytes]:
        try:
            return open(self.root / key, "rb")
        except FileNotFoundError:
            raise _ObjectGone(f"{self.uri(key)} was deleted before it was read") from None

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri() if self.root.is_absolute() else str(self.root / key)


def open_store(url: str, endpoint_url: str | None = None) -> tuple[ObjectStore, str]:
    """(store, prefix) for ``s3://bucket/prefix``, ``file:///folder`` or a folder path."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ObjectStoreError(f"{url}: give s3://BUCKET/PREFIX")
        return S3Store(bucket, endpoint_url), prefix
    path = Path(url[len("file://") :] if url.startswith("file://") else url)
    if not path.is_dir():
        raise ObjectStoreError(f"{url}: no such folder")
    return LocalStore(path.resolve()), ""


def canonical_url(url: str) -> str:
    """The one spelling of a store URL that its state file is tied to: ``s3://bucket/prefix``, or
    ``file://`` and the folder's absolute path."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return f"s3://{bucket}/{prefix}"
    return Path(url[len("file://") :] if url.startswith("file://") else url).resolve().as_uri()


def default_state_path(folder: str | Path, url: str) -> Path:
    """Where the state of ``url`` lives by default: one file per URL in ``folder``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", canonical_url(url)).strip("_")[:150] or "bucket"
    return Path(folder) / f"{slug}.json"


# --- state ----------------------------------------------------------------------------------------
@dataclass
class _Stream:
    last_ms: int = 0
    last_key: str = ""
    floor_ms: int = 0  # an object whose time is at or below this counts as read
    done: dict[str, int] = field(default_factory=dict)
    # Keys read are remembered down to here (two days below the floor, the listing's reach, unless
    # the key cap cut them): below the floor, a key listed above this and not in ``done`` was
    # never read, and is reported as delivered too late instead of passed over in silence.
    known_ms: int = 0


@dataclass
class BucketState:
    """What was read, per stream (see the module docstring)."""

    url: str
    streams: dict[str, _Stream] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, url: str) -> BucketState:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != 1:
                raise ValueError("unknown version")
            owner = str(data["url"])
            streams = {
                str(name): _Stream(
                    int(s["last"][0]),
                    str(s["last"][1]),
                    int(s["floor"]),
                    {str(k): int(v) for k, v in s["done"].items()},
                    int(s.get("known", 0)),
                )
                for name, s in data["streams"].items()
            }
        except FileNotFoundError:
            return cls(url)
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(
                f"bucket state {path} is unreadable ({exc}): remove it to read everything again"
            ) from None
        if owner != url:
            raise ValueError(f"bucket state {path} belongs to {owner}, not {url}: give another --state")
        return cls(url, streams)

    def save(self, path: Path) -> None:
        data = {
            "version": 1,
            "url": self.url,
            "streams": {
                name: {
                    "last": [s.last_ms, s.last_key],
                    "floor": s.floor_ms,
                    "done": s.done,
                    "known": s.known_ms,
                }
                for name, s in sorted(self.streams.items())
            },
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def is_read(self, obj: Located) -> bool:
        s = self.streams.get(obj.stream)
        return s is not None and (obj.stamp_ms <= s.floor_ms or obj.key in s.done)

    def is_too_late(self, obj: Located) -> bool:
        """Never read, and below the floor: delivered more than the lookback after newer objects."""
        s = self.streams.get(obj.stream)
        return s is not None and s.known_ms < obj.stamp_ms <= s.floor_ms and obj.key not in s.done

    def mark(self, obj: Located, lookback_ms: int, max_keys: int = MAX_KEYS_PER_STREAM) -> None:
        s = self.streams.setdefault(obj.stream, _Stream())
        s.done[obj.key] = obj.stamp_ms
        if (obj.stamp_ms, obj.key) > (s.last_ms, s.last_key):
            s.last_ms, s.last_key = obj.stamp_ms, obj.key
        s.floor_ms = max(s.floor_ms, s.last_ms - lookback_ms)
        s.known_ms = max(s.known_ms, s.floor_ms - 2 * _DAY_MS)
        if len(s.done) > max_keys:  # keep the newest keys: the floor rises past the dropped ones
            stamps = sorted(s.done.values())
            cut = stamps[len(stamps) - max_keys - 1]
            s.known_ms = max(s.known_ms, cut)
            s.floor_ms = max(s.floor_ms, cut)
        s.done = {k: v for k, v in s.done.items() if v > s.known_ms}

    def start_after(self, stream: str, hive: bool) -> str:
        """``StartAfter`` for listing ``stream``: the date folder of the day before its floor."""
        s = self.streams.get(stream)
        if s is None or s.floor_ms <= 0:
            return ""
        day = datetime.fromtimestamp((s.floor_ms - _DAY_MS) / 1000, UTC)
        if hive:
            return f"{stream}year={day:%Y}/month={day:%m}/day={day:%d}"
        return f"{stream}{day:%Y}/{day:%m}/{day:%d}"


# --- reading one object ---------------------------------------------------------------------------
class _Head:
    """A stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, body: IO[bytes]) -> None:
        self.head = head
        self.body = body

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = (
                (self.head, b"") if n < 0 or n >= len(self.head) else (self.head[:n], self.head[n:])
            )
            return out
        return self.body.read(n)


class _Gunzip:
    """The decompressed bytes of a gzip body, at most ``cap`` of them, handed on only up to the last
    complete line (an unterminated tail is kept back until its newline comes, up to ``_CARRY_MAX``)
    so that the stream ending early, at the cap or at damage, never hands the parser a cut line.
    What ended it is kept: ``overflow`` (the cap), ``damage`` (corrupt gzip), ``failed`` (reading
    the body failed: the object is read again later)."""

    def __init__(self, body: IO[bytes], cap: int) -> None:
        self.gz = gzip.GzipFile(fileobj=body, mode="rb")
        self.cap = cap
        self.total = 0  # decompressed bytes taken from gzip
        self.passed = 0  # bytes handed on
        self.carry = b""  # an unterminated line kept back
        self.buf = b""  # handed on, not read yet
        self.ended = False
        self.overflow: bytes | None = None
        self.damage: str | None = None
        self.failed: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        if not self.buf:
            self.buf = self._next()
        if n < 0 or n >= len(self.buf):
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out

    read1 = read

    def _next(self) -> bytes:
        while not self.ended:
            try:
                chunk = self.gz.read(_READ_BYTES)
            except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
                self.damage = _gzip_damage(exc)
                break
            except Exception as exc:  # the body's transport: the object is read again later
                self.failed = exc
                break
            if not chunk:  # the end of the object: its last line needs no newline
                self.ended = True
                return self._pass(self.carry)
            self.total += len(chunk)
            if self.total > self.cap:
                keep = max(0, len(chunk) - (self.total - self.cap))
                data = self.carry + chunk[:keep]
                cut = data.rfind(b"\n") + 1
                self.overflow = (data[cut:] + chunk[keep:])[:DLQ_RAW_CAP]
                self.ended = True
                return self._pass(data[:cut])
            data = self.carry + chunk if self.carry else chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) <= _CARRY_MAX:
                self.carry = data
                continue
            if cut == 0:  # a very long line: on to the parser, which rejects it as too long
                cut = len(data)
            return self._pass(data[:cut], data[cut:])
        self.ended = True  # damage or failure: an unterminated line before it is not a record
        self.carry = b""
        return b""

    def _pass(self, out: bytes, carry: bytes = b"") -> bytes:
        self.carry = carry
        self.passed += len(out)
        return out


def _gzip_damage(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the gzip stream ends before its end marker (a truncated upload?)"
    if isinstance(exc, gzip.BadGzipFile):
        return "the gzip stream is not valid (bad header or checksum)"
    return "the gzip stream is corrupt"


# --- the reader -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BucketSummary:
    """Objects read and skipped, and the records' accounting (``ingest``, as ``ssa ingest``'s)."""

    url: str
    objects: dict[str, int]
    objects_skipped: dict[str, int]
    objects_dlq: int
    polls: int
    ingest: IngestSummary

    def line(self) -> str:
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.objects.items())) or "none"
        skipped = sum(self.objects_skipped.values())
        text = (
            f"{self.url}: {sum(self.objects.values()):,} objects read ({kinds}), {skipped:,} skipped, "
            f"{self.objects_dlq:,} unreadable (to DLQ) in {self.polls} poll(s); {self.ingest.line()}"
        )
        if self.objects_skipped:
            top = max(self.objects_skipped.items(), key=lambda kv: kv[1])
            text += f"; most common object skip: {top[0]} ({top[1]:,})"
        return text


class _Reader:
    def __init__(
        self,
        store: ObjectStore,
        prefix: str,
        url: str,
        sink: Sink,
        state: BucketState,
        state_path: Path,
        *,
        fmt: str | None,
        tenant: str | None,
        registry: TenantRegistry | RegistryWatcher | None,
        lookback_ms: int,
        max_object_bytes: int,
        max_keys: int,
        max_ahead_ms: int,
        progress: Callable[[IngestProgress], None] | None,
        say: Callable[[str], None],
        stop: threading.Event,
    ) -> None:
        self.store, self.prefix, self.url, self.sink = store, prefix, url, sink
        self.state, self.state_path = state, state_path
        self.only = get_format(fmt).name if fmt else None
        self.tenant, self.registry = tenant, registry
        self.lookback_ms, self.cap, self.max_keys = lookback_ms, max_object_bytes, max_keys
        self.say, self.stop = say, stop
        self.out = CountingOutput(sink, progress, 2.0, max_ahead_ms, None)
        self.objects: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.objects_dlq = 0
        self.polls = 0
        self._noted: set[str] = set()
        self._dirty = False
        self._saved_at = 0.0

    # listing
    def candidates(self) -> list[Located]:
        """The objects under the prefix not read yet, in delivery order."""
        new: list[Located] = []
        stack = [(self.prefix, 0)]
        dirs = 0
        while stack:
            prefix, depth = stack.pop()
            dirs += 1
            if dirs > _MAX_DIRS:
                raise ObjectStoreError(
                    f"{self.url}: more than {_MAX_DIRS:,} folders above the logs: give a narrower prefix"
                )
            subs, objs = self.store.walk(prefix)
            listed: list[Listed] = objs
            names = [s[len(prefix) :].rstrip("/") for s in subs]
            if subs and all(_YEAR_DIR.fullmatch(n) for n in names):  # a stream folder: list it whole
                hive = names[0].startswith("year=")
                listed = list(self.store.list(prefix, self.state.start_after(prefix, hive)))
            elif depth < _MAX_DEPTH:
                stack.extend((s, depth + 1) for s in reversed(subs))
            for item in listed:
                if item.key in self._noted:
                    continue
                found = classify(item.key, item.size)
                if isinstance(found, str):
                    self._skip(item.key, found)
                elif self.only is not None and found.fmt != self.only:
                    self._skip(item.key, f"not --format {self.only}")
                elif self.state.is_too_late(found):
                    self._skip(item.key, _TOO_LATE)
                elif not self.state.is_read(found):
                    new.append(found)
        new.sort()
        return new

    def _skip(self, key: str, reason: str) -> None:
        if len(self._noted) < _NOTED_MAX:
            self._noted.add(key)
        self.skipped[reason] += 1

    # reading
    def poll(self) -> int:
        self.polls += 1
        done = 0
        try:
            for obj in self.candidates():
                if self.stop.is_set():
                    break
                if self.read_object(obj):
                    self.state.mark(obj, self.lookback_ms, self.max_keys)
                    self._dirty = True
                    done += 1
                self.checkpoint(force=False)
        finally:
            self.checkpoint(force=True)
        return done

    def checkpoint(self, force: bool) -> None:
        now = time.monotonic()
        if self._dirty and (force or now - self._saved_at >= _SAVE_EVERY_S):
            self.sink.flush()  # the events of what is marked read are the sink's now
            self.state.save(self.state_path)
            self._dirty = False
            self._saved_at = now

    def read_object(self, obj: Located) -> bool:
        """Parse one object into the sink; True when it is done with (read, or unreadable and
        sent to the DLQ, or gone), False when it must be read again (the body's transport failed:
        raises in that case)."""
        uri = self.store.uri(obj.key)
        self.out.file = uri
        parser = open_parser(obj.fmt, self.out, tenant=self.tenant, registry=self.registry, file=uri)
        source = parser.source
        try:
            body = self.store.open(obj.key)
        except _ObjectGone as exc:
            self._skip(obj.key, "deleted before it was read")
            self.say(f"bucket: {exc}")
            return True
        try:
            head = _read_some(body, 2)
            if head != b"\x1f\x8b":
                raw = head + _read_some(body, DLQ_RAW_CAP - len(head))
                self._object_dlq(
                    source,
                    f"object is not gzip though its name ends in .gz ({obj.size:,} bytes)",
                    raw,
                    uri,
                    obj.size,
                )
                return True
            stream = _Gunzip(_Head(head, body), self.cap)  # type: ignore[arg-type]
            parser.feed_stream(stream)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(Exception):
                body.close()
        if stream.failed is not None:
            raise ObjectStoreError(
                f"reading {uri} failed after {stream.total:,} bytes ({type(stream.failed).__name__}): it will be read again whole"
            )
        if stream.overflow is not None:
            self._object_dlq(
                source,
                f"object decompresses to more than {self.cap:,} bytes (a gzip bomb, or raise --max-object-bytes): "
                f"the lines in its first {stream.passed:,} bytes were read, the rest is not",
                stream.overflow, uri, None,
            )  # fmt: skip
        elif stream.damage is not None:
            self._object_dlq(
                source, f"{stream.damage} after {stream.total:,} bytes: the lines before were read, the rest is not",
                b"", uri, obj.size,
            )  # fmt: skip
        self.objects[obj.fmt] += 1
        return True

    def _object_dlq(self, source: str, reason: str, raw: bytes, uri: str, raw_len: int | None) -> None:
        self.out.dlq(make_dlq(source, reason, raw, file=uri, raw_len=raw_len))
        self.objects_dlq += 1

    def summary(self) -> BucketSummary:
        out = self.out
        snap = out.snapshot()
        ingest = IngestSummary(
            parsed=out.parsed, dlq=out.dlqs, skipped=snap.skipped, by_kind=dict(out.by_kind),
            elapsed=snap.elapsed, fmt=self.only or "vpcflow/cloudtrail", source=self.url,
            dlq_reasons=dict(out.dlq_reasons), skip_reasons=dict(out.skipped),
        )  # fmt: skip
        return BucketSummary(
            self.url, dict(self.objects), dict(self.skipped), self.objects_dlq, self.polls, ingest
        )


def _read_some(body: IO[bytes], n: int) -> bytes:
    data = b""
    while len(data) < n:
        piece = body.read(n - len(data))
        if not piece:
            break
        data += piece
    return data


def read_bucket(
    url: str,
    sink: Sink,
    *,
    state_path: str | Path,
    follow: bool = False,
    poll_s: float = DEFAULT_POLL_S,
    stop: threading.Event | None = None,
    fmt: str | None = None,
    tenant: str | None = None,
    registry: TenantRegistry | RegistryWatcher | None = None,
    lookback_s: float = DEFAULT_LOOKBACK_S,
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
    max_keys: int = MAX_KEYS_PER_STREAM,
    max_ahead_ms: int = MAX_AHEAD_MS,
    endpoint_url: str | None = None,
    store: ObjectStore | None = None,
    progress: Callable[[IngestProgress], None] | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> BucketSummary:
    """Read the objects of ``url`` (``s3://bucket/prefix``, ``file:///folder`` or a folder) not read
    yet into ``sink``, in delivery order, remembering them in ``state_path``; with ``follow``, poll
    again every ``poll_s`` until ``stop`` is set (or Ctrl-C). ``fmt`` (vpcflow or cloudtrail) reads
    only that format's objects. Raises ``ObjectStoreError`` (one line) when the store cannot be
    listed or read, except while following, where the next poll tries again, and ``ValueError``
    for an unreadable or foreign state file."""
    if fmt is not None and get_format(fmt).name not in ("vpcflow", "cloudaudit"):
        raise ValueError(
            f"a bucket holds VPC flow logs and CloudTrail: --format vpcflow or cloudtrail, not {fmt}"
        )
    if store is None:
        store, prefix = open_store(url, endpoint_url)
    else:
        prefix = url.partition("://")[2].partition("/")[2] if url.startswith("s3://") else ""
    url = canonical_url(url)
    path = Path(state_path)
    state = BucketState.load(path, url)
    stop = stop or threading.Event()
    reader = _Reader(
        store, prefix, url, sink, state, path, fmt=fmt, tenant=tenant, registry=registry,
        lookback_ms=int(lookback_s * 1000), max_object_bytes=max_object_bytes, max_keys=max_keys,
        max_ahead_ms=max_ahead_ms, progress=progress, say=say, stop=stop,
    )  # fmt: skip
    try:
        while not stop.is_set():
            try:
                n = reader.poll()
            except ObjectStoreError as exc:
                if not follow:
                    raise
                say(f"bucket: {exc}; trying again in {poll_s:g} s")
            else:
                if n or reader.polls == 1:
                    say(f"bucket: poll {reader.polls}: {n:,} new object(s)")
            if not follow:
                break
            stop.wait(poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        reader.checkpoint(force=True)
    return reader.summary()
