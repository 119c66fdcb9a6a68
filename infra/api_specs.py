"""The request schemas of the Elasticsearch security API and of Grafana's HTTP API, read from the
artifacts their makers publish, pinned, so the requests ``ssa tenants provision`` sends are checked
against the published specifications and not against a copy of ours.

Elasticsearch: the npm package ``@elastic/elasticsearch`` (the official JavaScript client) at
``ES_PACKAGE_VERSION``, the 8.14 line of the server the project runs (``infra/maven``, the
production compose). Its ``lib/api/typesWithBodyKey.d.ts`` holds the request and response types
generated from the Elasticsearch API specification (github.com/elastic/elasticsearch-specification,
the ``clients-flight-recorder`` output the clients are built from): each request an
``interface XRequest extends RequestBase`` whose path and query parameters are top-level fields and
whose body is the ``body?: {...}`` member. ``read_es_types`` reads ``export interface`` and
``export type`` declarations from that file with a strict reader of the TypeScript subset the
generator writes (members ``name?: Type;``, index signatures, unions, intersections, arrays,
``Record<K, V>``, string and number literals, inline object types): anything else in a declaration
we use is refused, nothing is evaluated. The tarball is pinned by ``ES_PACKAGE_SHA256``.

Grafana: Grafana publishes its HTTP API as an OpenAPI (Swagger 2) document in its own repository,
which is AGPL and not on these registries; Grafana Labs' Apache-2.0 Go client
``github.com/grafana/grafana-openapi-client-go`` is generated from that document with go-swagger
and is on the Go module proxy. Its module zip (``GRAFANA_MODULE_VERSION``, pinned by
``GRAFANA_MODULE_SHA256``) holds, per operation, ``client/<tag>/<tag>_client.go`` (operation id,
method, path pattern, the ``XParams`` type) and ``client/<tag>/<op>_parameters.go`` (the body
model, ``Body *models.X``), and per schema ``models/<name>.go``: a Go struct whose field tags are
the JSON names and whose doc comments carry the schema's ``Required: true``. ``read_grafana_api``
reads those (struct fields of the types listed in ``_GO_TYPES``, named models, maps, slices; an
embedded struct or an unknown Go type is refused). The client is generated from Grafana's main
branch of its date (March 2026, the 12.x line); the operations used here (``/api/orgs``,
``/api/datasources``, ``/api/dashboards/db``) have kept their shape since Grafana 8, so they hold
for the compose's 11.6 too.

Fetching (``python -m infra.api_specs``, or ``load_*(fetch=True)``): ``npm pack`` and ``go mod
download`` (the ordinary clients; the Go client also checks the module against its checksum
database) into the git-ignored ``.cache/api-specs/``; the sha256 is verified before a file takes its
final name, and a file with another digest is deleted and refused. Archives are read in memory,
each member size-capped, never extracted.

``check(spec, type_name, value)`` returns every mismatch as ``path: what`` lines: an unknown field,
a missing required one, a value of the wrong type. ``tests/test_es_security.py`` and
``tests/test_grafana_orgs.py`` check every request body ``infra.es_security`` and
``dashboards.grafana_orgs`` build.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from infra.settings import PROJECT_ROOT

__all__ = [
    "CACHE_DIR",
    "ES_PACKAGE",
    "ES_PACKAGE_SHA256",
    "ES_PACKAGE_VERSION",
    "GRAFANA_MODULE",
    "GRAFANA_MODULE_SHA256",
    "GRAFANA_MODULE_VERSION",
    "ApiSpecError",
    "ApiSpecUnavailable",
    "GrafanaApi",
    "TypeSpec",
    "check",
    "load_es_types",
    "load_grafana_api",
    "read_es_types",
    "read_grafana_api",
]

ES_PACKAGE: Final = "@elastic/elasticsearch"
ES_PACKAGE_VERSION: Final = "8.14.1"
ES_PACKAGE_SHA256: Final = "ae131628243e90ddc12a88ed78dbddc91e3ef35bc49c3ab9bb2461e9bc5c629e"
_ES_MEMBER: Final = "package/lib/api/typesWithBodyKey.d.ts"
GRAFANA_MODULE: Final = "github.com/grafana/grafana-openapi-client-go"
GRAFANA_MODULE_VERSION: Final = "v0.0.0-20260330113218-ee77c4f6f90e"
GRAFANA_MODULE_SHA256: Final = "b18c834b3399f259f24ea1a7e6e67b06656a4b4f6aa49329af70e5b7dbcd4c92"
CACHE_DIR: Final = PROJECT_ROOT / ".cache" / "api-specs"
MAX_ARCHIVE_BYTES: Final = 32 * 1024 * 1024  # npm 8.14.1: 0.3 MB; Go zip: 1.8 MB
MAX_MEMBER_BYTES: Final = 8 * 1024 * 1024  # typesWithBodyKey.d.ts: 0.59 MB
_TIMEOUT_S: Final = 300
_UNREACHABLE = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network request|"
    r"socket hang up|dial tcp|i/o timeout|no such host|connection refused|TLS handshake timeout"
)


class ApiSpecError(RuntimeError):
    """A specification cannot be had or is not what was pinned; the message says why."""


class ApiSpecUnavailable(ApiSpecError):
    """Not cached and the registry could not be reached."""


# --- fetching ---------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, pinned: str, what: str) -> None:
    size = path.stat().st_size
    if size > MAX_ARCHIVE_BYTES:
        raise ApiSpecError(f"{path}: {size} bytes, over the {MAX_ARCHIVE_BYTES}-byte limit")
    digest = _sha256(path)
    if digest != pinned:
        path.unlink(missing_ok=True)
        raise ApiSpecError(
            f"{path}: sha256 {digest} is not the pinned {pinned} of {what}; the file was deleted"
        )


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ApiSpecUnavailable(f"fetching {what} timed out after {_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout or "").strip().splitlines()
        kind = ApiSpecUnavailable if _UNREACHABLE.search(done.stderr or "") else ApiSpecError
        raise kind(f"fetching {what} failed: {' | '.join(lines[-2:]) or f'exit {done.returncode}'}")
    return done.stdout


def _es_path(cache_dir: Path) -> Path:
    return cache_dir / f"elastic-elasticsearch-{ES_PACKAGE_VERSION}.tgz"


def _grafana_path(cache_dir: Path) -> Path:
    return cache_dir / f"grafana-openapi-client-go-{GRAFANA_MODULE_VERSION}.zip"


def fetch_es_package(cache_dir: Path = CACHE_DIR) -> Path:
    """The pinned npm tarball in ``cache_dir`` (``npm pack`` if absent), digest verified."""
    target = _es_path(cache_dir)
    what = f"{ES_PACKAGE}@{ES_PACKAGE_VERSION}"
    if target.exists():
        _verify(target, ES_PACKAGE_SHA256, what)
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise ApiSpecError(f"npm is required to fetch {what}, or place the tarball at {target}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as tmp:
        _run([npm, "pack", what, "--pack-destination", tmp, "--loglevel=error", "--fetch-retries=1",
              "--fetch-timeout=30000", "--ignore-scripts"], what)  # fmt: skip
        packed = list(Path(tmp).glob("*.tgz"))
        if len(packed) != 1:
            raise ApiSpecError(f"npm pack left {len(packed)} tarballs, expected 1")
        _verify(packed[0], ES_PACKAGE_SHA256, what)
        packed[0].replace(target)
    return target


def fetch_grafana_module(cache_dir: Path = CACHE_DIR) -> Path:
    """The pinned Go module zip in ``cache_dir`` (``go mod download`` if absent), digest verified."""
    target = _grafana_path(cache_dir)
    what = f"{GRAFANA_MODULE}@{GRAFANA_MODULE_VERSION}"
    if target.exists():
        _verify(target, GRAFANA_MODULE_SHA256, what)
        return target
    go = shutil.which("go")
    if go is None:
        raise ApiSpecError(f"the Go toolchain is required to fetch {what}, or place its zip at {target}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as tmp:
        env = {**os.environ, "GOMODCACHE": str(Path(tmp) / "mod"), "GOFLAGS": "-modcacherw",
               "GO111MODULE": "on", "GOTOOLCHAIN": "local"}  # fmt: skip
        out = _run([go, "mod", "download", "-json", what], what, env=env)
        try:
            zip_path = Path(json.loads(out)["Zip"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiSpecError(f"go mod download gave no zip path for {what}") from exc
        _verify(zip_path, GRAFANA_MODULE_SHA256, what)
        shutil.copyfile(zip_path, target)
    return target


# --- the type model both readers produce ------------------------------------------------------
# A type is a tuple: ("prim", name) for string/number/boolean/integer/any/null, ("lit", value),
# ("ref", name), ("array", t), ("map", t) (string keys), ("union", [t...]), ("inter", [t...]),
# ("obj", {field: (t, required)}, index-signature t or None).
Type = tuple[Any, ...]


@dataclass
class TypeSpec:
    """Named types of one specification, resolved on demand."""

    source: str
    types: dict[str, Type] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)  # interface extends

    def resolve(self, name: str) -> Type:
        if name not in self.types:
            raise ApiSpecError(f"{self.source}: no type {name!r}")
        t = self.types[name]
        if t[0] == "obj" and self.parents.get(name):
            fields = {}
            for parent in self.parents[name]:
                base = self.resolve(parent)
                if base[0] != "obj":
                    raise ApiSpecError(f"{self.source}: {name} extends {parent}, which is not an object type")
                fields.update(base[1])
            fields.update(t[1])
            return ("obj", fields, t[2])
        return t

    def fields(self, name: str) -> dict[str, tuple[Type, bool]]:
        t = self.resolve(name)
        if t[0] != "obj":
            raise ApiSpecError(f"{self.source}: {name} is not an object type")
        return dict(t[1])


def check(spec: TypeSpec, type_name: str, value: Any) -> list[str]:
    """Every way ``value`` breaks the named type, as ``path: what`` lines (empty: it conforms)."""
    return _check(spec, ("ref", type_name), value, "$", 0)


_PRIMS: Final = {"string", "number", "boolean", "integer", "any", "null"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe(t: Type) -> str:
    if t[0] == "lit":
        return repr(t[1])
    if t[0] in ("prim", "ref"):
        return str(t[1])
    return {"array": "an array", "map": "an object", "obj": "an object"}.get(t[0], str(t[0]))


def _check(spec: TypeSpec, t: Type, value: Any, path: str, depth: int) -> list[str]:
    if depth > 64:
        raise ApiSpecError(f"{spec.source}: types nest deeper than 64 at {path}")
    tag = t[0]
    if tag == "ref":
        return _check(spec, spec.resolve(t[1]), value, path, depth + 1)
    if tag == "prim":
        name = t[1]
        if name == "any":
            return []
        if name == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = _kind(value) == name
        return [] if ok else [f"{path}: expected {name}, got {_kind(value)}"]
    if tag == "lit":
        return (
            []
            if value == t[1] and _kind(value) == _kind(t[1])
            else [f"{path}: expected {t[1]!r}, got {value!r}"]
        )
    if tag == "array":
        if not isinstance(value, list):
            return [f"{path}: expected an array, got {_kind(value)}"]
        return [
            e for i, item in enumerate(value) for e in _check(spec, t[1], item, f"{path}[{i}]", depth + 1)
        ]
    if tag == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {_kind(value)}"]
        return [e for k, v in value.items() for e in _check(spec, t[1], v, f"{path}.{k}", depth + 1)]
    if tag == "union":
        best: list[str] | None = None
        shallow = True  # every alternative failed on the value itself, not inside it
        for alt in t[1]:
            errors = _check(spec, alt, value, path, depth + 1)
            if not errors:
                return []
            shallow = shallow and len(errors) == 1 and errors[0].startswith(f"{path}: expected ")
            if best is None or len(errors) < len(best):
                best = errors
        if shallow:
            return [
                f"{path}: expected {' or '.join(_describe(alt) for alt in t[1])}, got {_kind(value)} {value!r}"
            ]
        return best or [f"{path}: matches no alternative"]
    if tag == "inter":
        return [e for part in t[1] for e in _check(spec, part, value, path, depth + 1)]
    if tag == "obj":
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {_kind(value)}"]
        fields, index = t[1], t[2]
        errors = [f"{path}: missing required field {name!r}" for name, (_t, req) in fields.items()
                  if req and name not in value]  # fmt: skip
        for key, item in value.items():
            if key in fields:
                errors += _check(spec, fields[key][0], item, f"{path}.{key}", depth + 1)
            elif index is not None:
                errors += _check(spec, index, item, f"{path}.{key}", depth + 1)
            else:
                errors.append(f"{path}: unknown field {key!r}")
        return errors
    raise ApiSpecError(f"{spec.source}: unknown type node {tag!r}")


# --- Elasticsearch: a strict reader of the generated TypeScript declarations --------------------
_TS_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>[{}\[\]()<>:;,|&?=])
    """,
    re.VERBOSE | re.DOTALL,
)
_TS_DECL = re.compile(r"^export (interface|type) ([A-Za-z_$][A-Za-z0-9_$]*)\b", re.M)
_TS_PRIMS: Final = {"string": "string", "number": "number", "boolean": "boolean", "any": "any",
                    "unknown": "any", "null": "null"}  # fmt: skip


