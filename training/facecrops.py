"""Several crops of one detected face, one per named model input, cached as arrays.

A liveness model may look at a face through more than one window: our MobileNetV2 at
1.2x the face box (128 px, border replicated outside the image), MiniFASNetV2 at 2.7x and
MiniFASNetV1SE at 4.0x (80 px, the window shifted back inside the image, never padded: the
rule of Minivision's Silent-Face Anti-Spoofing). ``CropSpec`` names one such input (a named
``ekyc.quality.faces.CropRule``) and ``crop_input`` cuts it with the server's ``crop_face``.

``FaceArrays`` caches the crops of a data set for a list of specs (and optionally after a
capture shift applied to the whole image, ``ekyc.training.shifts``) as ``.npz`` files under
``.cache/facecrops/``. The face boxes come from the crop cache's index
(``ekyc.training.crops``): the detector ran once, exactly as the server runs it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ekyc.paths import DEFAULT_CACHE
from ekyc.training.crops import OK, CropCache, data_id
from ekyc.training.data import Sample

FITS = ("replicate", "shift")


@dataclass(frozen=True)
class CropSpec:
    """One model input: ``size`` px square, ``scale`` x the face box, how the window meets the
    image edge (``replicate``: padded with the border; ``shift``: moved back inside)."""

    name: str
    size: int
    scale: float
    fit: str = "replicate"

    def __post_init__(self):
        if self.fit not in FITS:
            raise ValueError(f"crop fit must be one of {FITS}, got {self.fit!r}")
        if self.size < 8 or self.scale <= 0:
            raise ValueError(f"crop {self.name}: size must be >= 8 and scale > 0")

    def to_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "scale": self.scale, "fit": self.fit}

    @classmethod
    def from_dict(cls, data: dict) -> "CropSpec":
        return cls(name=str(data["name"]), size=int(data["size"]), scale=float(data["scale"]),
                   fit=str(data.get("fit", "replicate")))

    @property
    def rule(self):
        from ekyc.quality.faces import CropRule

        return CropRule(size=self.size, scale=self.scale, fit=self.fit)

    @classmethod
    def from_input(cls, name: str, rule) -> "CropSpec":
        return cls(name=name, size=rule.size, scale=rule.scale, fit=rule.fit)

    @property
    def key(self) -> str:
        return f"s{self.size}-x{self.scale:g}-{self.fit}"


def crop_input(rgb: np.ndarray, face, spec: CropSpec) -> np.ndarray:
    """The model input ``spec`` for ``face``: ``ekyc.quality.faces.crop_face``, the server's function."""
    from ekyc.quality.faces import crop_face

    return crop_face(rgb, face, spec.rule)


def crop_inputs(rgb: np.ndarray, face, specs) -> dict[str, np.ndarray]:
    return {spec.name: crop_input(rgb, face, spec) for spec in specs}


# --- the array cache ------------------------------------------------------------------------

def _index_face(row: dict):
    from ekyc.quality.faces import Face

    return Face(int(row["x"]), int(row["y"]), int(row["width"]), int(row["height"]), float(row.get("score") or 0.0))


@dataclass
class FaceArrays:
    """Crops of every detected face of a data set, one uint8 array per spec, in sample order."""

    samples: list[Sample]
    arrays: dict[str, np.ndarray]
    rows: list[dict]

    def subset(self, mask: np.ndarray) -> "FaceArrays":
        idx = np.flatnonzero(mask)
        return FaceArrays([self.samples[i] for i in idx], {k: v[idx] for k, v in self.arrays.items()},
                          [self.rows[i] for i in idx])

    def __len__(self) -> int:
        return len(self.samples)

    @classmethod
    def build(cls, samples: list[Sample], data_dir: Path | str, box_cache: CropCache, specs,
              shift: str | None = None, cache_dir: Path | str | None = None, progress: bool = True) -> "FaceArrays":
        """Crops for the samples the box cache found a face in (status ``ok``, the served path)."""
        from ekyc.quality.decode import decode_image
        from ekyc.quality.options import load_gate_options

        max_pixels = load_gate_options(environ={}).max_image_pixels

        specs = list(specs)
        index = box_cache.read_index()
        kept = [s for s in samples if (index.get(s.path) or {}).get("status") == OK]
        rows = [index[s.path] for s in kept]
        tag = hashlib.sha1(json.dumps([[s.path for s in kept], [sp.key for sp in specs], shift]).encode()).hexdigest()[:12]
        root = Path(cache_dir) if cache_dir else DEFAULT_CACHE
        path = root / "facecrops" / data_id(data_dir) / f"{shift or 'none'}-{tag}.npz"
        names = {sp.name: sp.key for sp in specs}
        if path.is_file():
            with np.load(path) as stored:
                return cls(kept, {name: stored[key] for name, key in names.items()}, rows)
        from ekyc.training.shifts import apply_shift

        out = {sp.key: np.zeros((len(kept), sp.size, sp.size, 3), np.uint8) for sp in specs}
        data_dir = Path(data_dir)
        for i, (s, row) in enumerate(zip(kept, rows)):
            rgb = decode_image((data_dir / s.path).read_bytes(), max_pixels)
            face = _index_face(row)
            if shift:
                rgb, face = apply_shift(rgb, face, shift, s.path)
            for sp in specs:
                out[sp.key][i] = crop_input(rgb, face, sp)
            if progress and i % 1000 == 999:
                print(f"facecrops {shift or 'none'}: {i + 1}/{len(kept)}", file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        tmp.replace(path)
        return cls(kept, {name: out[key] for name, key in names.items()}, rows)
