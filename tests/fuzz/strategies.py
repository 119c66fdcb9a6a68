"""Hypothesis strategies for hostile inputs: the seed inputs of a format (``seeds``) mutated line
by line (byte flips, truncations, inserted bytes, a field replaced by a hostile value, JSON values
replaced by hostile ones, deep nesting), and NetFlow/IPFIX packets built field by field with
hostile values and broken framing."""

from __future__ import annotations

import json
import re
import struct
from typing import Any, Final

from hypothesis import strategies as st

from tests.fuzz.seeds import seed_inputs, split_records
from tests.samples.netflow_gen import ipfix_packet, pcap_file, v5_packet, v9_packet

__all__ = ["HOSTILE_TOKENS", "hostile_input", "netflow_input"]

HOSTILE_TOKENS: Final = (
    "-1", "0", "-0", "+80", "80.9", "1e300", "1E5", str(10**301), "4294967295", "18446744073709551616",
    "9223372036854775808", "-9223372036854775809", "65536", "70000", "999", "256", "true", "false",
    "null", "NaN", "inf", "-Infinity", "", " ", "abc", "0x10", "1_000", "１２", "٣", "\x00", "A" * 3000,
    "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-13-45T99:99:99Z",
    "2024-03-05T10:00:00.Z", "-62135596800", "253402300800", "0.0.0.0", "::", "999.1.1.1", "10.1.0",
    "%s%n", "\\x0", "\u202e", "\ud800",
)  # fmt: skip
_TOKEN: Final = re.compile(rb'[^\s,|"=:\[\]{}()]+')
_BAD_BYTES: Final = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\t", b'"', b"\\", b"#", b",")

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**301, -(10**301), 2**63, 2**64, -1, 0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(HOSTILE_TOKENS),
    st.text(max_size=12),
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _replace_token(line: bytes, index: int, value: str) -> bytes:
    spans = [m.span() for m in _TOKEN.finditer(line)]
    if not spans:
        return line + value.encode("utf-8", "surrogatepass")
    start, end = spans[index % len(spans)]
    return line[:start] + value.encode("utf-8", "surrogatepass") + line[end:]


def _containers(value: Any, found: list[Any]) -> list[Any]:
    if isinstance(value, dict | list):
        found.append(value)
        for child in value.values() if isinstance(value, dict) else value:
            _containers(child, found)
    return found


@st.composite
def _json_mutation(draw: st.DrawFn, line: bytes) -> bytes:
    """A JSON line with one value (or key) replaced by a hostile one; other input unchanged."""
    try:
        value = json.loads(line)
    except ValueError:
        return line
    containers = _containers(value, [])
    if not containers:
        return json.dumps(draw(_json_value)).encode()
    target = draw(st.sampled_from(containers))
    hostile = draw(_json_value)
    if isinstance(target, dict):
        existing: bool = bool(target) and draw(st.booleans())
        key = draw(st.sampled_from(list(target))) if existing else draw(st.text(max_size=8))
        target[key] = hostile
    elif target:
        target[draw(st.integers(0, len(target) - 1))] = hostile
    else:
        target.append(hostile)
    return json.dumps(value).encode()


@st.composite
def _mutated_line(draw: st.DrawFn, line: bytes) -> bytes:
    kind = draw(st.sampled_from(("token", "token", "json", "flip", "cut", "insert", "nest", "keep")))
    at = draw(st.integers(0, max(len(line), 1)))
    if kind == "token":
        return _replace_token(line, at, draw(st.sampled_from(HOSTILE_TOKENS) | st.text(max_size=8)))
    if kind == "json":
        return draw(_json_mutation(line))
    if kind == "flip" and line:
        i = at % len(line)
        return line[:i] + bytes([line[i] ^ draw(st.integers(1, 255))]) + line[i + 1 :]
    if kind == "cut":
        return line[:at]
    if kind == "insert":
        return line[:at] + draw(st.sampled_from(_BAD_BYTES) | st.binary(max_size=8)) + line[at:]
    if kind == "nest":
        depth = draw(st.integers(1, 200))
        return line[:at] + b"[" * depth + b"1" + b"]" * depth + line[at:]
    return line