class _TsParser:
    def __init__(self, text: str, start: int, source: str) -> None:
        self.text, self.pos, self.source = text, start, source
        self.tok: tuple[str, str, int] = ("", "", start)
        self._advance()

    def _advance(self) -> None:
        while True:
            if self.pos >= len(self.text):
                self.tok = ("eof", "", self.pos)
                return
            m = _TS_TOKEN.match(self.text, self.pos)
            if m is None:
                raise self.error(f"unexpected {self.text[self.pos : self.pos + 20]!r}")
            self.pos = m.end()
            if m.lastgroup != "ws":
                self.tok = (m.lastgroup or "", m.group(), m.start())
                return

    def error(self, what: str) -> ApiSpecError:
        line = self.text.count("\n", 0, self.tok[2]) + 1
        return ApiSpecError(f"{self.source}:{line}: {what}")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v, _ = self.tok
        if (value is not None and v != value) or (kind is not None and k != kind):
            raise self.error(f"expected {value or kind}, found {v!r}")
        self._advance()
        return v

    def peek(self, value: str) -> bool:
        return self.tok[1] == value and self.tok[0] == "punct"

    def declaration(self) -> tuple[str, Type, list[str]]:
        self.take("export")
        what = self.take(kind="ident")
        name = self.take(kind="ident")
        if self.peek("<"):
            raise self.error(f"{name}: generic declarations are not supported")
        if what == "type":
            self.take("=")
            t = self.type_()
            self.take(";")
            return name, t, []
        parents: list[str] = []
        if self.tok[1] == "extends":
            self.take("extends")
            parents.append(self.take(kind="ident"))
            while self.peek(","):
                self.take(",")
                parents.append(self.take(kind="ident"))
        return name, self.object_(), parents

    def object_(self) -> Type:
        self.take("{")
        fields: dict[str, tuple[Type, bool]] = {}
        index: Type | None = None
        while not self.peek("}"):
            if self.peek("["):
                self.take("[")
                self.take(kind="ident")
                self.take(":")
                if self.take(kind="ident") != "string":
                    raise self.error("only string index signatures are supported")
                self.take("]")
                self.take(":")
                index = self.type_()
            else:
                k, v, _ = self.tok
                if k not in ("ident", "str"):
                    raise self.error(f"expected a member name, found {v!r}")
                self._advance()
                member = json.loads('"' + v[1:-1] + '"') if k == "str" else v
                optional = self.peek("?")
                if optional:
                    self.take("?")
                self.take(":")
                if member in fields:
                    raise self.error(f"duplicate member {member!r}")
                fields[member] = (self.type_(), not optional)
            if self.peek(";") or self.peek(","):
                self._advance()
            elif not self.peek("}"):
                raise self.error(f"expected ';' or '}}', found {self.tok[1]!r}")
        self.take("}")
        return ("obj", fields, index)

    def type_(self) -> Type:
        if self.peek("|"):
            self.take("|")
        alts = [self.intersection()]
        while self.peek("|"):
            self.take("|")
            alts.append(self.intersection())
        return alts[0] if len(alts) == 1 else ("union", alts)

    def intersection(self) -> Type:
        parts = [self.postfix()]
        while self.peek("&"):
            self.take("&")
            parts.append(self.postfix())
        return parts[0] if len(parts) == 1 else ("inter", parts)

    def postfix(self) -> Type:
        t = self.primary()
        while self.peek("["):
            self.take("[")
            self.take("]")
            t = ("array", t)
        return t

    def primary(self) -> Type:
        k, v, _ = self.tok
        if k == "str":
            self._advance()
            return ("lit", json.loads('"' + v[1:-1] + '"'))
        if k == "num":
            self._advance()
            return ("lit", json.loads(v))
        if self.peek("{"):
            return self.object_()
        if self.peek("("):
            self.take("(")
            t = self.type_()
            self.take(")")
            return t
        if k != "ident":
            raise self.error(f"expected a type, found {v!r}")
        if v in ("keyof", "typeof", "infer", "readonly", "unique", "extends", "new"):
            raise self.error(f"unsupported TypeScript operator {v!r}")
        self._advance()
        if v in ("true", "false"):
            return ("lit", v == "true")
        args: list[Type] = []
        if self.peek("<"):
            self.take("<")
            args.append(self.type_())
            while self.peek(","):
                self.take(",")
                args.append(self.type_())
            self.take(">")
        if v in _TS_PRIMS and not args:
            return ("prim", _TS_PRIMS[v])
        if v == "Record" and len(args) == 2:
            return ("map", args[1])
        if v == "Array" and len(args) == 1:
            return ("array", args[0])
        if args:
            raise self.error(f"unsupported generic type {v}<...>")
        return ("ref", v)


