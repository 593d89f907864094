"""Configuration in one place: shipped defaults <- --config file <- EKYC_* env <- flags."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ekyc.paths import DEFAULT_DETECTOR, DEFAULT_MATCHER, DEFAULT_MODEL
from ekyc.quality.options import DEFAULTS_FILE as QUALITY_DEFAULTS_FILE
from ekyc.quality.options import QualityGateOptions
from ekyc.settings import ConfigError, load_sections

DEFAULTS_FILE = Path(__file__).with_name("default.toml")


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
    http_port: int
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
class MatcherSettings:
    enabled: bool
    path: str
    profile: str
    intra_op_threads: int


@dataclass(frozen=True)
class Config:
    server: ServerSettings
    compute: ComputeSettings
    model: ModelSettings
    quality: QualityGateOptions
    limits: LimitSettings
    security: SecuritySettings
    matcher: MatcherSettings = MatcherSettings(False, "", "", 1)

    @property
    def model_path(self) -> str:
        return self.model.path or str(DEFAULT_MODEL)

    @property
    def matcher_path(self) -> str:
        return self.matcher.path or str(DEFAULT_MATCHER)


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the configuration: defaults, then ``path``, then ``EKYC_*`` env, then ``overrides``."""
    environ = os.environ if environ is None else environ
    data = load_sections([DEFAULTS_FILE, QUALITY_DEFAULTS_FILE], path, environ, overrides)
    return _build(data, environ.get("EKYC_API_KEYS", ""))


def _build(data: dict, api_keys_env: str = "") -> Config:
    try:
        server = ServerSettings(
            host=str(data["server"]["host"]),
            port=int(data["server"]["port"]),
            http_port=int(data["server"]["http_port"]),
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
        enabled = data["matcher"]["enabled"]
        if not isinstance(enabled, bool):
            raise ValueError("matcher.enabled must be true or false")
        matcher = MatcherSettings(
            enabled=enabled,
            path=str(data["matcher"]["path"]),
            profile=str(data["matcher"]["profile"]),
            intra_op_threads=int(data["matcher"]["intra_op_threads"]),
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
    if matcher.intra_op_threads < 1:
        raise ConfigError("matcher.intra_op_threads must be at least 1")
    if matcher.enabled and not quality.search.landmarks:
        raise ConfigError("matcher.enabled needs landmarks.enabled: faces are aligned by their landmarks")
    return Config(server, compute, model, quality, limits, security, matcher)


def _validate(server, compute, model, limits, security) -> None:
    checks = [
        (0 <= server.port <= 65535, f"server.port must be 0..65535, got {server.port}"),
        (0 <= server.http_port <= 65535, f"server.http_port must be 0..65535 (0 = no HTTP), got {server.http_port}"),
        (not server.http_port or server.http_port != server.port, "server.http_port must differ from server.port"),
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
