"""Detector configuration: thresholds, allowlists and windows, loaded from YAML (``safe_load``).

The shipped ``detectors/config/default.yaml`` holds every value; a site file only overrides
what it changes (deep merge over the default). Allowlists are empty by default, so nothing is
silently excused until an operator says so. Errors name the file and the offending key.

Layout::

    engine:   {max_out_of_orderness_ms, max_keys_per_window, max_distinct_per_key, ...}
    shared:   {emulator_exes: [...], open_syscalls: [...], models_dir: null, ...}
    detectors:
      <threat>.<name>: {enabled: true, window_ms: 60000, slide_ms: 0, params: {...}}
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from detectors.windows import WindowSpec

__all__ = [
    "ConfigError",
    "DetectorConfig",
    "DetectorSettings",
    "EngineSettings",
    "ParamSpec",
    "default_config_path",
]

MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024

ParamSpec = Mapping[str, type]
"""Declared parameters of a detector: name -> type (int, float, bool, str, list, or NoneType-able str)."""


class ConfigError(ValueError):
    """The configuration is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class EngineSettings:
    max_out_of_orderness_ms: int = 5_000
    max_keys_per_window: int = 50_000
    max_distinct_per_key: int = 4_096
    evidence_event_ids: int = 5
    late_rule_hits: str = "alert"  # alert: a late single-event hit is raised on its own; drop: counted only
    max_logged_failures: int = 100
    interface_copy_horizon_ms: int = 660_000  # detectors.interface_copies
    interface_copy_pairs: int = 200_000


@dataclass(frozen=True)
class DetectorSettings:
    id: str
    enabled: bool
    window: WindowSpec
    params: Mapping[str, Any]


def default_config_path() -> Path:
    return Path(str(resources.files("detectors") / "config" / "default.yaml"))


def _merge(base: dict[str, Any], over: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _check_type(value: Any, expected: Any, where: str) -> Any:
    if value is None:
        return None
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got bool")
    if expected in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_freeze(v) for v in value)
    if expected is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _freeze(dict(value))
    if not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


