"""Where ekyc-client reads images and writes results: local paths, or S3 (``s3://bucket/prefix``).

S3 needs boto3, an optional extra of the client (``pip install 'ekyc[s3]'``); it is imported
only when an ``s3://`` address is used. Sources are listed page by page as the batch goes and
each object is read when its turn comes, so a prefix of a million images is never held in
memory. An ``s3://`` output is written to a local temporary file and uploaded once the batch
has finished (boto3's managed transfer: a multipart upload for large files, aborted if it
fails), so a failed or interrupted run leaves no object behind, not even a partial one.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ekyc.imagefiles import IMAGE_SUFFIXES, expand_paths

S3_PREFIX = "s3://"
# Parts of the output's multipart upload (S3's minimum part is 5 MiB).
MULTIPART_CHUNK_BYTES = 8 * 1024 * 1024


class StorageError(Exception):
    """An S3 address is malformed, boto3 is missing, or S3 refused a listing or an upload."""


def is_s3(location: str | os.PathLike) -> bool:
    return str(location).startswith(S3_PREFIX)


def parse_s3(uri: str) -> tuple[str, str]:
    """s3://bucket/key-or-prefix -> (bucket, key); the key may be empty (the whole bucket)."""
    rest = uri[len(S3_PREFIX):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} names no bucket: use s3://BUCKET/PREFIX")
    return bucket, key


def s3_client():
    """A boto3 S3 client (region and credentials from the environment, as the AWS CLI's)."""
    try:
        import boto3
    except ImportError:
        raise StorageError("s3:// addresses need boto3: pip install 'ekyc[s3]' (or pip install boto3)") from None
    return boto3.client("s3")


@dataclass(frozen=True)
class Source:
    """One image: the name the output shows (a path or an s3:// URI) and how to read it."""

    name: str
    read: Callable[[], bytes]


def iter_sources(locations: list[str], client_factory=s3_client, page_size: int = 1000) -> Iterator[Source]:
    """Every image under ``locations`` in order: files as given, folders walked (sorted),
    s3:// prefixes listed ``page_size`` keys at a time as the caller goes (in key order, image
    suffixes only)."""
    s3 = None
    for location in locations:
        if is_s3(location):
            bucket, prefix = parse_s3(location)
            s3 = s3 or client_factory()
            yield from _s3_objects(s3, bucket, prefix, page_size)
        else:
            for path in expand_paths([location]):
                yield Source(path, (lambda p=path: Path(p).read_bytes()))


def _s3_objects(s3, bucket: str, prefix: str, page_size: int) -> Iterator[Source]:
    from botocore.exceptions import BotoCoreError, ClientError

    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix,
                                                          PaginationConfig={"PageSize": page_size})
    try:
        for page in pages:
            for entry in page.get("Contents", []):
                key = entry["Key"]
                if Path(key).suffix.lower() in IMAGE_SUFFIXES:
                    yield Source(f"{S3_PREFIX}{bucket}/{key}", (lambda k=key: _get(s3, bucket, k)))
    except (ClientError, BotoCoreError) as error:
        raise StorageError(f"cannot list s3://{bucket}/{prefix}: {error}") from None


def _get(s3, bucket: str, key: str) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as error:
        raise OSError(f"cannot read s3://{bucket}/{key}: {error}") from None


class Output:
    """The results file: a local path, or an s3:// key written locally and uploaded by ``commit``."""

    def __init__(self, location: str, client_factory=s3_client):
        self.location = location
        self._s3 = None
        self._temporary: str | None = None
        if is_s3(location):
            self._bucket, self._key = parse_s3(location)
            if not self._key or self._key.endswith("/"):
                raise StorageError(f"{location!r} names no object key: use s3://BUCKET/KEY.jsonl (or .csv)")
            self._s3 = client_factory()
            handle, self._temporary = tempfile.mkstemp(prefix="ekyc-client-", suffix=Path(self._key).suffix)
            os.close(handle)

    @property
    def suffix(self) -> str:
        return Path(self._key if self._s3 is not None else self.location).suffix.lower()

    @property
    def local_path(self) -> str:
        """Where the writer writes (the final file, or the temporary one of an s3:// output)."""
        return self._temporary or self.location

    def commit(self) -> None:
        """Upload an s3:// output (multipart for large files; nothing is left if it fails) and
        remove the temporary file; nothing to do for a local file."""
        if self._s3 is None:
            return
        from boto3.exceptions import Boto3Error
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        config = TransferConfig(multipart_threshold=MULTIPART_CHUNK_BYTES, multipart_chunksize=MULTIPART_CHUNK_BYTES,
                                use_threads=False)
        try:
            self._s3.upload_file(self._temporary, self._bucket, self._key, Config=config)
        except (ClientError, BotoCoreError, Boto3Error) as error:
            raise StorageError(f"cannot upload {self.location}: {error}") from None
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop a not yet uploaded s3:// output (a failed or interrupted run)."""
        if self._temporary is not None and os.path.exists(self._temporary):
            os.unlink(self._temporary)
