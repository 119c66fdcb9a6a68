"""rsyslog as a feeder: a ready-to-use configuration that ships followed log files, line by line, to
the raw topics, and (for the integration test) Debian's rsyslog fetched without installing it.

**The configuration** (``render_config``; ``python -m infra.rsyslog`` prints the example for
``/var/log/auth.log`` and ``/var/log/audit/audit.log``): ``imfile`` follows each file and hands its
lines to a ruleset per format, whose ``omkafka`` action writes each line, unchanged and without its
newline, as one record to ``<topic_raw_prefix><format>`` (``ssa.raw.syslog``, ``ssa.raw.auditd``),
keyed ``<hostname>:<file>`` (``partitions.auto`` hashes the key, so one file stays on one partition,
in order: auditd's lines of an event must arrive together). ``omkafka`` cannot set record headers;
the raw-topic contract (``ingest.raw``) does not need them: the topic names the format and the key
the source, and the parse stage resolves the tenant from the registry, as ``ssa ingest`` does. The
line's bytes are hashed into the event id, so the template is ``%rawmsg%`` with control-character
escaping off: the same line gives the same event id through rsyslog as through ``ssa ingest``.
Delivery: ``acks=all`` and the idempotent producer; while Kafka is away ``omkafka`` suspends the
action and the lines wait in its disk-assisted queue (saved on shutdown), retried for ever; records
librdkafka already held are resubmitted (``resubmitOnFailure``: possibly more than once, which
gives duplicate events with the same id) and written to ``failedMsgFile`` at shutdown. Limitation
seen with 8.2302: the file is read back at the next start but its records were not sent (one line,
Kafka down at the stop, lost), so stop rsyslog while Kafka is up. Needs rsyslog 8.1903 or later (``dynaKey``) and its Kafka output module
(Debian and Ubuntu: the ``rsyslog-kafka`` package). For a secure broker (``ssa up --secure``, the
feeder's SCRAM user) uncomment the ``security.protocol``/``sasl.*``/``ssl.ca.location`` lines and
render with the feeder's own raw prefix, ``topic_prefix="ssa.<tenant>.raw."`` (its only raw topics).

**The fetched rsyslog** (``ensure_rsyslog``): the ``rsyslog`` and ``rsyslog-kafka`` packages of the
machine's Debian release, and every shared library they need that the system lacks (``ldd`` after
unpacking: ``libestr0``, ``libfastjson4``, ``librdkafka1`` on a bare bookworm), are downloaded with
``apt-get download`` (no root needed, nothing installed, the system unchanged) and unpacked with
``dpkg-deb -x`` under ``<data_dir>/rsyslog/dist``, once (a marker file records the packages; a
second call reuses the tree). ``RsyslogProcess`` runs ``rsyslogd -n`` from that tree
(``LD_LIBRARY_PATH`` and ``-M <module dir>``) as a managed process of the data dir: pid file under
``run/``, output in ``logs/rsyslog.log``, stopped with SIGTERM (rsyslog then drains its queues).
``RsyslogUnavailable`` says why it cannot be had here (no apt-get, a download that failed, a library
no package provides): the integration test skips with that reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from infra.process import ManagedProcess, ServiceError

__all__ = [
    "PACKAGES",
    "FollowedFile",
    "RsyslogBundle",
    "RsyslogProcess",
    "RsyslogUnavailable",
    "ensure_rsyslog",
    "example_config",
    "render_config",
]

PACKAGES: Final = ("rsyslog", "rsyslog-kafka")
MODULES: Final = ("imfile.so", "omkafka.so")
# Shared objects whose Debian package name does not follow the soname (libfoo.so.N -> libfooN).
_SONAME_PACKAGE: Final = {
    "libcrypto.so.3": "libssl3",
    "libz.so.1": "zlib1g",
    "libsasl2.so.2": "libsasl2-2",
    "liblz4.so.1": "liblz4-1",
    "libcurl.so.4": "libcurl4",
    "libgcrypt.so.20": "libgcrypt20",
    "libgnutls.so.30": "libgnutls30",
}
_NOT_FOUND: Final = re.compile(r"^\s*(\S+) => not found", re.M)
_MAX_ROUNDS: Final = 6
_TIMEOUT_S: Final = 300


class RsyslogUnavailable(RuntimeError):
    """rsyslog cannot be fetched or run on this machine; the message says why, in one line."""


# --- the configuration -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FollowedFile:
    """A log file rsyslog follows and the raw format its lines are (``syslog``, ``auditd``...)."""

    path: str
    format: str


def _quoted(text: str) -> str:
    if '"' in text or "\\" in text or "\n" in text:
        raise ValueError(
            f"{text!r}: quotes, backslashes and newlines are not allowed in rsyslog strings here"
        )
    return f'"{text}"'


def _array(items: Sequence[str]) -> str:
    return "[" + ", ".join(_quoted(i) for i in items) + "]"


def render_config(
    files: Sequence[FollowedFile],
    *,
    brokers: Sequence[str] = ("127.0.0.1:9092",),
    topic_prefix: str = "ssa.raw.",
    work_dir: str = "/var/spool/rsyslog",
) -> str:
    """An rsyslog configuration (RainerScript) shipping ``files`` to the raw topics.

    ``work_dir`` holds imfile's read positions, the action queues' spill files and the records
    Kafka refused; it must exist and be writable by rsyslogd."""
    if not files:
        raise ValueError("no file to follow")
    if not brokers:
        raise ValueError("no Kafka broker")
    formats = sorted({f.format for f in files})
    for name in formats:
        if not re.fullmatch(r"[a-z0-9-]+", name):
            raise ValueError(f"format {name!r}: give an ssa ingest --format name")
    out = [
        "# rsyslog -> ssa raw topics: each line of a followed file becomes one Kafka record, unchanged,",
        f"# on {topic_prefix}<format>, keyed <hostname>:<file>; `ssa parse` turns the records into the",
        "# events `ssa ingest` makes of the same file (same event ids). rsyslog >= 8.1903 with omkafka",
        "# (Debian/Ubuntu: apt install rsyslog rsyslog-kafka). Rendered by infra/rsyslog.py.",
        "# Secure mode: a tenant's feeder writes its own ssa.<tenant>.raw.<format> as feeder-<tenant>",
        "# (render with that topic prefix; a hypervisor: ssa.provider.raw. as feeder-provider).",
        "",
        "global(",
        f"  workDirectory={_quoted(work_dir)}  # read positions, queue spill files, refused records",
        '  maxMessageSize="64k"  # longer lines would be cut (default 8k); auditd EXECVE lines run long',
        '  parser.escapeControlCharactersOnReceive="off"  # keep the bytes as written: ids hash them',
        ")",
        "",
        '# inotify: a new line is read at once (mode="polling" on file systems without inotify)',
        'module(load="imfile" mode="inotify")',
        'module(load="omkafka")',
        "",
        "# The record: the line exactly as the file holds it, without its newline.",
        'template(name="ssa-raw-line" type="string" string="%rawmsg%")',
        "# The key: the source, so one file stays on one partition, in order.",
        'template(name="ssa-raw-key" type="string" string="%hostname%:%$!metadata!filename%")',
        "",
    ]
    for f in files:
        out.append(
            f'input(type="imfile" file={_quoted(f.path)} tag="ssa-{f.format}"'
            f' ruleset="ssa-raw-{f.format}"\n      addMetadata="on" reopenOnTruncate="on")'
        )
    for name in formats:
        out += [
            "",
            f'ruleset(name="ssa-raw-{name}") {{',
            "  action(",
            f'    type="omkafka" name="ssa-raw-{name}"',
            f"    broker={_array(brokers)}",
            f"    topic={_quoted(topic_prefix + name)}",
            '    template="ssa-raw-line"',
            '    key="ssa-raw-key" dynaKey="on" partitions.auto="on"  # partition by the key',
            "    confParam=[",
            '      "enable.idempotence=true",  # no duplicate on a retried send',
            '      "compression.codec=lz4",',
            '      "queue.buffering.max.ms=20"',
            '      # , "security.protocol=SASL_SSL", "sasl.mechanisms=SCRAM-SHA-512",',
            '      # "sasl.username=feeder-<tenant>", "sasl.password=<password>",',
            '      # "ssl.ca.location=/etc/ssa/ca.pem"',
            "    ]",
            '    topicConfParam=["acks=all"]',
            "    # Kafka away: the action is suspended and the lines wait in the queue below, retried",
            "    # for ever; records librdkafka held are resubmitted, and kept in failedMsgFile at shutdown.",
            '    resubmitOnFailure="on" keepFailedMessages="on"',
            f"    failedMsgFile={_quoted(f'{work_dir}/ssa-raw-{name}.failed')}",
            '    action.resumeRetryCount="-1"',
            f'    queue.type="LinkedList" queue.filename="ssa-raw-{name}"',
            '    queue.saveOnShutdown="on" queue.maxDiskSpace="1g"',
            "  )",
            "  stop",
            "}",
        ]
    return "\n".join(out) + "\n"


def example_config() -> str:
    """The documented example: sshd's log and the audit log to a local ``ssa up`` Kafka."""
    return render_config(
        [FollowedFile("/var/log/auth.log", "syslog"), FollowedFile("/var/log/audit/audit.log", "auditd")]
    )