class _LazyTs(TypeSpec):
    """Declarations parsed on first use: the file has thousands we never look at."""

    def __init__(self, source: str, text: str) -> None:
        super().__init__(source)
        self._text = text
        self._offsets: dict[str, int] = {}
        for m in _TS_DECL.finditer(text):
            if m.group(2) in self._offsets:
                raise ApiSpecError(f"{source}: {m.group(2)} is declared twice")
            self._offsets[m.group(2)] = m.start()

    def resolve(self, name: str) -> Type:
        if name not in self.types and name in self._offsets:
            decl, t, parents = _TsParser(self._text, self._offsets[name], self.source).declaration()
            if decl != name:
                raise ApiSpecError(f"{self.source}: read {decl} where {name} was expected")
            self.types[name], self.parents[name] = t, parents
        return super().resolve(name)


def read_es_types(data: bytes) -> TypeSpec:
    """The declarations of an ``@elastic/elasticsearch`` tarball's ``typesWithBodyKey.d.ts``."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        try:
            info = tar.getmember(_ES_MEMBER)
        except KeyError as exc:
            raise ApiSpecError(f"{ES_PACKAGE} tarball has no {_ES_MEMBER}") from exc
        if not info.isfile() or info.size > MAX_MEMBER_BYTES:
            raise ApiSpecError(f"{_ES_MEMBER}: not a regular file under {MAX_MEMBER_BYTES} bytes")
        fh = tar.extractfile(info)
        if fh is None:
            raise ApiSpecError(f"{_ES_MEMBER}: unreadable")
        text = fh.read().decode("utf-8")
    return _LazyTs(f"{ES_PACKAGE}@{ES_PACKAGE_VERSION}/{_ES_MEMBER.removeprefix('package/')}", text)


# --- Grafana: go-swagger's generated models and operations ---------------------------------------
_GO_TYPES: Final = {"string": ("prim", "string"), "bool": ("prim", "boolean"), "int64": ("prim", "integer"),
                    "int32": ("prim", "integer"), "int": ("prim", "integer"), "uint64": ("prim", "integer"),
                    "float64": ("prim", "number"), "float32": ("prim", "number"),
                    "strfmt.DateTime": ("prim", "string"), "strfmt.Duration": ("prim", "string"),
                    "interface{}": ("prim", "any"), "any": ("prim", "any")}  # fmt: skip
_GO_FIELD = re.compile(r'^\t([A-Z][A-Za-z0-9_]*) (\S+(?: \S+)*?) `json:"([^",]*)(,omitempty)?"`\s*$')
_GO_OP = re.compile(
    r"func \(a \*Client\) (\w+)\(params \*(\w+)Params,[^{]*\{.*?"
    r"ID:\s+\"([^\"]+)\",\s+Method:\s+\"([A-Z]+)\",\s+PathPattern:\s+\"([^\"]+)\"",
    re.S,
)
_GO_PARAMS = re.compile(r"^type (\w+)Params struct \{\n(.*?)^\}", re.S | re.M)


@dataclass(frozen=True)
class GrafanaOperation:
    op_id: str
    method: str
    path: str  # "/api" + the spec's path pattern
    body: str | None  # the body model's name


@dataclass
class GrafanaApi:
    types: TypeSpec
    operations: list[GrafanaOperation]

    def operation(self, method: str, path: str) -> GrafanaOperation:
        """The operation a request's method and path (no query string) are, or an error."""
        for op in self.operations:
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(op.path)) + "$"
            if op.method == method and re.match(pattern, path):
                return op
        raise ApiSpecError(f"{self.types.source}: no operation {method} {path}")

    def check_request(self, method: str, path: str, body: Any) -> list[str]:
        op = self.operation(method, path)
        if op.body is None:
            return [] if body is None else [f"{op.op_id} takes no body"]
        if body is None:
            return [f"{op.op_id}: a body ({op.body}) is expected"]
        return check(self.types, op.body, body)


