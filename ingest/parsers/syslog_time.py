"""Syslog line headers: RFC 3164 (BSD, no year, no zone), RFC 3339-stamped (rsyslog) and RFC 5424."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Final, NamedTuple

from ingest.parsers.base import ms_from_iso

__all__ = ["BadSyslogHeader", "SyslogLine", "YearGuesser", "split_syslog"]

_MONTH_NAMES: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS: Final = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_PRI: Final = r"(?:<(?P<pri>\d{1,3})>)?"
_BSD: Final = re.compile(
    _PRI + r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?:\.\d+)?"
    r" +(?P<host>\S+) +(?P<rest>.*)",
    re.S,
)
_ISO: Final = re.compile(
    _PRI + r"(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) +(?P<host>\S+) +(?P<rest>.*)", re.S
)
_SD_ELEMENT: Final = r'\[[^\]"\s=]+(?: [^=\s\]"]+="(?:[^"\\]|\\.)*")*\]'
_5424: Final = re.compile(
    r"<(?P<pri>\d{1,3})>(?P<ver>\d{1,2}) (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+)"
    r" (?P<msgid>\S+) (?P<sd>-|(?:" + _SD_ELEMENT + r")+)(?: (?P<msg>.*))?$",
    re.S,
)
_TAG: Final = re.compile(r"(?P<tag>[^:\[\s(]+(?:\([^)]*\))?)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)", re.S)


_PID_MAX: Final = 2**32 - 1


class BadSyslogHeader(ValueError):
    """A syslog header field that cannot be read (an impossible date, a pid out of range); the
    message is the DLQ reason, in our words."""


class SyslogLine(NamedTuple):
    ts: int
    host: str
    program: str  # "sshd", "su(pam_unix)", "" when the line has no tag
    pid: int | None
    msg: str
    structured: str | None  # RFC 5424 structured data, verbatim


class YearGuesser:
    """Completes RFC 3164 dates, read in ``zone`` (the sender's local time; UTC unless told). With a
    given year, a month going back (Dec -> Jan) moves to the next year. Without one, the year is
    the reference time's, minus one when that would put the line more than a day in the future."""

    def __init__(self, year: int | None, reference_ms: int, zone: tzinfo = UTC) -> None:
        self.fixed = year
        self.reference_ms = reference_ms
        self.zone = zone
        self.ref = datetime.fromtimestamp(reference_ms / 1000, zone)
        self.last_month = 0
        self.bump = 0

    def ms(self, month: int, day: int, hms: str) -> int:
        hour, minute, second = int(hms[:2]), int(hms[3:5]), int(hms[6:8])
        if self.fixed is not None:
            if self.last_month == 12 and month == 1:
                self.bump += 1
            self.last_month = month
            year = self.fixed + self.bump
        else:
            year = self.ref.year
            if (
                datetime(year, month, day, tzinfo=self.zone).timestamp() * 1000
                > self.reference_ms + 86_400_000
            ):
                year -= 1
        dt = datetime(year, month, day, hour, minute, second, tzinfo=self.zone)
        return int(dt.timestamp()) * 1000


def split_syslog(text: str, years: YearGuesser) -> SyslogLine | None:
    """Header fields of one syslog line, or None when it is not syslog. Raises ``BadSyslogHeader``
    on an impossible date (Feb 30) or pid."""
    if text[:1] == "<":
        m5 = _5424.match(text)
        if m5 is not None:
            ts = _iso_ms(m5["ts"]) if m5["ts"] != "-" else years.reference_ms
            app, procid = m5["app"], m5["procid"]
            msg = (m5["msg"] or "").removeprefix("\ufeff")
            pid = _pid(procid) if procid.isascii() and procid.isdigit() else None
            return SyslogLine(
                ts, m5["host"], "" if app == "-" else app, pid, msg, None if m5["sd"] == "-" else m5["sd"]
            )
    m = _BSD.match(text)
    if m is not None:
        month = _MONTHS.get(m["mon"])
        if month is None:
            return None
        try:
            ts = years.ms(month, int(m["day"]), m["hms"])
        except (ValueError, OverflowError):  # datetime's wording stays out of the reason
            raise BadSyslogHeader(f"bad syslog timestamp {m['mon']} {m['day']} {m['hms']}") from None
    else:
        m = _ISO.match(text)
        if m is None:
            return None
        ts = _iso_ms(m["iso"])
    rest = m["rest"]
    tag = _TAG.match(rest)
    if tag is None:
        return SyslogLine(ts, m["host"], "", None, rest, None)
    tag_pid = tag["pid"]
    return SyslogLine(ts, m["host"], tag["tag"], _pid(tag_pid) if tag_pid else None, tag["msg"], None)


def _iso_ms(text: str) -> int:
    try:
        return ms_from_iso(text)
    except ValueError:
        raise BadSyslogHeader(f"bad syslog timestamp {text[:40]!r}") from None


def _pid(text: str) -> int:
    if len(text) > 10 or int(text) > _PID_MAX:
        raise BadSyslogHeader(f"bad syslog pid {text[:40]}")
    return int(text)
