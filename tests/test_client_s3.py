"""ekyc-client with S3: `verify s3://bucket/prefix ... --output s3://bucket/key`.

S3 is moto's in-process fake (``mock_aws``), so the client runs in-process (``main``) against
a real ekyc-server on a loopback port. Checked: images are listed page by page as the batch
goes, every image gets one line, the results are uploaded once the batch has finished
(multipart for a large file) and nothing is left in S3, not even an unfinished multipart
upload, when the batch or the upload fails; without boto3, a clear error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest

boto3 = pytest.importorskip("boto3")
from moto import mock_aws  # noqa: E402

from conftest import flat_image  # noqa: E402
from ekyc.client import storage  # noqa: E402
from ekyc.client.cli import main  # noqa: E402

BUCKET = "ekyc-batches"


@pytest.fixture()
def s3(monkeypatch, tmp_path):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where an s3:// output is written first
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def put_images(s3, face_jpeg: bytes) -> list[str]:
    keys = [f"selfies/2026/{i:02d}.jpg" for i in range(5)] + ["selfies/2026/wall.png"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=flat_image() if key.endswith(".png") else face_jpeg)
    s3.put_object(Bucket=BUCKET, Key="selfies/2026/notes.txt", Body=b"not an image")
    s3.put_object(Bucket=BUCKET, Key="other/x.jpg", Body=face_jpeg)
    return [f"s3://{BUCKET}/{key}" for key in keys]


def no_leftovers(s3, key: str, tmp_path) -> None:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("Contents", [])
    assert not listed, listed
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads"), "an unfinished multipart upload is left"
    assert not list(tmp_path.glob("ekyc-client-*")), "the local copy is left"


@pytest.mark.parametrize("mode", [["--stream", "--connections", "2"], ["--stream"], []], ids=["streams", "stream", "unary"])
def test_a_prefix_is_verified_and_the_results_uploaded(s3, target, face_jpeg, tmp_path, capsys, mode):
    names = put_images(s3, face_jpeg)
    code = main(["--server", target, "verify", f"s3://{BUCKET}/selfies/", *mode,
                 "--output", f"s3://{BUCKET}/results/batch.jsonl"])
    assert code in (2, 3, 4), capsys.readouterr().err  # spoof/quality/uncertain: an answer for each
    body = s3.get_object(Bucket=BUCKET, Key="results/batch.jsonl")["Body"].read().decode()
    records = [json.loads(line) for line in body.splitlines()]
    assert sorted(r["path"] for r in records) == sorted(names)
    assert not [r for r in records if "error" in r]
    wall = next(r for r in records if r["path"].endswith("wall.png"))
    assert wall["status"] == "VERIFY_STATUS_QUALITY_FAILED"
    assert "summary: 6 images" in capsys.readouterr().err
    assert not list(tmp_path.glob("ekyc-client-*"))


def test_check_quality_writes_csv_to_s3(s3, target, face_jpeg):
    put_images(s3, face_jpeg)
    code = main(["--server", target, "check-quality", f"s3://{BUCKET}/selfies/2026/0",
                 "--output", f"s3://{BUCKET}/results/quality.csv"])
    assert code == 0
    rows = s3.get_object(Bucket=BUCKET, Key="results/quality.csv")["Body"].read().decode().splitlines()
    assert rows[0].startswith("path,") and len(rows) == 1 + 5


def test_the_listing_is_read_page_by_page_as_the_batch_goes(s3, face_jpeg):
    put_images(s3, face_jpeg)
    calls = []
    client = boto3.client("s3", region_name="us-east-1")
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kwargs: calls.append(1))
    sources = storage.iter_sources([f"s3://{BUCKET}/selfies/"], client_factory=lambda: client, page_size=2)
    first = next(sources)
    assert first.name == f"s3://{BUCKET}/selfies/2026/00.jpg" and len(calls) == 1  # one page, not the listing
    rest = list(sources)
    assert len(rest) == 5 and len(calls) == 4  # 7 keys, 2 per page (notes.txt listed, skipped)
    assert first.read()[:2] == b"\xff\xd8"  # read when its turn comes


def test_a_failed_batch_uploads_nothing(s3, face_jpeg, tmp_path, capsys):
    put_images(s3, face_jpeg)
    code = main(["--server", "127.0.0.1:1", "--timeout", "2", "verify", f"s3://{BUCKET}/selfies/", "--stream",
                 "--connections", "2", "--output", f"s3://{BUCKET}/results/failed.jsonl"])
    assert code == 1 and "unavailable" in capsys.readouterr().err
    no_leftovers(s3, "results/", tmp_path)


def test_a_large_output_is_uploaded_in_parts_and_a_failed_part_leaves_nothing(s3, tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "MULTIPART_CHUNK_BYTES", 5 * 1024 * 1024)  # S3's smallest part
    data = b"".join(json.dumps({"path": f"s3://b/{i:08d}.jpg", "status": "X" * 100}).encode() + b"\n"
                    for i in range(80_000))
    assert len(data) > 2 * storage.MULTIPART_CHUNK_BYTES
    output = storage.Output(f"s3://{BUCKET}/results/big.jsonl")
    with open(output.local_path, "wb") as handle:
        handle.write(data)
    output.commit()
    head = s3.head_object(Bucket=BUCKET, Key="results/big.jsonl")
    assert head["ContentLength"] == len(data) and head["ETag"].strip('"').endswith("-3")  # three parts
    assert s3.get_object(Bucket=BUCKET, Key="results/big.jsonl")["Body"].read() == data
    assert not list(tmp_path.glob("ekyc-client-*"))

    # The same upload, its second part refused by S3: the multipart upload is aborted.
    output = storage.Output(f"s3://{BUCKET}/results/broken.jsonl")
    with open(output.local_path, "wb") as handle:
        handle.write(data)
    parts = []

    def refuse_second_part(**kwargs):
        parts.append(1)
        if len(parts) == 2:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "UploadPart")

    output._s3.meta.events.register("before-call.s3.UploadPart", refuse_second_part)
    with pytest.raises(storage.StorageError, match="cannot upload"):
        output.commit()
    no_leftovers(s3, "results/broken", tmp_path)


def test_an_output_to_a_missing_bucket_is_one_error_line(s3, target, face_jpeg, tmp_path, capsys):
    put_images(s3, face_jpeg)
    code = main(["--server", target, "verify", f"s3://{BUCKET}/selfies/2026/00.jpg",
                 "--output", "s3://no-such-bucket/out.jsonl"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot upload s3://no-such-bucket/out.jsonl" in err and "Traceback" not in err
    assert not list(tmp_path.glob("ekyc-client-*"))


@pytest.mark.parametrize("address, words", [("s3:///photos", "names no bucket"), ("s3://bucket/", "names no object key")])
def test_malformed_s3_addresses_are_usage_errors(s3, address, words, capsys):
    args = ["verify", address] if "photos" in address else ["verify", "x.jpg", "--output", address]
    assert main(["--server", "127.0.0.1:1", *args]) == 1
    assert words in capsys.readouterr().err


def test_without_boto3_an_s3_address_is_a_clear_error():
    code = (
        "import sys\n"
        "sys.modules['boto3'] = None\n"
        "from ekyc.client.cli import main\n"
        "sys.exit(main(['--server', '127.0.0.1:1', 'verify', 's3://bucket/prefix/']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pip install 'ekyc[s3]'" in result.stderr
