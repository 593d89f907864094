"""Configuration in one place: shipped defaults <- --config file <- EKYC_* env <- flags."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ekyc.quality.gate import QualityGateOptions

DEFAULTS_FILE = Path(__file__).with_name("default.toml")
QUALITY_DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "quality" / "defaults.toml"
# The repository's models/ folder: server/ and models/ are siblings.
BUNDLED_MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = BUNDLED_MODELS / "liveness.onnx"
DEFAULT_DETECTOR = BUNDLED_MODELS / "mediapipe" / "face_detector.onnx"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (ECS, Docker)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    max_concurrent_rpcs: int
    max_message_bytes: int
    shutdown_drain_s: float
    shutdown_grace_s: float
    reflection: bool
    workers: int
    metrics: str
    metrics_interval_s: float


@dataclass(frozen=True)
class ComputeSettings:
    threads: int
    queue_size: int
    stream_window: int


@dataclass(frozen=True)
class LimitSettings:
    max_stream_items: int
    rate_limit_per_minute: float
    rate_limit_burst: int


@dataclass(frozen=True)
class SecuritySettings:
    api_keys_file: str
    api_keys_env: str
    tls_cert: str
    tls_key: str
    tls_client_ca: str

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


@dataclass(frozen=True)
class ModelSettings:
    path: str
    profile: str
    threshold: float
    intra_op_threads: int


@dataclass(frozen=True)
class Config:
    server: ServerSettings
    compute: ComputeSettings
    model: ModelSettings
    quality: QualityGateOptions
    limits: LimitSettings
    security: SecuritySettings

    @property
    def model_path(self) -> str:
        return self.model.path or str(DEFAULT_MODEL)


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _merge(base: dict, override: Mapping, origin: str) -> None:
    for section, values in override.items():
        if section not in base or not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: unknown section [{section}]")
        for key, value in values.items():
            if key not in base[section]:
                raise ConfigError(f"{origin}: unknown key {section}.{key}")
            base[section][key] = value


def _env_overrides(base: dict, environ: Mapping[str, str]) -> dict:
    overrides: dict[str, dict[str, Any]] = {}
    for section, values in base.items():
        for key, default in values.items():
            name = f"EKYC_{section}_{key}".upper()
            if name in environ:
                overrides.setdefault(section, {})[key] = _parse_like(environ[name], default, name)
    return overrides


def _parse_like(text: str, default: Any, name: str) -> Any:
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


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the configuration: defaults, then ``path``, then ``EKYC_*`` env, then ``overrides``."""
    environ = os.environ if environ is None else environ
    data = _read_toml(DEFAULTS_FILE)
    data.update(_read_toml(QUALITY_DEFAULTS_FILE))
    if path:
        _merge(data, _read_toml(Path(path)), str(path))
    _merge(data, _env_overrides(data, environ), "environment")
    if overrides:
        _merge(data, {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}, "flags")
    return _build(data, environ.get("EKYC_API_KEYS", ""))


def _build(data: dict, api_keys_env: str = "") -> Config:
    try:
        server = ServerSettings(
            host=str(data["server"]["host"]),
            port=int(data["server"]["port"]),
            max_concurrent_rpcs=int(data["server"]["max_concurrent_rpcs"]),
            max_message_bytes=int(data["server"]["max_message_bytes"]),
            shutdown_drain_s=float(data["server"]["shutdown_drain_s"]),
            shutdown_grace_s=float(data["server"]["shutdown_grace_s"]),
            reflection=bool(data["server"]["reflection"]),
            workers=int(data["server"]["workers"]),
            metrics=str(data["server"]["metrics"]),
            metrics_interval_s=float(data["server"]["metrics_interval_s"]),
        )
        threads = int(data["compute"]["threads"]) or max(1, available_cpus() // max(1, server.workers))
        window = int(data["compute"]["stream_window"]) or 2 * threads
        compute = ComputeSettings(threads, int(data["compute"]["queue_size"]), window)
        model = ModelSettings(
            path=str(data["model"]["path"]),
            profile=str(data["model"]["profile"]),
            threshold=float(data["model"]["threshold"]),
            intra_op_threads=int(data["model"]["intra_op_threads"]),
        )
        limits = LimitSettings(
            max_stream_items=int(data["limits"]["max_stream_items"]),
            rate_limit_per_minute=float(data["limits"]["rate_limit_per_minute"]),
            rate_limit_burst=int(data["limits"]["rate_limit_burst"]),
        )
        security = SecuritySettings(
            api_keys_file=str(data["security"]["api_keys_file"]),
            api_keys_env=api_keys_env,
            tls_cert=str(data["security"]["tls_cert"]),
            tls_key=str(data["security"]["tls_key"]),
            tls_client_ca=str(data["security"]["tls_client_ca"]),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid configuration value: {exc}") from None
    try:
        quality = QualityGateOptions.from_sections(data, DEFAULT_DETECTOR)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _validate(server, compute, model, limits, security)
    return Config(server, compute, model, quality, limits, security)


def _validate(server, compute, model, limits, security) -> None:
    checks = [
        (0 <= server.port <= 65535, f"server.port must be 0..65535, got {server.port}"),
        (server.max_concurrent_rpcs >= 1, "server.max_concurrent_rpcs must be at least 1"),
        (server.workers >= 1, "server.workers must be at least 1"),
        (server.metrics in ("", "emf"), "server.metrics must be \"\" (off) or \"emf\""),
        (server.metrics_interval_s > 0, "server.metrics_interval_s must be positive"),
        (compute.threads >= 1, "compute.threads must be at least 1 (0 means one per CPU)"),
        (compute.queue_size >= 0, "compute.queue_size must not be negative"),
        (compute.stream_window >= 1, "compute.stream_window must be at least 1 (0 means 2 x threads)"),
        (server.max_message_bytes >= 1024, "server.max_message_bytes must be at least 1024"),
        (server.shutdown_grace_s >= 0, "server.shutdown_grace_s must not be negative"),
        (server.shutdown_drain_s >= 0, "server.shutdown_drain_s must not be negative"),
        (math.isnan(model.threshold) or 0.0 <= model.threshold <= 1.0, "model.threshold must be within 0..1"),
        (model.intra_op_threads >= 1, "model.intra_op_threads must be at least 1"),
        (limits.max_stream_items >= 0, "limits.max_stream_items must not be negative (0 = no limit)"),
        (limits.rate_limit_per_minute >= 0, "limits.rate_limit_per_minute must not be negative (0 = off)"),
        (limits.rate_limit_burst >= 1, "limits.rate_limit_burst must be at least 1"),
        (bool(security.tls_cert) == bool(security.tls_key), "security.tls_cert and security.tls_key go together"),
        (not security.tls_client_ca or security.tls, "security.tls_client_ca needs tls_cert and tls_key"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
