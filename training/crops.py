"""The face-crop cache: every sample decoded, detected and cropped exactly as the server does.

Layout: ``<cache_root>/<rule>/<data-id>/index.csv`` plus ``images/<id>.png`` (lossless, so
the cached crop is bit-identical to what ``crop_face`` returned). ``<rule>`` names the
``CropRule`` (``s128-x1.2``); ``<data-id>`` is the data directory's name and a hash of its
absolute path, so two data sets never share entries. The cache is incremental: samples
already in the index are not processed again.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ekyc.training.data import Sample

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = PROJECT_ROOT / ".cache"
DEFAULT_DETECTOR = PROJECT_ROOT / "models" / "face_landmarker.task"
# The server's default limit (server/default.toml [quality] max_image_pixels).
MAX_PIXELS = 40_000_000

# Status of one sample in the index.
OK = "ok"  # largest detected face, cropped
WHOLE_IMAGE = "whole_image"  # a face_crop image with no detection: the whole image is the face box
NO_FACE = "no_face"  # a frame with no detection: skipped
UNREADABLE = "unreadable"  # decoding failed: skipped
USABLE = frozenset({OK, WHOLE_IMAGE})
INDEX_COLUMNS = ("path", "status", "file", "x", "y", "width", "height", "score", "faces", "detail")


def rule_name(rule) -> str:
    return f"s{rule.size}-x{rule.scale:g}"


def data_id(data_dir: Path | str) -> str:
    resolved = str(Path(data_dir).resolve())
    return f"{Path(resolved).name or 'data'}-{hashlib.sha1(resolved.encode()).hexdigest()[:8]}"


@dataclass
class CropCache:
    """Where one data set's crops for one crop rule live."""

    root: Path
    rule: object  # ekyc.quality.faces.CropRule

    @classmethod
    def for_data(cls, data_dir: Path | str, rule, cache_dir: Path | str | None = None) -> "CropCache":
        base = Path(cache_dir) if cache_dir else DEFAULT_CACHE
        return cls(base / "crops" / rule_name(rule) / data_id(data_dir), rule)

    @property
    def index_path(self) -> Path:
        return self.root / "index.csv"

    def read_index(self) -> dict[str, dict]:
        if not self.index_path.is_file():
            return {}
        with open(self.index_path, newline="", encoding="utf-8") as handle:
            return {row["path"]: row for row in csv.DictReader(handle)}

    def write_index(self, rows: dict[str, dict]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_suffix(".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=INDEX_COLUMNS)
            writer.writeheader()
            for key in sorted(rows):
                writer.writerow({c: rows[key].get(c, "") for c in INDEX_COLUMNS})
        tmp.replace(self.index_path)

    def crop_file(self, sample_path: str) -> Path:
        return self.root / "images" / (hashlib.sha1(sample_path.encode()).hexdigest()[:20] + ".png")

    def usable(self, samples: list[Sample]) -> list[tuple[Sample, Path]]:
        """The samples that have a cached crop, with the crop's file."""
        index = self.read_index()
        out = []
        for s in samples:
            row = index.get(s.path)
            if row and row["status"] in USABLE:
                out.append((s, self.root / row["file"]))
        return out


def load_crop(path: Path) -> np.ndarray:
    """A cached crop as RGB uint8 (S, S, 3)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_crops(paths: list[Path]) -> np.ndarray:
    return np.stack([load_crop(p) for p in paths]) if paths else np.zeros((0, 0, 0, 3), np.uint8)


def crop_sample(rgb: np.ndarray, sample: Sample, detector, rule) -> tuple[str, np.ndarray | None, object, int]:
    """(status, crop or None, face box used, number of faces detected) for one decoded image."""
    from ekyc.quality.faces import Face, crop_face

    faces = detector.detect(rgb)
    if faces:
        return OK, crop_face(rgb, faces[0], rule), faces[0], len(faces)
    if sample.kind == "face_crop":
        height, width = rgb.shape[:2]
        face = Face(0, 0, width, height, 0.0)
        return WHOLE_IMAGE, crop_face(rgb, face, rule), face, 0
    return NO_FACE, None, None, 0


def build_crops(
    samples: list[Sample],
    data_dir: Path | str,
    cache: CropCache,
    detector_path: Path | str = DEFAULT_DETECTOR,
    min_confidence: float = 0.5,
    progress: bool = True,
) -> Counter:
    """Crop every sample not yet in the cache; returns status counts over all ``samples``."""
    from PIL import Image
    from tqdm import tqdm

    from ekyc.quality.decode import decode_image
    from ekyc.quality.errors import InvalidImageError
    from ekyc.quality.faces import FaceDetector, FaceDetectorOptions

    data_dir = Path(data_dir)
    index = cache.read_index()
    todo = [s for s in samples if s.path not in index]
    (cache.root / "images").mkdir(parents=True, exist_ok=True)
    if todo:
        options = FaceDetectorOptions(model_path=Path(detector_path), min_confidence=min_confidence)
        with FaceDetector(options) as detector:
            for n, s in enumerate(tqdm(todo, desc="crops", unit="img", disable=not progress, file=sys.stderr)):
                row = {"path": s.path}
                try:
                    rgb = decode_image((data_dir / s.path).read_bytes(), MAX_PIXELS)
                except (OSError, InvalidImageError) as exc:
                    row.update(status=UNREADABLE, detail=str(exc))
                else:
                    status, crop, face, n_faces = crop_sample(rgb, s, detector, cache.rule)
                    row.update(status=status, faces=n_faces)
                    if face is not None:
                        row.update(x=face.x, y=face.y, width=face.width, height=face.height, score=f"{face.score:.4f}")
                    if crop is not None:
                        target = cache.crop_file(s.path)
                        Image.fromarray(crop).save(target)
                        row["file"] = target.relative_to(cache.root).as_posix()
                index[s.path] = row
                if n % 500 == 499:
                    cache.write_index(index)
        cache.write_index(index)
    return Counter(index[s.path]["status"] for s in samples)


def describe_counts(counts: Counter, samples: list[Sample], cache: CropCache) -> str:
    index = cache.read_index()
    by_kind: Counter = Counter()
    for s in samples:
        by_kind[(s.kind, index.get(s.path, {}).get("status", "missing"))] += 1
    parts = [f"{kind}/{status}={n}" for (kind, status), n in sorted(by_kind.items())]
    return f"{sum(counts.values())} samples: " + ", ".join(parts)