# --- fetching rsyslog --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RsyslogBundle:
    """An unpacked rsyslog: the daemon, its module folder and the library folders it needs."""

    root: Path
    rsyslogd: Path
    module_dir: Path
    lib_dirs: tuple[Path, ...]
    packages: str  # "rsyslog 8.2302.0-1+deb12u2, rsyslog-kafka ..., librdkafka1 ..."

    def env(self) -> dict[str, str]:
        """The environment rsyslogd runs in (the unpacked libraries first)."""
        paths = [str(p) for p in self.lib_dirs]
        if os.environ.get("LD_LIBRARY_PATH"):
            paths.append(os.environ["LD_LIBRARY_PATH"])
        return {**os.environ, "LD_LIBRARY_PATH": ":".join(paths)}

    def command(self, conf: Path, pid_file: Path, *args: str) -> list[str]:
        return [str(self.rsyslogd), *args, "-f", str(conf), "-i", str(pid_file), "-M", str(self.module_dir)]

    def check_config(self, conf: Path) -> None:
        """``rsyslogd -N1``: ``ServiceError`` with rsyslog's own words when the config is wrong."""
        check = subprocess.run(
            [str(self.rsyslogd), "-N1", "-f", str(conf), "-M", str(self.module_dir)],
            env=self.env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        errors = [ln for ln in (check.stdout + check.stderr).splitlines() if "error" in ln.lower()]
        if check.returncode != 0 or errors:
            detail = "; ".join(errors[:3]) or (check.stdout + check.stderr).strip()[-300:]
            raise ServiceError(f"rsyslog refuses {conf}: {detail}")


def _lib_dirs(root: Path) -> tuple[Path, ...]:
    """The multiarch folders (usr/lib/x86_64-linux-gnu...), then usr/lib and lib."""
    found = sorted(p for p in root.glob("usr/lib/*-linux-*") if p.is_dir())
    found += sorted(p for p in root.glob("lib/*-linux-*") if p.is_dir())
    found += [p for p in (root / "usr" / "lib", root / "lib") if p.is_dir()]
    return tuple(found)


def _bundle(root: Path, packages: str) -> RsyslogBundle | None:
    rsyslogd = root / "usr" / "sbin" / "rsyslogd"
    modules = sorted(p.parent for p in root.glob("usr/lib/*/rsyslog/omkafka.so"))
    modules += sorted(p.parent for p in root.glob("usr/lib/rsyslog/omkafka.so"))
    if not rsyslogd.is_file() or not modules or not all((modules[0] / m).is_file() for m in MODULES):
        return None
    return RsyslogBundle(root, rsyslogd, modules[0], _lib_dirs(root), packages)


def _package_of(soname: str) -> str:
    """The Debian package shipping ``soname`` (policy 8.1: libfoo.so.N in libfooN, libfoo2.so.N
    in libfoo2-N), with the known exceptions."""
    if soname in _SONAME_PACKAGE:
        return _SONAME_PACKAGE[soname]
    m = re.fullmatch(r"(.+?)\.so\.(\d+)(?:\..*)?", soname)
    if m is None:
        raise RsyslogUnavailable(f"rsyslog needs {soname}, which no package name can be derived from")
    stem, major = m[1].lower().replace("_", "-"), m[2]
    return f"{stem}-{major}" if stem[-1].isdigit() else f"{stem}{major}"


def _missing(root: Path) -> set[str]:
    """Shared objects the unpacked rsyslogd, its two modules and the unpacked libraries lack."""
    bundle = _bundle(root, "")
    if bundle is None:
        raise RsyslogUnavailable(f"the rsyslog packages hold no usr/sbin/rsyslogd with {', '.join(MODULES)}")
    objects = [bundle.rsyslogd, *(bundle.module_dir / m for m in MODULES)]
    for folder in bundle.lib_dirs:
        objects += [p for p in folder.glob("*.so*") if p.is_file() and not p.is_symlink()]
    missing: set[str] = set()
    for obj in objects:
        out = subprocess.run(
            ["ldd", str(obj)], env=bundle.env(), capture_output=True, text=True, timeout=60, check=False
        )
        missing |= set(_NOT_FOUND.findall(out.stdout))
    return missing


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RsyslogUnavailable(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("E:")] or done.stderr.splitlines()
        raise RsyslogUnavailable(
            f"{what} failed: {(lines[-1] if lines else f'exit {done.returncode}')[:300]}"
        )
    return done.stdout


def _download(packages: Sequence[str], into: Path) -> list[Path]:
    before = set(into.glob("*.deb"))
    # Downloads into the current folder only: nothing is installed, apt's state is untouched.
    _run(["apt-get", "download", "-q", *packages], into, f"apt-get download {' '.join(packages)}")
    got = sorted(set(into.glob("*.deb")) - before)
    if len(got) < len(packages):
        raise RsyslogUnavailable(f"apt-get download {' '.join(packages)} gave {len(got)} package file(s)")
    return got


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two sessions fetching at once: one fetches, one waits
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_rsyslog(cache_dir: Path, say: Callable[[str], None] = print) -> RsyslogBundle:
    """rsyslog and rsyslog-kafka unpacked under ``cache_dir`` (fetched once); ``RsyslogUnavailable``
    when that cannot be done here."""
    root, marker = cache_dir / "root", cache_dir / "packages"
    with _locked(cache_dir / ".lock"):
        if marker.is_file():
            bundle = _bundle(root, marker.read_text().strip())
            if bundle is not None:
                return bundle
        for tool in ("apt-get", "dpkg-deb", "ldd"):
            if shutil.which(tool) is None:
                raise RsyslogUnavailable(f"no {tool} on this machine: rsyslog is fetched as Debian packages")
        staging = cache_dir / f"staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        debs_dir = staging / "debs"
        debs_dir.mkdir(parents=True)
        t0 = time.monotonic()
        try:
            wanted: list[str] = list(PACKAGES)
            fetched: set[str] = set()
            debs: list[Path] = []
            for _ in range(_MAX_ROUNDS):
                new = _download(wanted, debs_dir)
                fetched |= set(wanted)
                for deb in new:
                    _run(
                        ["dpkg-deb", "-x", str(deb), str(staging / "root")],
                        staging,
                        f"dpkg-deb -x {deb.name}",
                    )
                debs += new
                missing = _missing(staging / "root")
                if not missing:
                    break
                wanted = sorted({_package_of(so) for so in missing} - fetched)
                if not wanted:
                    raise RsyslogUnavailable(
                        f"rsyslog still lacks {', '.join(sorted(missing))} after unpacking {', '.join(sorted(fetched))}"
                    )
            else:
                raise RsyslogUnavailable(f"rsyslog's libraries were not complete after {_MAX_ROUNDS} rounds")
            versions = []
            for deb in debs:
                fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], staging, "dpkg-deb -f")
                name_version = dict(ln.split(": ", 1) for ln in fields.splitlines() if ": " in ln)
                versions.append(f"{name_version.get('Package', deb.name)} {name_version.get('Version', '?')}")
            shutil.rmtree(root, ignore_errors=True)
            (staging / "root").rename(root)
            marker.write_text(", ".join(versions) + "\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        bundle = _bundle(root, marker.read_text().strip())
        assert bundle is not None  # checked by _missing above
        say(f"rsyslog: unpacked {bundle.packages} into {root} in {time.monotonic() - t0:.1f} s")
        return bundle


# --- running it --------------------------------------------------------------------------------
@dataclass
class _RsyslogManaged(ManagedProcess):
    conf: Path = Path()

    @property
    def marker(self) -> str:
        # rsyslogd takes no free argument to carry -Dssa.service=...: its own config path names it.
        return f" -f {self.conf} "


class RsyslogProcess:
    """``rsyslogd -n`` with ``conf``, supervised like the stack's services (pid file, log file)."""

    def __init__(
        self, bundle: RsyslogBundle, conf: Path, run_dir: Path, log_dir: Path, name: str = "rsyslog"
    ) -> None:
        self.bundle = bundle
        self.conf = conf.resolve()
        self.proc = _RsyslogManaged(name, run_dir, log_dir, self.conf)

    @property
    def log_file(self) -> Path:
        return self.proc.log_file

    def start(self) -> int:
        """Check the config, start the daemon, and wait until it is up (its own pid file)."""
        if self.proc.pid() is not None:
            raise ServiceError(f"{self.proc.name} already runs (pid {self.proc.pid()}) with {self.conf}")
        self.bundle.check_config(self.conf)
        own_pid = self.proc.run_dir / f"{self.proc.name}.rsyslogd.pid"
        own_pid.unlink(missing_ok=True)
        pid = self.proc.start(
            self.bundle.command(self.conf, own_pid, "-n"), cwd=self.proc.run_dir, env=self.bundle.env()
        )
        self.proc.wait_until(own_pid.exists, 30, "started")
        return pid

    def pid(self) -> int | None:
        return self.proc.pid()

    def alive(self) -> bool:
        return self.proc.alive()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM (rsyslog drains its queues and saves what it could not send), then SIGKILL."""
        return self.proc.stop(timeout_s)


if __name__ == "__main__":
    print(example_config(), end="")
