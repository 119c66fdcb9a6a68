"""Maven-resolved jars and the two small Java programs of ours that the local stack needs.

``python -m infra.jars`` (called by ``make setup``) resolves each pom under ``infra/maven`` into
``infra/jars/<name>`` (git-ignored) and compiles ``infra/java`` into jars beside them. It is
idempotent: a stamp file records the hash of the poms and sources it was built from.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

__all__ = [
    "ES_LAUNCHER_JAR",
    "ES_ROOT_PLUGIN_JAR",
    "JarsError",
    "es_classpath_jars",
    "es_module_jars",
    "flink_connector_jars",
    "kafka_jars",
    "main",
    "require_java",
    "resolve",
]

INFRA: Final = Path(__file__).resolve().parent
MAVEN_DIR: Final = INFRA / "maven"
JAVA_SRC: Final = INFRA / "java"
BUNDLES: Final = ("kafka", "elasticsearch", "flink")
ES_LAUNCHER_JAR: Final = "ssa-es-launcher.jar"
ES_ROOT_PLUGIN_JAR: Final = "ssa-es-root-info.jar"
# Jars that belong to the netty4 transport module rather than the server's module path.
_NETTY_MODULE = re.compile(r"^(netty-.*|transport-netty4-.*)\.jar$")


class JarsError(RuntimeError):
    """Set-up cannot proceed; the message is one line saying what to do."""


def require_java(min_major: int = 17) -> None:
    java = shutil.which("java")
    if java is None:
        raise JarsError(f"Java {min_major}+ is required: no `java` on PATH (install OpenJDK {min_major})")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < min_major:
        raise JarsError(f"Java {min_major}+ is required, found {major or 'unknown'} at {java}")


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise JarsError(f"`{tool}` is required on PATH for set-up ({hint})")
    return path


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted([*MAVEN_DIR.rglob("pom.xml"), *JAVA_SRC.rglob("*.java")]):
        digest.update(path.relative_to(INFRA).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise JarsError(f"{what} failed (exit {proc.returncode}); the lines above are its output")


def kafka_jars(jars_dir: Path) -> list[Path]:
    return sorted((jars_dir / "kafka").glob("*.jar"))


def es_classpath_jars(jars_dir: Path) -> list[Path]:
    """The server's module path: everything but the transport module's jars."""
    return sorted(p for p in (jars_dir / "elasticsearch").glob("*.jar") if not _NETTY_MODULE.match(p.name))


def es_module_jars(jars_dir: Path) -> list[Path]:
    return sorted(p for p in (jars_dir / "elasticsearch").glob("*.jar") if _NETTY_MODULE.match(p.name))


def flink_connector_jars(jars_dir: Path) -> list[Path]:
    return sorted((jars_dir / "flink").glob("*.jar"))


def _compile(jars_dir: Path, package: str, jar_name: str, module_path: list[Path]) -> None:
    javac = _require("javac", "install a JDK 17+, not only a JRE")
    jar = _require("jar", "install a JDK 17+, not only a JRE")
    sources = sorted(str(p) for p in (JAVA_SRC / package.replace(".", "/")).glob("*.java"))
    out = jars_dir / "classes" / package
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    mp = ":".join(str(p) for p in module_path)
    _run(
        [javac, "-nowarn", "-d", str(out), "-p", mp, "--add-modules", "ALL-MODULE-PATH", *sources],
        f"javac {package}",
    )
    _run([jar, "--create", "--file", str(jars_dir / jar_name), "-C", str(out), "."], f"jar {jar_name}")


def resolve(jars_dir: Path, *, force: bool = False) -> bool:
    """Resolve and build everything; returns False when the stamp says nothing changed."""
    stamp = jars_dir / ".stamp"
    fingerprint = _fingerprint()
    if not force and stamp.exists() and stamp.read_text() == fingerprint:
        return False
    require_java()
    mvn = _require("mvn", "install Apache Maven 3.8+")
    for bundle in BUNDLES:
        target = jars_dir / bundle
        shutil.rmtree(target, ignore_errors=True)
        pom = MAVEN_DIR / bundle / "pom.xml"
        _run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={target}"],
            f"Maven resolution of {pom.relative_to(INFRA.parent)}",
        )
    es_mp = es_classpath_jars(jars_dir)
    _compile(jars_dir, "org.ssa.esnode", ES_LAUNCHER_JAR, es_mp)
    _compile(jars_dir, "org.ssa.esroot", ES_ROOT_PLUGIN_JAR, es_mp)
    stamp.write_text(fingerprint)
    return True


def main(argv: list[str] | None = None) -> int:
    from infra.settings import SettingsError, load_settings

    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings()
        jars_dir = Path(settings.jars_dir)
        jars_dir.mkdir(parents=True, exist_ok=True)
        changed = resolve(jars_dir, force="--force" in args)
    except (JarsError, SettingsError) as exc:
        print(f"setup: {exc}", file=sys.stderr)
        return 1
    print(f"jars: {'resolved into' if changed else 'up to date in'} {jars_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