@dataclass(frozen=True)
class DetectorConfig:
    engine: EngineSettings = field(default_factory=EngineSettings)
    shared: Mapping[str, Any] = field(default_factory=dict)
    detectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Settings of the awareness stage (incidents, threat levels, forecasts), read by ``awareness/``:
    # one mapping per part, kept here so one file configures the whole job.
    awareness: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def default(cls) -> DetectorConfig:
        return cls.load(default_config_path(), over_default=False)

    @classmethod
    def load_or_default(cls, path: str | os.PathLike[str] | None) -> DetectorConfig:
        """The site file at ``path`` over the shipped default, or the default when ``path`` is
        empty (the ``detector_config_file`` setting and the ``--config`` options)."""
        return cls.load(path) if path else cls.default()

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, over_default: bool = True) -> DetectorConfig:
        """A YAML file; by default merged over the shipped default so it may be partial."""
        p = Path(path)
        try:
            size = p.stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{p}: {size} bytes is over the {MAX_CONFIG_BYTES} byte limit")
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{p}: {exc.strerror or exc}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from None
        if over_default:
            return cls.default().merged(data, source=str(p))
        return cls.from_dict(data, source=str(p))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<memory>") -> DetectorConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping at top level")
        unknown = set(data) - {"engine", "shared", "detectors", "awareness"}
        if unknown:
            raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown)}")
        raw_engine = data.get("engine") or {}
        if not isinstance(raw_engine, Mapping):
            raise ConfigError(f"{source}: engine: expected a mapping")
        defaults = EngineSettings()
        engine_kw: dict[str, Any] = {}
        for key, value in raw_engine.items():
            if not hasattr(defaults, key):
                raise ConfigError(f"{source}: engine.{key}: unknown setting")
            engine_kw[key] = _check_type(value, type(getattr(defaults, key)), f"{source}: engine.{key}")
        engine = EngineSettings(**engine_kw)
        if engine.late_rule_hits not in ("alert", "drop"):
            raise ConfigError(f"{source}: engine.late_rule_hits: expected 'alert' or 'drop'")
        if engine.max_out_of_orderness_ms < 0 or engine.max_keys_per_window < 1:
            raise ConfigError(f"{source}: engine: negative out-of-orderness or no keys allowed")
        if engine.interface_copy_horizon_ms < 0 or engine.interface_copy_pairs < 1:
            raise ConfigError(f"{source}: engine: negative interface copy horizon or no pairs allowed")
        shared = data.get("shared") or {}
        if not isinstance(shared, Mapping):
            raise ConfigError(f"{source}: shared: expected a mapping")
        awareness = data.get("awareness") or {}
        if not isinstance(awareness, Mapping):
            raise ConfigError(f"{source}: awareness: expected a mapping")
        dets = data.get("detectors") or {}
        if not isinstance(dets, Mapping):
            raise ConfigError(f"{source}: detectors: expected a mapping")
        for det_id, entry in dets.items():
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{source}: detectors.{det_id}: expected a mapping")
            extra = set(entry) - {"enabled", "window_ms", "slide_ms", "params"}
            if extra:
                raise ConfigError(f"{source}: detectors.{det_id}: unknown keys {sorted(extra)}")
        return cls(
            engine=engine,
            shared=_freeze(dict(shared)),
            detectors={k: _freeze(dict(v)) for k, v in dets.items()},
            awareness=_freeze(dict(awareness)),
            source=source,
        )

    def merged(self, overrides: Mapping[str, Any], source: str | None = None) -> DetectorConfig:
        """This configuration with ``overrides`` deep-merged over it (unknown detector ids refused)."""
        src = source or self.source
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{src}: expected a mapping at top level")
        for det_id in overrides.get("detectors") or {}:
            if det_id not in self.detectors:
                raise ConfigError(f"{src}: detectors.{det_id}: no such detector in the default configuration")
        return DetectorConfig.from_dict(_merge(self.to_dict(), overrides, src), source=src)

    def to_dict(self) -> dict[str, Any]:
        def thaw(v: Any) -> Any:
            if isinstance(v, tuple):
                return [thaw(x) for x in v]
            if isinstance(v, Mapping):
                return {k: thaw(x) for k, x in v.items()}
            return v

        return {
            "engine": dict(vars(self.engine)),
            "shared": thaw(dict(self.shared)),
            "detectors": thaw({k: dict(v) for k, v in self.detectors.items()}),
            "awareness": thaw(dict(self.awareness)),
        }

    def digest(self) -> str:
        """SHA-256 of the settings (not of where they came from): equal for equal configurations.
        Computed once per configuration, which never changes: every tenant the awareness stage
        starts compares against it."""
        known = self.__dict__.get("_digest")
        if known is None:
            text = json.dumps(self.to_dict(), sort_keys=True, default=str)
            known = hashlib.sha256(text.encode()).hexdigest()
            object.__setattr__(self, "_digest", known)  # a cache, not a field: frozen all the same
        return known

    # --- access --------------------------------------------------------------------------------
    def awareness_section(self, part: str) -> Mapping[str, Any]:
        """The ``awareness.<part>`` mapping (``incidents``, ``threat``, ``forecast``), empty if unset;
        each part checks its own keys."""
        section = self.awareness.get(part) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{self.source}: awareness.{part}: expected a mapping")
        return section

    def shared_value(self, name: str, expected: Any) -> Any:
        if name not in self.shared:
            raise ConfigError(f"{self.source}: shared.{name}: missing")
        return _check_type(self.shared[name], expected, f"{self.source}: shared.{name}")

    def settings_for(self, det_id: str, spec: ParamSpec) -> DetectorSettings:
        """Validated settings of one detector: every declared parameter present with its type."""
        where = f"{self.source}: detectors.{det_id}"
        entry = self.detectors.get(det_id)
        if entry is None:
            raise ConfigError(f"{where}: missing (every detector needs an entry, see default.yaml)")
        raw = entry.get("params") or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}.params: expected a mapping")
        unknown = set(raw) - set(spec)
        if unknown:
            raise ConfigError(f"{where}.params: unknown parameters {sorted(unknown)}")
        params = {}
        for name, typ in spec.items():
            if name not in raw:
                raise ConfigError(f"{where}.params.{name}: missing")
            params[name] = _check_type(raw[name], typ, f"{where}.params.{name}")
        enabled = _check_type(entry.get("enabled", True), bool, f"{where}.enabled")
        size = _check_type(entry.get("window_ms", 60_000), int, f"{where}.window_ms")
        slide = _check_type(entry.get("slide_ms", 0), int, f"{where}.slide_ms")
        try:
            window = WindowSpec(size, slide)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return DetectorSettings(id=det_id, enabled=bool(enabled), window=window, params=params)
