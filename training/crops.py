"""The face-crop cache: every sample decoded, detected and cropped exactly as the server does.

Layout: ``<cache_root>/<rule>/<data-id>/index.csv`` plus ``images/<id>.png`` (lossless, so
the cached crop is bit-identical to what ``crop_main_face`` returned), under
``<cache_dir>/crops-main-face/``. ``<rule>`` names the
``CropRule`` (``s128-x1.2``); ``<data-id>`` is the data directory's name and a hash of its
absolute path, so two data sets never share entries. The cache is incremental: samples
already in the index are not processed again, and a new crop rule reuses the face boxes
another rule's cache of the same data already found (the detector does not depend on the
rule), so only decoding and cropping run again.

The face is chosen and cropped by the server's own function, ``ekyc.quality.face_search``
(``FaceFinder.find`` with the shipped gate settings, then ``crop_main_face``): the most
prominent face the face mesh confirms, with tiles where small faces could hide. (Caches of the
earlier rule, the largest detector box, lived under ``crops/`` and are not reused.)

Only ``ok`` crops (the main face, as in the server) are used by default:
an image without a detected face never reaches the model in the server (``NO_FACE``), so
training on or scoring such images would describe a path that does not exist. The
fallbacks (``whole_image`` for tight face-crop images, ``dataset_box`` for CelebA-Spoof's
``*_BB.txt`` boxes) are recorded and can be asked for (``usable(..., fallback=True)``).
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ekyc.paths import DEFAULT_CACHE, DEFAULT_DETECTOR
from ekyc.training.data import Sample

CACHE_FOLDER = "crops-main-face"

# Status of one sample in the index.
OK = "ok"  # the main face, cropped (the served path)
WHOLE_IMAGE = "whole_image"  # a face_crop image with no detection: the whole image is the face box
DATASET_BOX = "dataset_box"  # no detection, the data set's own box (CelebA-Spoof *_BB.txt)
NO_FACE = "no_face"  # a frame with no detection and no box: skipped
UNREADABLE = "unreadable"  # decoding failed: skipped
SERVED = frozenset({OK})
USABLE = frozenset({OK, WHOLE_IMAGE, DATASET_BOX})
INDEX_COLUMNS = ("path", "status", "file", "x", "y", "width", "height", "score", "faces",
                 "image_width", "image_height", "detail")


def rule_name(rule) -> str:
    """``s128-x1.2`` (border replicated) or ``s80-x2.7-shift`` (window moved inside the image)."""
    fit = getattr(rule, "fit", "replicate")
    return f"s{rule.size}-x{rule.scale:g}" + ("" if fit == "replicate" else f"-{fit}")


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
        return cls(base / CACHE_FOLDER / rule_name(rule) / data_id(data_dir), rule)

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

    def usable(self, samples: list[Sample], fallback: bool = False) -> list[tuple[Sample, Path]]:
        """The samples that have a cached crop, with the crop's file.

        Default: detected faces only (what the server scores); ``fallback`` adds the
        whole-image and data-set-box crops.
        """
        index = self.read_index()
        allowed = USABLE if fallback else SERVED
        out = []
        for s in samples:
            row = index.get(s.path)
            if row and row["status"] in allowed and row.get("file"):
                out.append((s, self.root / row["file"]))
        return out

    def rows(self, samples: list[Sample]) -> list[dict | None]:
        index = self.read_index()
        return [index.get(s.path) for s in samples]

    def sibling_indexes(self) -> list[Path]:
        """Index files of other crop rules for the same data (their face boxes are reusable)."""
        crops_root = self.root.parent.parent
        return [p for p in sorted(crops_root.glob(f"*/{self.root.name}/index.csv")) if p != self.index_path]


def load_crop(path: Path) -> np.ndarray:
    """A cached crop as RGB uint8 (S, S, 3)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_crops(paths: list[Path]) -> np.ndarray:
    return np.stack([load_crop(p) for p in paths]) if paths else np.zeros((0, 0, 0, 3), np.uint8)


def dataset_face(sample: Sample, width: int, height: int):
    """The data set's own face box (CelebA-Spoof ``bbox_224``) in image pixels, or None."""
    from ekyc.quality.faces import Face

    box = sample.meta.get("bbox_224")
    if not box:
        return None
    sx, sy = width / 224.0, height / 224.0
    x, y = int(round(box[0] * sx)), int(round(box[1] * sy))
    w, h = int(round(box[2] * sx)), int(round(box[3] * sy))
    x, y = max(0, min(x, width - 1)), max(0, min(y, height - 1))
    w, h = max(1, min(w, width - x)), max(1, min(h, height - y))
    return Face(x, y, w, h, float(box[4]) if len(box) > 4 else 0.0)


def face_for(rgb: np.ndarray, sample: Sample, finder) -> tuple[str, tuple, int]:
    """(status, faces with the one to crop first, number of faces that matter) for one decoded
    image; ``finder`` is a ``FaceFinder`` (the server's face search)."""
    from ekyc.quality.faces import Face

    faces, _ = finder.find(rgb)
    if faces:
        return OK, tuple(faces), len(faces)
    height, width = rgb.shape[:2]
    box = dataset_face(sample, width, height)
    if box is not None:
        return DATASET_BOX, (box,), 0
    if sample.kind == "face_crop":
        return WHOLE_IMAGE, (Face(0, 0, width, height, 0.0),), 0
    return NO_FACE, (), 0


