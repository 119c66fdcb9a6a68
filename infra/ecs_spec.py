"""Elastic Common Schema field definitions, from Elastic's own published package, pinned.

The ECS fields our alert and incident documents carry (``detectors/ecs.py``) and the mapping the
alerts template gives them (``ECS_MAPPED_FIELDS`` below, used by ``infra/bootstrap.py``) are checked
by ``tests/test_ecs_fields.py`` against ECS's published definitions, not against a list of ours.

The artifact: the npm package ``@elastic/ecs`` (Elastic's TypeScript/JavaScript build of the ECS
definitions, generated from ``generated/ecs/ecs_flat.yml`` of github.com/elastic/ecs by
github.com/elastic/ecs-typescript), version ``ECS_PACKAGE_VERSION``, whose tarball is pinned by
``ECS_PACKAGE_SHA256`` (the registry's ``dist.shasum`` of the same tarball is
``896460bf07dd3a37eb1e21a3165ee49bdfca741d``). It carries ``EcsVersion`` (checked to equal
``ECS_VERSION``) and ``EcsFlat``: one entry per field, keyed by its dotted name, with ``type``,
``normalize`` (``["array"]`` for fields that hold arrays), and ``allowed_values`` (the
categorization fields' vocabularies, with ``expected_event_types`` per ``event.category`` value).
The package ships that object as a JavaScript module (``build/commonjs/ecs_flat.js``), not as
YAML, so ``_parse_js_literal`` reads it: a strict reader of the object-literal subset the
generator writes (objects, arrays, quoted strings with JavaScript escapes, bare keys, numbers,
``true``/``false``/``null``, trailing commas) that evaluates nothing and refuses anything else.
The package's ``generated/*.js`` files are stale (``EcsVersion`` 8.12.0-dev in 9.4.0); the build
the package's ``main`` loads (``build/commonjs``) is the one read.

Fetching (``python -m infra.ecs_spec``, or ``load_spec(fetch=True)``): ``npm pack
@elastic/ecs@<version>`` (the ordinary npm client: the tarball as the registry serves it) into the
git-ignored cache ``.cache/ecs/``, then the sha256 is verified before the file takes its final
name; a tarball with another digest is deleted and refused. Reading: the tarball's size is capped
(``MAX_TARBALL_BYTES``), only the two members named above are read (never extracted to disk), each
under ``MAX_MEMBER_BYTES``. Nothing else in the project needs the network for ECS: the template's
mapping is code, checked by the test.

Errors: ``EcsSpecError`` (bad digest, malformed package, npm missing), and its subclass
``EcsSpecUnavailable`` when the registry cannot be reached (the only case a test may skip on).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from infra.settings import PROJECT_ROOT

__all__ = [
    "CACHE_DIR",
    "ECS_MAPPED_FIELDS",
    "ECS_PACKAGE",
    "ECS_PACKAGE_SHA256",
    "ECS_PACKAGE_VERSION",
    "ECS_VERSION",
    "EcsField",
    "EcsSpec",
    "EcsSpecError",
    "EcsSpecUnavailable",
    "ecs_properties",
    "fetch_package",
    "load_spec",
    "main",
    "parse_package",
]

ECS_PACKAGE: Final = "@elastic/ecs"
ECS_PACKAGE_VERSION: Final = "9.4.0"
ECS_VERSION: Final = "9.4.0"  # EcsVersion inside that package; detectors.ecs.ECS_VERSION must match
ECS_PACKAGE_SHA256: Final = "1c7863cd70f9d52365570fa38a9c39f3d056511fefe4e36a51d2ad7f142ac071"
CACHE_DIR: Final = PROJECT_ROOT / ".cache" / "ecs"
MAX_TARBALL_BYTES: Final = 16 * 1024 * 1024  # 9.4.0: 1.18 MB
MAX_MEMBER_BYTES: Final = 16 * 1024 * 1024  # 9.4.0: ecs_flat.js 1.54 MB
_FLAT_MEMBER: Final = "package/build/commonjs/ecs_flat.js"
_INDEX_MEMBER: Final = "package/build/commonjs/index.js"
_NPM_TIMEOUT_S: Final = 180
# npm's error codes for a registry it could not reach (as opposed to one that said no).
_UNREACHABLE = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|"
    r"network request|socket hang up|request to .* failed"
)

# The ECS fields the alerts template maps, with ECS's type for each, as the template writes it.
# ``message`` is ECS ``match_only_text``; the template maps it ``text`` (same family, same
# queries): ``match_only_text`` lives in Elasticsearch's mapper-extras module, which the local
# node (server jar + transport-netty4 only) does not load. The test checks every entry against
# the spec (same type, or ``text`` for ``match_only_text``) and that every field
# ``detectors.ecs`` writes is here.
ECS_MAPPED_FIELDS: Final[Mapping[str, str]] = {
    "@timestamp": "date",
    "ecs.version": "keyword",
    "message": "text",
    "event.kind": "keyword",
    "event.category": "keyword",
    "event.type": "keyword",
    "event.id": "keyword",
    "event.dataset": "keyword",
    "event.module": "keyword",
    "event.severity": "long",
    "event.risk_score": "float",
    "event.risk_score_norm": "float",
    "event.start": "date",
    "event.end": "date",
    "event.duration": "long",
    "rule.id": "keyword",
    "rule.name": "keyword",
    "rule.version": "keyword",
    "rule.category": "keyword",
    "rule.ruleset": "keyword",
    "threat.framework": "keyword",
    "threat.tactic.id": "keyword",
    "threat.tactic.name": "keyword",
    "threat.tactic.reference": "keyword",
    "threat.technique.id": "keyword",
    "threat.technique.name": "keyword",
    "threat.technique.reference": "keyword",
    "threat.technique.subtechnique.id": "keyword",
    "threat.technique.subtechnique.name": "keyword",
    "threat.technique.subtechnique.reference": "keyword",
    "source.ip": "ip",
    "source.port": "long",
    "destination.ip": "ip",
    "destination.port": "long",
    "cloud.account.id": "keyword",
    "cloud.instance.id": "keyword",
    "organization.id": "keyword",
    "organization.name": "keyword",
    "host.id": "keyword",
    "host.name": "keyword",
    "user.name": "keyword",
    "related.ip": "ip",
    "related.hosts": "keyword",
    "related.user": "keyword",
}


def ecs_properties() -> dict[str, Any]:
    """``ECS_MAPPED_FIELDS`` as nested Elasticsearch mapping properties (dates take both epoch
    milliseconds and ISO 8601, keywords ``ignore_above`` 1024 as ECS's own templates)."""
    props: dict[str, Any] = {}
    for name, typ in ECS_MAPPED_FIELDS.items():
        if typ == "date":
            leaf: dict[str, Any] = {"type": "date", "format": "epoch_millis||strict_date_optional_time"}
        elif typ == "keyword":
            leaf = {"type": "keyword", "ignore_above": 1024}
        else:
            leaf = {"type": typ}
        node = props
        *parents, last = name.split(".")
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[last] = leaf
    return props


class EcsSpecError(RuntimeError):
    """The ECS definitions cannot be had or are not what was pinned; the message says why."""


class EcsSpecUnavailable(EcsSpecError):
    """Not cached and the package registry could not be reached."""


@dataclass(frozen=True)
class EcsField:
    name: str
    type: str
    array: bool  # ECS ``normalize: [array]``
    allowed_values: tuple[str, ...] | None  # the categorization fields' vocabularies
    expected_event_types: Mapping[str, tuple[str, ...]]  # event.category value -> event.type values


@dataclass(frozen=True)
class EcsSpec:
    version: str
    fields: Mapping[str, EcsField]

    @property
    def top_level_names(self) -> frozenset[str]:
        """First name of every ECS field (``event``, ``host``, ``message``, ``@timestamp`` ...)."""
        return frozenset(name.split(".", 1)[0] for name in self.fields)


def _cached_path(cache_dir: Path) -> Path:
    return cache_dir / f"elastic-ecs-{ECS_PACKAGE_VERSION}.tgz"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_package(cache_dir: Path = CACHE_DIR) -> Path:
    """The pinned tarball in ``cache_dir``, fetched with ``npm pack`` if absent; digest verified."""
    target = _cached_path(cache_dir)
    if target.exists():
        _verify(target)
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise EcsSpecError(
            f"npm is required to fetch {ECS_PACKAGE}@{ECS_PACKAGE_VERSION} (install Node.js/npm), "
            f"or place the tarball at {target}"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as tmp:
        cmd = [npm, "pack", f"{ECS_PACKAGE}@{ECS_PACKAGE_VERSION}", "--pack-destination", tmp,
               "--loglevel=error", "--fetch-retries=1", "--fetch-timeout=30000", "--ignore-scripts"]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=_NPM_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise EcsSpecUnavailable(f"npm pack {ECS_PACKAGE} timed out after {_NPM_TIMEOUT_S} s") from exc
        if done.returncode != 0:
            lines = (done.stderr or done.stdout or "").strip().splitlines()
            said = [ln for ln in lines if re.search(r"npm error (code|\d{3}|FetchError|404)", ln)][:3]
            kind = EcsSpecUnavailable if _UNREACHABLE.search(done.stderr or "") else EcsSpecError
            detail = " | ".join(said or lines[-2:]) or f"exit {done.returncode}"
            raise kind(f"npm pack {ECS_PACKAGE}@{ECS_PACKAGE_VERSION} failed: {detail}")
        packed = list(Path(tmp).glob("*.tgz"))
        if len(packed) != 1:
            raise EcsSpecError(f"npm pack left {len(packed)} tarballs, expected 1")
        _verify(packed[0])
        packed[0].replace(target)
    return target


def _verify(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_TARBALL_BYTES:
        raise EcsSpecError(f"{path}: {size} bytes, over the {MAX_TARBALL_BYTES}-byte limit")
    digest = _sha256(path)
    if digest != ECS_PACKAGE_SHA256:
        path.unlink(missing_ok=True)
        raise EcsSpecError(
            f"{path}: sha256 {digest} is not the pinned {ECS_PACKAGE_SHA256} of "
            f"{ECS_PACKAGE}@{ECS_PACKAGE_VERSION}; the file was deleted"
        )


def _read_member(tar: tarfile.TarFile, name: str) -> str:
    try:
        info = tar.getmember(name)
    except KeyError as exc:
        raise EcsSpecError(f"{ECS_PACKAGE} tarball has no {name}") from exc
    if not info.isfile() or info.size > MAX_MEMBER_BYTES:
        raise EcsSpecError(f"{name}: not a regular file under {MAX_MEMBER_BYTES} bytes")
    fh = tar.extractfile(info)
    if fh is None:
        raise EcsSpecError(f"{name}: unreadable")
    return fh.read(MAX_MEMBER_BYTES + 1).decode("utf-8")


def parse_package(data: bytes) -> EcsSpec:
    """The field definitions in a ``@elastic/ecs`` tarball's bytes."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        flat_js = _read_member(tar, _FLAT_MEMBER)
        index_js = _read_member(tar, _INDEX_MEMBER)
    match = re.search(r"exports\.EcsVersion\s*=\s*'([^']+)'", index_js)
    version = match.group(1) if match else None
    if version != ECS_VERSION:
        raise EcsSpecError(f"{_INDEX_MEMBER}: EcsVersion {version!r}, expected {ECS_VERSION!r}")
    start = flat_js.find("exports.EcsFlat = {")
    if start < 0:
        raise EcsSpecError(f"{_FLAT_MEMBER}: no 'exports.EcsFlat = {{'")
    raw, _end = _parse_js_literal(flat_js, start + len("exports.EcsFlat = "))
    if not isinstance(raw, dict) or not raw:
        raise EcsSpecError(f"{_FLAT_MEMBER}: EcsFlat is not a non-empty object")
    fields: dict[str, EcsField] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise EcsSpecError(f"{_FLAT_MEMBER}: field {name!r} has no type")
        allowed = entry.get("allowed_values")
        values = tuple(str(v["name"]) for v in allowed) if isinstance(allowed, list) else None
        expected = {
            str(v["name"]): tuple(str(t) for t in v.get("expected_event_types", ()))
            for v in (allowed if isinstance(allowed, list) else ())
            if v.get("expected_event_types")
        }
        fields[name] = EcsField(
            name=name,
            type=entry["type"],
            array="array" in (entry.get("normalize") or ()),
            allowed_values=values,
            expected_event_types=expected,
        )
    return EcsSpec(version=version, fields=fields)


@lru_cache(maxsize=2)
def _load_cached(path: str) -> EcsSpec:
    return parse_package(Path(path).read_bytes())


def load_spec(cache_dir: Path = CACHE_DIR, *, fetch: bool = True) -> EcsSpec:
    """The pinned ECS definitions: from the cache, else fetched (``fetch``) into it."""
    target = _cached_path(cache_dir)
    if not target.exists():
        if not fetch:
            raise EcsSpecUnavailable(f"{target} is absent (run: python -m infra.ecs_spec)")
        fetch_package(cache_dir)
    else:
        _verify(target)
    return _load_cached(str(target))


# --- a strict reader of the JavaScript object literal the generator writes ---------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>[{}\[\]:,])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0",
                   "'": "'", '"': '"', "\\": "\\", "/": "/", "`": "`"}  # fmt: skip
_MAX_DEPTH: Final = 32


def _unquote(token: str, where: int) -> str:
    body = token[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2 : i + 4]):
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            raise EcsSpecError(f"unsupported escape \\{nxt} in a string at offset {where}")
    return "".join(out)


def _parse_js_literal(text: str, pos: int) -> tuple[Any, int]:
    """The value of the object literal starting at ``pos`` and the offset after it."""
    tokens: list[tuple[str, str, int]] = []
    depth = 0
    i = pos
    while True:
        m = _TOKEN.match(text, i)
        if m is None:
            raise EcsSpecError(f"unexpected {text[i : i + 20]!r} at offset {i}")
        i = m.end()
        kind = m.lastgroup or ""
        if kind == "ws":
            continue
        value = m.group()
        tokens.append((kind, value, m.start()))
        if value in "{[" and kind == "punct":
            depth += 1
            if depth > _MAX_DEPTH:
                raise EcsSpecError(f"nesting deeper than {_MAX_DEPTH} at offset {m.start()}")
        elif value in "}]" and kind == "punct":
            depth -= 1
            if depth == 0:
                break
    value, k = _value(tokens, 0)
    if k != len(tokens):
        raise EcsSpecError(f"trailing tokens at offset {tokens[k][2]}")
    return value, i


def _value(tokens: list[tuple[str, str, int]], k: int) -> tuple[Any, int]:
    kind, tok, where = tokens[k]
    if kind == "str":
        return _unquote(tok, where), k + 1
    if kind == "num":
        return (json.loads(tok), k + 1)
    if kind == "ident":
        consts = {"true": True, "false": False, "null": None}
        if tok not in consts:
            raise EcsSpecError(f"unexpected identifier {tok!r} at offset {where}")
        return consts[tok], k + 1
    if tok == "[":
        items: list[Any] = []
        k += 1
        while tokens[k][1] != "]" or tokens[k][0] != "punct":
            item, k = _value(tokens, k)
            items.append(item)
            k = _comma(tokens, k, "]")
        return items, k + 1
    if tok == "{":
        obj: dict[str, Any] = {}
        k += 1
        while tokens[k][1] != "}" or tokens[k][0] != "punct":
            kkind, key, kwhere = tokens[k]
            if kkind == "str":
                key = _unquote(key, kwhere)
            elif kkind != "ident":
                raise EcsSpecError(f"expected a key at offset {kwhere}")
            if tokens[k + 1][1] != ":":
                raise EcsSpecError(f"expected ':' at offset {tokens[k + 1][2]}")
            if key in obj:
                raise EcsSpecError(f"duplicate key {key!r} at offset {kwhere}")
            obj[key], k = _value(tokens, k + 2)
            k = _comma(tokens, k, "}")
        return obj, k + 1
    raise EcsSpecError(f"unexpected {tok!r} at offset {where}")


def _comma(tokens: list[tuple[str, str, int]], k: int, close: str) -> int:
    kind, tok, where = tokens[k]
    if kind == "punct" and tok == ",":
        return k + 1
    if kind == "punct" and tok == close:
        return k
    raise EcsSpecError(f"expected ',' or {close!r} at offset {where}")


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.ecs_spec``: fetch (if needed) and verify the pinned ECS definitions."""
    del argv
    try:
        spec = load_spec(fetch=True)
    except EcsSpecError as exc:
        print(f"ecs-spec: {exc}", file=sys.stderr)
        return 1
    print(f"ecs-spec: ECS {spec.version}, {len(spec.fields)} fields, {_cached_path(CACHE_DIR)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
