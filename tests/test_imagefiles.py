"""One list of image suffixes and one folder walk, for ekyc-client, ekyc-quality and training."""

from __future__ import annotations

from pathlib import Path

from ekyc import imagefiles
from ekyc.quality import cli as quality_cli
from ekyc.quality.decode import SUPPORTED_FORMATS


def test_the_suffixes_are_those_of_the_formats_the_server_decodes():
    extensions = {".jpg", ".jpeg"} if "JPEG" in SUPPORTED_FORMATS else set()
    extensions |= {f".{name.lower()}" for name in SUPPORTED_FORMATS if name != "JPEG"}
    assert imagefiles.IMAGE_SUFFIXES == extensions


def test_folders_are_walked_sorted_and_files_are_kept_as_given(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/2.webp", "a.PNG", "c.jpeg", "notes.txt", "b/1.jpg"):
        (tmp_path / name).write_bytes(b"x")
    given = str(tmp_path / "notes.txt")
    paths = list(imagefiles.expand_paths([tmp_path, given]))
    names = [p[len(str(tmp_path)) + 1:] for p in paths]
    assert names == ["a.PNG", "b/1.jpg", "b/2.webp", "c.jpeg", "notes.txt"]
    assert [str(p) for p in quality_cli.expand_paths([tmp_path])] == paths[:-1]


def test_training_folders_include_webp_samples(tmp_path):
    from ekyc.training.data import load_folder

    for name in ("live/p1/a.webp", "live/p1/b.jpg", "spoof/p1/c.WebP", "spoof/p1/readme.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    samples = load_folder(tmp_path)
    assert sorted(Path(s.path).name for s in samples) == ["a.webp", "b.jpg", "c.WebP"]