def crop_sample(rgb: np.ndarray, sample: Sample, finder, rule) -> tuple[str, np.ndarray | None, object, int]:
    """(status, crop or None, face box used, number of faces that matter) for one decoded image."""
    from ekyc.quality.face_search import crop_main_face

    status, faces, n_faces = face_for(rgb, sample, finder)
    return status, crop_main_face(rgb, faces, rule), (faces[0] if faces else None), n_faces


class _KnownBoxes:
    """A detector stand-in that answers from boxes another crop rule's cache already holds."""

    def __init__(self, rows: dict[str, dict], finder_factory):
        self.rows = rows
        self._factory = finder_factory
        self._finder = None

    def face_for(self, rgb: np.ndarray, sample: Sample):
        from ekyc.quality.faces import Face

        row = self.rows.get(sample.path)
        if row and row.get("status") in (OK, WHOLE_IMAGE, DATASET_BOX, NO_FACE) and (
            row["status"] == NO_FACE or row.get("width")
        ):
            if row["status"] == NO_FACE:
                return NO_FACE, (), 0
            face = Face(int(row["x"]), int(row["y"]), int(row["width"]), int(row["height"]),
                        float(row.get("score") or 0.0))
            return row["status"], (face,), int(row.get("faces") or 0)
        if self._finder is None:
            self._finder = self._factory()
        return face_for(rgb, sample, self._finder)

    def close(self):
        if self._finder is not None:
            self._finder.close()


def build_crops(
    samples: list[Sample],
    data_dir: Path | str,
    cache: CropCache,
    detector_path: Path | str = DEFAULT_DETECTOR,
    min_confidence: float | None = None,
    progress: bool = True,
) -> Counter:
    """Crop every sample not yet in the cache; returns status counts over all ``samples``.

    Faces are found with the server's face search and its shipped settings
    (quality/defaults.toml), with ``detector_path`` (and ``min_confidence``, if given) as the
    detector; decoding has the server's pixel limit."""
    from dataclasses import replace

    from PIL import Image
    from tqdm import tqdm

    from ekyc.quality.decode import decode_image
    from ekyc.quality.errors import InvalidImageError
    from ekyc.quality.face_search import FaceFinder, crop_main_face
    from ekyc.quality.options import load_gate_options

    options = load_gate_options(environ={})
    options = replace(options, detector_model=Path(detector_path),
                      min_detection_confidence=options.min_detection_confidence if min_confidence is None
                      else min_confidence)

    data_dir = Path(data_dir)
    index = cache.read_index()
    todo = [s for s in samples if s.path not in index]
    (cache.root / "images").mkdir(parents=True, exist_ok=True)
    if todo:
        known: dict[str, dict] = {}
        for other in cache.sibling_indexes():
            with open(other, newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    known.setdefault(row["path"], row)
        boxes = _KnownBoxes(known, lambda: FaceFinder(options))
        try:
            for n, s in enumerate(tqdm(todo, desc="crops", unit="img", disable=not progress, file=sys.stderr)):
                row = {"path": s.path}
                try:
                    rgb = decode_image((data_dir / s.path).read_bytes(), options.max_image_pixels)
                except (OSError, InvalidImageError) as exc:
                    row.update(status=UNREADABLE, detail=str(exc))
                else:
                    status, faces, n_faces = boxes.face_for(rgb, s)
                    row.update(status=status, faces=n_faces, image_width=rgb.shape[1], image_height=rgb.shape[0])
                    if faces:
                        face = faces[0]
                        row.update(x=face.x, y=face.y, width=face.width, height=face.height, score=f"{face.score:.4f}")
                        target = cache.crop_file(s.path)
                        Image.fromarray(crop_main_face(rgb, faces, cache.rule)).save(target)
                        row["file"] = target.relative_to(cache.root).as_posix()
                index[s.path] = row
                if n % 500 == 499:
                    cache.write_index(index)
        finally:
            boxes.close()
        cache.write_index(index)
    missing_size = [s for s in samples if s.path in index and not index[s.path].get("image_width")
                    and index[s.path]["status"] != UNREADABLE]
    if missing_size:  # an index written before sizes were recorded: read them from the headers
        from PIL import ImageOps

        for s in missing_size:
            with Image.open(data_dir / s.path) as image:
                width, height = ImageOps.exif_transpose(image).size if image.getexif().get(0x0112, 1) != 1 else image.size
            index[s.path].update(image_width=width, image_height=height)
        cache.write_index(index)
    return Counter(index[s.path]["status"] for s in samples)


def describe_counts(counts: Counter, samples: list[Sample], cache: CropCache) -> str:
    index = cache.read_index()
    by_kind: Counter = Counter()
    for s in samples:
        by_kind[(s.kind, index.get(s.path, {}).get("status", "missing"))] += 1
    parts = [f"{kind}/{status}={n}" for (kind, status), n in sorted(by_kind.items())]
    return f"{sum(counts.values())} samples: " + ", ".join(parts)
