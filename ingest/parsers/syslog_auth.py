"""sshd and syslog (RFC 3164, RFC 3339-stamped, RFC 5424) -> auth events.

Events, one per authentication *attempt*:
- sshd ``Failed <method> for [invalid user ]U from IP port P`` (failure) and ``Accepted <method> for
  U from IP port P`` (success; ``publickey`` key details go to ``extra``);
- sshd ``Invalid user U from IP``: a failure (method ``none``) for the connection, unless the same
  sshd process then logs a ``Failed ... for invalid user`` line, which is that attempt: the notice
  is then folded into it (counted as skipped) so a guessed user name is not counted twice;
- PAM ``authentication failure; ... rhost=H user=U`` from a PAM ident (``sshd(pam_unix)``,
  ``su(pam_unix)``, ``login``...) where it is the only record of the attempt. The same line
  inside sshd's own process (``sshd[pid]: pam_unix(sshd:auth): ...``) is followed by sshd's
  ``Failed`` line for the same attempt, and ``PAM N more authentication failures`` sums up
  attempts already logged: both are counted as skipped, not events;
- ``message repeated N times: [ msg ]`` stands for N identical lines: N events (ids differ), one
  skip when the message is not an auth attempt, the DLQ when N is 0. At most ``_MAX_REPEAT`` (100)
  events a line; a line over it also counts a skip (``repeat count over 100``): the line is a few
  dozen bytes, and every event it becomes is work for the job all tenants share (the cap was 10,000
  until 2026-12-06: a 1 MB feed of such lines was some 100 million events). Real repeats of an auth
  line are few: rsyslog and syslog-ng fold only consecutive identical messages, and sshd's
  ``Failed`` lines differ in the client's port between connections, so one connection's tries
  (``MaxAuthTries``, 6 by default) repeat. 100 is ten times the sshd-log rule's bar
  (``brute_force.auth_failures``: 10 failures, 5 spread);
- ``ROOT LOGIN ON tty``, ``ANONYMOUS FTP LOGIN FROM IP``, ``Authentication failed from IP``.

Every other well-formed syslog line (kernel, cron, sessions, disconnects...) is counted as
skipped with its program in the reason; only lines that are not syslog at all go to the DLQ.
RFC 3164 has no year and no zone: the year comes from ``ParseContext.year`` (or the reference
time), the zone from ``ParseContext.timezone`` (``--tz``; UTC by default). ``rhost`` names that
are not addresses are kept in ``extra``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from datetime import UTC
from typing import Any, ClassVar, Final
from zoneinfo import ZoneInfo

from ingest.parsers.base import Output, ParseContext, Parser
from ingest.parsers.flowutil import BadField, unexpected, valid_ip
from ingest.parsers.syslog_time import BadSyslogHeader, SyslogLine, YearGuesser, split_syslog
from ingest.schema import AuthEvent, event_id

__all__ = ["SyslogAuthParser"]

_FAILED_ACCEPTED: Final = re.compile(
    r"(?P<verdict>Failed|Accepted) (?P<method>[\w/-]+) for (?P<invalid>invalid user )?(?P<user>.*?) "
    r"from (?P<ip>\S+)(?: port (?P<port>\d+))?(?: (?P<proto>ssh\d?))?(?:: (?P<key>.*))?\s*$"
)
_INVALID: Final = re.compile(r"[Ii]nvalid user (?P<user>.*?) from (?P<ip>\S+)(?: port (?P<port>\d+))?\s*$")
_PAM_FAILURE: Final = re.compile(
    r"(?:pam_unix\((?P<svc>[^:)]+):auth\): )?authentication failure; (?P<kv>.*)$"
)
_PAM_MORE: Final = re.compile(r"PAM \d+ more authentication failures?;")
_REPEATED: Final = re.compile(r"message repeated (?P<n>\d+) times: \[ ?(?P<msg>.*?) ?\]\s*$")
_KV: Final = re.compile(r"(\w+)=(\S*)")
_ROOT_LOGIN: Final = re.compile(r"ROOT LOGIN ON (?P<tty>\S+)")
_FTP_ANON: Final = re.compile(r"ANONYMOUS FTP LOGIN FROM (?P<ip>[^\s,]+)")
_AUTH_FAILED_FROM: Final = re.compile(r"Authentication failed from (?P<ip>[^\s(]+)")
_SSHD_END: Final = re.compile(r"^(Connection closed|Received disconnect|Disconnected|Disconnecting|fatal:)")
_MAX_PENDING: Final = 4096
_MAX_REPEAT: Final = 100  # events one 'message repeated N times' line may become (docstring)


class SyslogAuthParser(Parser):
    source: ClassVar[str] = "sshd"

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)
        zone = ZoneInfo(self.ctx.timezone) if self.ctx.timezone else UTC
        self.years = YearGuesser(self.ctx.year, self.ctx.now_ms(), zone)
        # (host, pid) -> the "Invalid user" event waiting to see whether a Failed line follows
        self.pending: OrderedDict[tuple[str, int | None], AuthEvent] = OrderedDict()

    def feed(self, line: bytes, lineno: int, offset: int) -> None:
        try:
            self._feed(line, lineno, offset)
        except (BadSyslogHeader, BadField) as exc:
            self.reject(str(exc), line, lineno, offset)
        except Exception as exc:  # one line never ends a file
            self.reject(unexpected(exc, "syslog"), line, lineno, offset)

    def _feed(self, line: bytes, lineno: int, offset: int) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.reject(f"invalid UTF-8 at byte {exc.start}", line, lineno, offset)
            return
        if not text.strip():
            self.skip("blank line")
            return
        head = split_syslog(text, self.years)
        if head is None:
            self.reject("not a syslog line (RFC 3164 or RFC 5424 header expected)", line, lineno, offset)
            return
        repeated = _REPEATED.match(head.msg)
        if repeated is not None:
            digits = repeated["n"].lstrip("0")
            if not digits:
                raise BadField("bad repeat count 0 in 'message repeated N times'")
            over = len(digits) > 5 or int(digits) > _MAX_REPEAT  # no int() of a huge digit string
            count = _MAX_REPEAT if over else int(digits)
            inner = head._replace(msg=repeated["msg"])
            if not self._message(inner, line + b"#0"):
                self.skip(f"{_program(head)}: repeated non-auth message")
                return
            for i in range(1, count):
                self._message(inner, line + b"#%d" % i)
            if over:
                self.skip(f"{_program(head)}: repeat count over {_MAX_REPEAT}, read as {_MAX_REPEAT}")
            return
        if not self._message(head, line):
            self.skip(self._skip_reason(head))

    def close(self) -> None:
        while self.pending:
            self.out.event(self.pending.popitem(last=False)[1])

    def _skip_reason(self, head: SyslogLine) -> str:
        program = _program(head)
        if program == "sshd" and _PAM_MORE.match(head.msg):
            return "sshd: PAM summary of failures already counted"
        if head.program == "sshd" and _PAM_FAILURE.match(head.msg):
            return "sshd: PAM failure counted from sshd's Failed line"
        if head.program == "sshd" and _SSHD_END.match(head.msg):
            self._release(head)
        return f"{program or 'untagged'}: not an auth attempt"

    def _message(self, head: SyslogLine, raw: bytes) -> bool:
        """Emit the event(s) of one message; False when the message is not an auth attempt."""
        msg, program = head.msg, _program(head)
        m = _FAILED_ACCEPTED.search(msg)
        if m is not None and program in ("sshd", ""):
            pending = self.pending.pop((head.host, head.pid), None)
            if pending is not None and m["invalid"]:
                self.skip("sshd: Invalid user notice folded into its Failed line")
            elif pending is not None:
                self.out.event(pending)
            extra: dict[str, Any] = {"event": m["verdict"].lower()}
            if m["invalid"]:
                extra["invalid_user"] = True
            if m["key"]:
                extra["key"] = m["key"]
            self._emit(
                head, raw, m["user"], m["ip"], m["port"], m["method"], m["verdict"] == "Accepted", extra
            )
            return True
        m = _INVALID.match(msg)
        if m is not None and program in ("sshd", ""):
            event = self._event(
                head, raw, m["user"], m["ip"], m["port"], "none", False, {"event": "invalid_user"}
            )
            old = self.pending.pop((head.host, head.pid), None)
            if old is not None:
                self.out.event(old)
            self.pending[(head.host, head.pid)] = event
            while len(self.pending) > _MAX_PENDING:
                self.out.event(self.pending.popitem(last=False)[1])
            return True
        m = _PAM_FAILURE.match(msg)
        if m is not None and head.program != "sshd":  # sshd's own process logs a Failed line too
            kv = dict(_KV.findall(m["kv"]))
            service = (m["svc"] or program.split("(", 1)[0] or "pam").lower()
            extra = {
                "event": "pam_failure",
                **{k: v for k, v in kv.items() if v and k not in ("user", "rhost")},
            }
            self._emit(
                head,
                raw,
                kv.get("user") or "unknown",
                kv.get("rhost"),
                None,
                "password",
                False,
                extra,
                service,
            )
            return True
        m = _ROOT_LOGIN.search(msg)
        if m is not None:
            self._emit(head, raw, "root", None, None, "console", True, {"tty": m["tty"]}, "login")
            return True
        m = _FTP_ANON.search(msg)
        if m is not None:
            self._emit(head, raw, "anonymous", m["ip"], None, "anonymous", True, {}, "ftp")
            return True
        m = _AUTH_FAILED_FROM.match(msg)
        if m is not None:
            service = program.split("(", 1)[0] or "unknown"
            self._emit(
                head, raw, "unknown", m["ip"], None, "password", False, {"message": msg[:200]}, service
            )
            return True
        return False

    def _release(self, head: SyslogLine) -> None:
        pending = self.pending.pop((head.host, head.pid), None)
        if pending is not None:
            self.out.event(pending)

    def _emit(self, head: SyslogLine, raw: bytes, user: str, ip: str | None, port: str | None, method: str,
              ok: bool, extra: dict[str, Any], service: str | None = None) -> None:  # fmt: skip
        self.out.event(self._event(head, raw, user, ip, port, method, ok, extra, service))

    def _event(self, head: SyslogLine, raw: bytes, user: str, ip: str | None, port: str | None, method: str,
               ok: bool, extra: dict[str, Any], service: str | None = None) -> AuthEvent:  # fmt: skip
        if ip and not valid_ip(ip):
            extra["rhost"] = ip
        ip = ip if ip and valid_ip(ip) else None
        if port:
            if len(port) > 5 or int(port) > 65535:
                raise BadField(f"bad port {port[:40]}")
            extra["src_port"] = int(port)
        if head.pid is not None:
            extra["pid"] = head.pid
        if head.structured:
            extra["structured_data"] = head.structured
        tenant, vm, host = self.node_owner(head.host)
        return AuthEvent(
            id=event_id("sshd", raw), ts=head.ts, source="sshd", tenant=tenant, host=host, vm=vm,
            user=user, src_ip=ip, service=service or _program(head) or "sshd", method=method,
            result="success" if ok else "failure", extra=extra,
        )  # fmt: skip


def _program(head: SyslogLine) -> str:
    """The program without a PAM module suffix: ``sshd(pam_unix)`` -> ``sshd``."""
    return head.program.split("(", 1)[0]