def _go_type(text: str, where: str) -> Type:
    if text in _GO_TYPES:
        return _GO_TYPES[text]
    if text.startswith("*"):
        return _go_type(text[1:], where)
    if text.startswith("[]"):
        return ("array", _go_type(text[2:], where))
    if text.startswith("map[string]"):
        return ("map", _go_type(text[len("map[string]") :], where))
    if text.startswith("models."):
        text = text[len("models.") :]
    if re.fullmatch(r"[A-Z][A-Za-z0-9_]*", text):
        return ("ref", text)
    raise ApiSpecError(f"{where}: unsupported Go type {text!r}")


def _go_enum(text: str, t: Type, where: str) -> Type:
    """go-swagger's ``// Enum: [a b c]`` (Go's %v of the values) or ``// Enum: ["a","b"]``."""
    try:
        values = json.loads(text)
    except ValueError:
        if not (text.startswith("[") and text.endswith("]")):
            raise ApiSpecError(f"{where}: enum {text!r} not understood") from None
        values = text[1:-1].split()
    if t != ("prim", "string") or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ApiSpecError(f"{where}: only string enums are supported, got {text!r}")
    return ("union", [("lit", v) for v in values])


def _go_struct(body: str, where: str) -> Type:
    fields: dict[str, tuple[Type, bool]] = {}
    comments: list[str] = []
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped:
            comments = []
            continue
        if stripped.startswith("//"):
            comments.append(stripped[2:].strip())
            continue
        m = _GO_FIELD.match(line)
        if m is None:
            raise ApiSpecError(f"{where}: unsupported struct member {stripped!r}")
        _go_name, go_type, json_name, _omit = m.groups()
        if json_name != "-":
            if json_name in fields:
                raise ApiSpecError(f"{where}: duplicate JSON name {json_name!r}")
            t = _go_type(go_type, where)
            enum = [c[len("Enum: ") :] for c in comments if c.startswith("Enum: ")]
            if enum:
                t = _go_enum(enum[0], t, f"{where}.{json_name}")
            fields[json_name] = (t, "Required: true" in comments)
        comments = []
    return ("obj", fields, None)


