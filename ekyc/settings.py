"""Layered configuration: shipped TOML defaults <- a TOML file <- ``EKYC_*`` env <- flags (stdlib only).

Each program owns the sections of its defaults files and builds typed settings from the merged
dictionary (``ekyc.server.config``, ``ekyc.quality.options``). A key unknown to the defaults is
an error, so a typo never passes silently.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def read_toml(path: Path | str) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def merge(base: dict, override: Mapping, origin: str, foreign_sections: bool = False) -> None:
    """Set ``override``'s keys in ``base``; unknown keys are errors, and so are unknown sections
    unless ``foreign_sections`` (a file shared with another program: its sections are skipped)."""
    for section, values in override.items():
        if section not in base or not isinstance(values, Mapping):
            if foreign_sections and section not in base:
                continue
            raise ConfigError(f"{origin}: unknown section [{section}]")
        for key, value in values.items():
            if key not in base[section]:
                raise ConfigError(f"{origin}: unknown key {section}.{key}")
            base[section][key] = value


def env_overrides(base: dict, environ: Mapping[str, str]) -> dict:
    """``EKYC_<SECTION>_<KEY>`` variables for the keys of ``base``, parsed like their defaults."""
    overrides: dict[str, dict[str, Any]] = {}
    for section, values in base.items():
        for key, default in values.items():
            name = f"EKYC_{section}_{key}".upper()
            if name in environ:
                overrides.setdefault(section, {})[key] = parse_like(environ[name], default, name)
    return overrides


def parse_like(text: str, default: Any, name: str) -> Any:
    """``text`` as the type of ``default`` (bool, int, float or str)."""
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return lowered in ("1", "true", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a valid {type(default).__name__}") from None


def load_sections(
    defaults: Iterable[Path],
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    foreign_sections: bool = False,
) -> dict:
    """The merged sections: ``defaults`` files, then ``path``, then ``EKYC_*`` env, then
    ``overrides`` (None values skipped). ``foreign_sections``: ``path`` may hold sections of
    other programs, which are skipped."""
    environ = {} if environ is None else environ
    data: dict = {}
    for default in defaults:
        data.update(read_toml(default))
    if path:
        merge(data, read_toml(Path(path)), str(path), foreign_sections)
    merge(data, env_overrides(data, environ), "environment")
    if overrides:
        merge(data, {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}, "flags")
    return data
