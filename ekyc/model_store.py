"""Where a model comes from: a local path, or an S3 object downloaded once and verified; SHA-256s.

Shared by the server (loading) and training (export, publish); boto3 is imported only when S3 is used.

``resolve_model("s3://bucket/models/liveness/<version>/liveness.onnx")`` downloads the ONNX
file and its metadata (the same key with ``.json``) into a local cache, checks the ONNX
file's SHA-256 against the one the metadata records (``onnx.sha256``, written by
``ekyc-train export``; ``ekyc-train publish`` also stores it as the objects' ``sha256`` user
metadata) and returns the local path for ``LivenessModel``. A later call finds the verified
files in the cache and does not touch the network. Any other string is a local path and is
returned as it is.

Cache directory: ``cache_dir``, else ``$EKYC_MODEL_CACHE``, else ``~/.cache/ekyc/models``;
files live under ``<cache>/<bucket>/<key>``. Endpoint: boto3's usual configuration
(credentials, region, ``AWS_ENDPOINT_URL``) or ``$EKYC_S3_ENDPOINT_URL``.

Every failure — bucket or key missing, S3 unreachable, no credentials, metadata without a
hash, hash mismatch — is a ``ModelLoadError`` with a one-line message; nothing half-written
is left in the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from ekyc.errors import ModelLoadError

DEFAULT_CACHE = Path("~/.cache/ekyc/models")


def sha256_file(path: Path | str) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); ModelLoadError when it is not one."""
    rest = uri[len("s3://"):] if uri.startswith("s3://") else ""
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ModelLoadError(f"not an S3 model URI (s3://bucket/key.onnx): {uri}")
    return bucket, key


def cache_root(cache_dir: Path | str | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("EKYC_MODEL_CACHE") or DEFAULT_CACHE).expanduser()


def s3_client():
    """A boto3 S3 client that fails fast when the endpoint cannot be reached."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - boto3 is in the server extra
        raise ModelLoadError("loading a model from s3:// needs boto3 (pip install boto3)") from None
    config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"})
    endpoint = os.environ.get("EKYC_S3_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def _expected_sha256(metadata_path: Path, uri: str) -> str:
    try:
        metadata = json.loads(metadata_path.read_text())
        expected = str(metadata["onnx"]["sha256"]).lower()
    except (ValueError, KeyError, TypeError):
        raise ModelLoadError(f"model metadata for {uri} has no onnx.sha256 to verify the download against") from None
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ModelLoadError(f"model metadata for {uri} has an invalid onnx.sha256: {expected!r}")
    return expected


def _cached_ok(onnx_path: Path, json_path: Path, uri: str) -> bool:
    if not (onnx_path.is_file() and json_path.is_file()):
        return False
    try:
        return sha256_file(onnx_path) == _expected_sha256(json_path, uri)
    except ModelLoadError:
        return False


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


def _download(client, bucket: str, key: str, target: Path) -> dict:
    """Download one object to ``target``; returns its user metadata. Errors -> ModelLoadError."""
    from botocore.exceptions import BotoCoreError, ClientError

    uri = f"s3://{bucket}/{key}"
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        client.download_file(bucket, key, str(target))
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise ModelLoadError(f"model not found: {uri}") from None
        if code in ("NoSuchBucket",):
            raise ModelLoadError(f"model bucket not found: s3://{bucket}") from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ModelLoadError(f"access denied to {uri} (check the credentials)") from None
        raise ModelLoadError(f"cannot download {uri}: {_describe(exc)}") from None
    except BotoCoreError as exc:
        raise ModelLoadError(f"cannot reach S3 for {uri}: {_describe(exc)}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot write the download of {uri} to {target.parent}: {_describe(exc)}") from None
    return {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}


def resolve_model(uri: str, cache_dir: Path | None = None, client=None) -> Path:
    """A local path for the model at ``uri`` (a local path or ``s3://bucket/key.onnx``).

    S3: downloads ``key.onnx`` and ``key.json`` once into the cache, verifies the ONNX file's
    SHA-256 against the metadata's ``onnx.sha256`` (and the object's ``sha256`` user metadata
    when set), and returns the cached ``.onnx`` path. Raises ``ModelLoadError`` (one line)
    when the objects are missing or unreachable or the hash does not match.
    """
    uri = str(uri)
    if not uri.startswith("s3://"):
        return Path(uri).expanduser()
    bucket, key = parse_s3_uri(uri)
    if not key.endswith(".onnx"):
        raise ModelLoadError(f"an S3 model URI must name the .onnx object: {uri}")
    json_key = key[: -len(".onnx")] + ".json"
    root = cache_root(cache_dir)
    onnx_path = root / bucket / key
    json_path = root / bucket / json_key
    if _cached_ok(onnx_path, json_path, uri):
        return onnx_path
    try:
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(f"model cache {root} is not writable: {_describe(exc)}") from None
    client = client or s3_client()
    with tempfile.TemporaryDirectory(dir=onnx_path.parent, prefix=".download-") as tmp:
        tmp_json = Path(tmp) / "model.json"
        tmp_onnx = Path(tmp) / "model.onnx"
        _download(client, bucket, json_key, tmp_json)
        expected = _expected_sha256(tmp_json, uri)
        object_meta = _download(client, bucket, key, tmp_onnx)
        actual = sha256_file(tmp_onnx)
        if actual != expected:
            raise ModelLoadError(f"sha256 mismatch for {uri}: metadata says {expected}, the download is {actual}")
        tagged = object_meta.get("sha256")
        if tagged and tagged.lower() != actual:
            raise ModelLoadError(f"sha256 mismatch for {uri}: object metadata says {tagged}, the download is {actual}")
        os.replace(tmp_json, json_path)
        os.replace(tmp_onnx, onnx_path)
    return onnx_path