class _LazyGo(TypeSpec):
    def __init__(self, source: str, models: Mapping[str, str]) -> None:
        super().__init__(source)
        self._models = models  # type name -> source text of the file that declares it

    def resolve(self, name: str) -> Type:
        if name not in self.types and name in self._models:
            text = self._models[name]
            where = f"{self.source} models.{name}"
            if m := re.search(rf"^type {name} struct \{{\n(.*?)^\}}", text, re.S | re.M):
                self.types[name] = _go_struct(m.group(1), where)
            elif m := re.search(rf"^type {name} (.+)$", text, re.M):
                self.types[name] = _go_type(m.group(1).strip(), where)
            else:
                raise ApiSpecError(f"{where}: declaration not understood")
        return super().resolve(name)


def read_grafana_api(data: bytes) -> GrafanaApi:
    """Operations and models of a ``grafana-openapi-client-go`` module zip."""
    prefix = f"{GRAFANA_MODULE}@{GRAFANA_MODULE_VERSION}/"
    models: dict[str, str] = {}
    clients: list[str] = []
    params: dict[str, str | None] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if not info.filename.startswith(prefix) or not info.filename.endswith(".go"):
                continue
            rel = info.filename[len(prefix) :]
            if not (rel.startswith("models/") or rel.startswith("client/")):
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                raise ApiSpecError(f"{rel}: over {MAX_MEMBER_BYTES} bytes")
            text = archive.read(info).decode("utf-8")
            if rel.startswith("models/"):
                for m in re.finditer(r"^type ([A-Z]\w*) ", text, re.M):
                    models[m.group(1)] = text
            elif rel.endswith("_client.go"):
                clients.append(text)
            elif rel.endswith("_parameters.go"):
                for m in _GO_PARAMS.finditer(text):
                    body = re.search(r"^\tBody \*?(?:models\.)?(\S+)$", m.group(2), re.M)
                    params[m.group(1)] = body.group(1) if body else None
    if not models or not clients:
        raise ApiSpecError(f"{GRAFANA_MODULE} zip has no models/ or client/ (not the pinned module?)")
    source = f"{GRAFANA_MODULE}@{GRAFANA_MODULE_VERSION}"
    operations = []
    for text in clients:
        found = _GO_OP.findall(text)
        if len(found) != text.count("PathPattern:"):
            raise ApiSpecError(f"{source}: a client file has operations of a shape not understood")
        for m in _GO_OP.finditer(text):
            _func, param_type, op_id, method, path = m.groups()
            if param_type not in params:
                raise ApiSpecError(f"{source}: operation {op_id} has no {param_type}Params")
            operations.append(GrafanaOperation(op_id, method, "/api" + path, params[param_type]))
    if not operations:
        raise ApiSpecError(f"{source}: no operations read")
    return GrafanaApi(_LazyGo(source, models), operations)


