"""Publish a model to S3 under a versioned key, with SHA-256s (``ekyc-train publish``).

    ekyc-train publish models/liveness.onnx s3://bucket/models/liveness [--report FILE ...]

writes, under ``<prefix>/<version>/`` (``version`` from the model's metadata):

* ``<name>.onnx`` and ``<name>.json`` (the metadata, which records ``onnx.sha256``);
* ``reports/<file>`` for every ``--report`` (JSON, Markdown, PNG);
* ``manifest.json``: every published object's key, size and SHA-256.

Each object also carries its SHA-256 as S3 user metadata (``x-amz-meta-sha256``). A version
is immutable: publishing different bytes under an existing version is refused (bump the
version); publishing the same bytes again is a no-op. The server (``ekyc-server --model
s3://bucket/<prefix>/<version>/<name>.onnx``, ``ekyc.model_store.resolve_model``)
downloads the pair once and verifies the hash.
"""

from __future__ import annotations

import json
import mimetypes
from datetime import datetime, timezone
from pathlib import Path

from ekyc.model_store import parse_s3_uri, s3_client, sha256_file


class PublishError(Exception):
    """The model cannot be published; the message says why."""


def _existing_sha256(client, bucket: str, key: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}.get("sha256", "")


def publish(onnx_path: Path | str, destination: str, reports: list[Path | str] = (), client=None) -> dict:
    """Upload the model, its metadata and reports; returns the manifest (with ``model_uri``)."""
    from botocore.exceptions import BotoCoreError, ClientError

    onnx_path = Path(onnx_path)
    meta_path = onnx_path.with_suffix(".json")
    if not onnx_path.is_file() or not meta_path.is_file():
        raise PublishError(f"need {onnx_path} and {meta_path}")
    metadata = json.loads(meta_path.read_text())
    version = str(metadata.get("version") or "")
    if not version or "/" in version:
        raise PublishError(f"{meta_path}: version must be a non-empty string without '/', got {version!r}")
    digest = sha256_file(onnx_path)
    recorded = (metadata.get("onnx") or {}).get("sha256")
    if recorded != digest:
        raise PublishError(f"{meta_path} records onnx.sha256 {recorded}, but {onnx_path} hashes to {digest}: re-export")
    bucket, prefix = parse_s3_uri(destination.rstrip("/") + "/") if destination.startswith("s3://") else (None, None)
    if not bucket:
        raise PublishError(f"destination must be s3://bucket/prefix, got {destination}")
    prefix = prefix.strip("/")
    base = f"{prefix}/{version}" if prefix else version
    files = [(onnx_path, f"{base}/{onnx_path.name}"), (meta_path, f"{base}/{meta_path.name}")]
    for report in reports:
        report = Path(report)
        if not report.is_file():
            raise PublishError(f"report not found: {report}")
        files.append((report, f"{base}/reports/{report.name}"))
    client = client or s3_client()
    manifest = {"version": version, "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "model_uri": f"s3://{bucket}/{base}/{onnx_path.name}", "objects": []}
    try:
        for path, key in files:
            sha = sha256_file(path)
            existing = _existing_sha256(client, bucket, key)
            if existing is not None and existing != sha:
                raise PublishError(f"s3://{bucket}/{key} exists with other content (sha256 {existing or 'unknown'}); "
                                   "versions are immutable: export with a new --version")
            if existing is None:
                content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                client.upload_file(str(path), bucket, key,
                                   ExtraArgs={"Metadata": {"sha256": sha}, "ContentType": content_type})
            manifest["objects"].append({"key": key, "bytes": path.stat().st_size, "sha256": sha,
                                        "uploaded": existing is None})
        body = json.dumps(manifest, indent=2).encode()
        client.put_object(Bucket=bucket, Key=f"{base}/manifest.json", Body=body, ContentType="application/json")
    except (ClientError, BotoCoreError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise PublishError(f"upload to s3://{bucket}/{base}/ failed: {exc.__class__.__name__}: {first}") from None
    return manifest