@st.composite
def hostile_input(draw: st.DrawFn, fmt: str) -> bytes:
    """A seed input of ``fmt`` with some lines mutated, dropped or repeated; or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    _, data = draw(st.sampled_from(seed_inputs(fmt)))
    lines = split_records(data)
    out: list[bytes] = []
    for line in lines:
        roll = draw(st.integers(0, 9))
        if roll == 0:
            continue  # dropped (a header too, sometimes)
        out.append(draw(_mutated_line(line)) if roll <= 3 else line)
        if roll == 9 and draw(st.booleans()):
            out.append(line)  # repeated
    return b"\n".join(out) + (b"\n" if draw(st.booleans()) else b"")


# --- NetFlow / IPFIX built field by field -------------------------------------------------------
_ip = st.sampled_from(("10.1.0.5", "10.2.0.7", "0.0.0.0", "255.255.255.255", "198.51.100.9"))
_flow = st.tuples(
    _ip, _ip, st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 255),
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
)  # fmt: skip
_field = st.tuples(st.sampled_from((1, 2, 4, 6, 7, 8, 11, 12, 21, 22, 27, 28, 150, 152, 153, 999)),
                   st.sampled_from((0, 1, 2, 3, 4, 5, 7, 8, 16, 17)))  # fmt: skip


@st.composite
def _custom_template_packet(draw: st.DrawFn) -> bytes:
    """A v9 or IPFIX packet whose template has any fields and lengths (zero fields, odd lengths),
    followed by a data set of any length."""
    ipfix = draw(st.booleans())
    fields = draw(st.lists(_field, max_size=6))
    tid = draw(st.sampled_from((256, 300, 65535)))
    template = struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", t, n) for t, n in fields)
    sets = struct.pack("!HH", 2 if ipfix else 0, 4 + len(template)) + template
    body = draw(st.binary(max_size=64))
    sets += struct.pack("!HH", tid, 4 + len(body)) + body
    if ipfix:
        return struct.pack("!HHIII", 10, 16 + len(sets), draw(st.integers(0, 2**32 - 1)), 0, 7) + sets
    head = struct.pack("!HHIIII", 9, draw(st.integers(0, 9)), draw(st.integers(0, 2**32 - 1)),
                       draw(st.integers(0, 2**32 - 1)), 0, 1)  # fmt: skip
    return head + sets


@st.composite
def _packet(draw: st.DrawFn) -> bytes:
    flows = draw(st.lists(_flow, min_size=0, max_size=4))
    secs = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(("v5", "v9", "ipfix", "custom", "raw")))
    if kind == "v5":
        return v5_packet(flows, secs, draw(st.integers(0, 2**32 - 1)))
    if kind == "v9":
        return v9_packet(flows, secs, draw(st.integers(0, 2**32 - 1)), with_template=draw(st.booleans()))
    if kind == "ipfix":
        absolute = [(*f[:7], draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1))) for f in flows]
        return ipfix_packet(absolute, secs, with_template=draw(st.booleans()))
    if kind == "custom":
        return draw(_custom_template_packet())
    return draw(st.binary(max_size=64))


@st.composite
def netflow_input(draw: st.DrawFn) -> bytes:
    """Concatenated packets or a pcap of them, then maybe a flipped byte or a cut."""
    packets = draw(st.lists(_packet(), min_size=1, max_size=4))
    if draw(st.booleans()):
        data = pcap_file([("192.0.2.1", p) for p in packets])
        if draw(st.booleans()):  # a record header claiming a huge capture length
            data = data[:24] + struct.pack("<IIII", 0, 0, draw(st.integers(0, 2**32 - 1)), 60) + data[40:]
    else:
        data = b"".join(packets)
    if data and draw(st.booleans()):
        i = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
        else:
            data = data[:i]
    return data