# --- loading ------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _es_cached(path: str) -> TypeSpec:
    return read_es_types(Path(path).read_bytes())


@lru_cache(maxsize=2)
def _grafana_cached(path: str) -> GrafanaApi:
    return read_grafana_api(Path(path).read_bytes())


def load_es_types(cache_dir: Path = CACHE_DIR, *, fetch: bool = True) -> TypeSpec:
    target = _es_path(cache_dir)
    if not target.exists() and not fetch:
        raise ApiSpecUnavailable(f"{target} is absent (run: python -m infra.api_specs)")
    return _es_cached(str(fetch_es_package(cache_dir)))


def load_grafana_api(cache_dir: Path = CACHE_DIR, *, fetch: bool = True) -> GrafanaApi:
    target = _grafana_path(cache_dir)
    if not target.exists() and not fetch:
        raise ApiSpecUnavailable(f"{target} is absent (run: python -m infra.api_specs)")
    return _grafana_cached(str(fetch_grafana_module(cache_dir)))


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.api_specs``: fetch (if needed) and verify both pinned specifications."""
    del argv
    try:
        es = load_es_types()
        grafana = load_grafana_api()
        es.resolve("SecurityPutRoleRequest")
    except ApiSpecError as exc:
        print(f"api-specs: {exc}", file=sys.stderr)
        return 1
    print(f"api-specs: {es.source}; {grafana.types.source}, {len(grafana.operations)} operations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
