"""The quality gate's accuracy on real photos and controlled degradations of them.

For every reason: the share of degraded images the gate catches (the reason is among its
reasons) and the share of clean originals it wrongly flags with that reason, at the
configured thresholds. Also: face-detection recall on the hand-annotated faces, and head-pose
sign checks on mirrored and rotated photos.

    python bench/quality_accuracy.py                  # EKYC_DATA_DIR or ../shared/data
    python bench/quality_accuracy.py --nuaa 0 --json  # every NUAA live frame, JSON out

The clean set is the single-person photos of faces/photos (exact duplicates removed) and NUAA
live webcam frames (some show other people in the background: the NO_FACE cases skip the
frames where the face search finds a second face). Every degradation is computed from a clean image on which the gate found
a face (and, for sunglasses, landmarks); a clean image it rejects counts only as a false reject.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

import degrade  # bench/degrade.py, beside this file
from ekyc.paths import PROJECT_ROOT
from ekyc.quality.gate import QualityGate, QualityReason, QualityResult
from ekyc.training.data import nuaa_live_frames

# Photos of faces/photos with more than one person in them: not clean single-face selfies.
GROUP_PHOTOS = frozenset({"two_people.jpg", "obama_and_biden.jpg", "kit_with_rose.jpg"})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# NUAA live frames whose eyes are closed (blinks), labelled by eye from the frames the
# blink score ranks highest; the gate's EYES_CLOSED check is measured on them.
CLOSED_EYE_FRAMES = (
    "0005_00_00_02_20.jpg", "0006_00_00_01_51.jpg", "0007_00_00_01_174.jpg", "0005_00_00_01_374.jpg",
    "0012_01_07_03_89.jpg", "0006_00_00_02_482.jpg", "0011_01_07_03_371.jpg", "0008_00_00_02_376.jpg",
    "0011_01_07_03_203.jpg", "0009_01_00_02_490.jpg", "0012_01_07_03_203.jpg", "0008_00_00_02_496.jpg",
    "0009_01_00_01_271.jpg", "0012_01_07_03_131.jpg", "0002_01_00_01_221.jpg", "0012_01_07_03_19.jpg",
    "0009_01_00_02_0.jpg", "0009_01_00_01_301.jpg",
)


@dataclass
class Sample:
    name: str
    rgb: np.ndarray
    source: str
    clear_glasses: bool = False


def default_data_dir() -> Path | None:
    if os.environ.get("EKYC_DATA_DIR"):
        return Path(os.environ["EKYC_DATA_DIR"])
    guess = PROJECT_ROOT.parent / "shared" / "data"
    return guess if guess.is_dir() else None


def _load(path: Path, gate: QualityGate) -> np.ndarray:
    return gate.decode(path.read_bytes())


def clean_samples(
    data_dir: Path, gate: QualityGate, nuaa_count: int | None = None, photos: bool = True, seed: int = 0,
    frames: bool = True,
) -> list[Sample]:
    """Single-person photos (deduplicated) and NUAA live frames (``nuaa_count`` drawn at random
    with ``seed``; None or 0: all of them, but for the labelled closed-eye frames)."""
    samples: list[Sample] = []
    if photos:
        seen: set[str] = set()
        for path in sorted((data_dir / "faces" / "photos").rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES or path.name in GROUP_PHOTOS:
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            samples.append(Sample(str(path.relative_to(data_dir)), _load(path, gate), "photos"))
    # Frames labelled closed-eyed are not clean: closed_eye_samples measures them.
    rows = [s for s in nuaa_live_frames(data_dir) if Path(s.path).name not in CLOSED_EYE_FRAMES] if frames else []
    if nuaa_count:
        rows = random.Random(seed).sample(rows, min(nuaa_count, len(rows)))
    for row in rows:
        samples.append(Sample(row.path, _load(data_dir / row.path, gate), "nuaa", row.meta.get("glasses") == "01"))
    return samples


def closed_eye_samples(data_dir: Path, gate: QualityGate) -> list[Sample]:
    rows = {Path(s.path).name: s for s in nuaa_live_frames(data_dir)}
    return [
        Sample(rows[name].path, _load(data_dir / rows[name].path, gate), "nuaa-closed")
        for name in CLOSED_EYE_FRAMES
        if name in rows
    ]


# --- degradations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One degradation: its expected reason, a name with its level, whether the benchmark
    target applies to it (False: reported for information, e.g. a mild level)."""

    reason: QualityReason
    name: str
    make: Callable[["Context"], np.ndarray | None]
    target: bool = True


@dataclass
class Context:
    sample: Sample
    result: QualityResult
    other: Sample
    other_face: object  # Face | None: the other photo's main face
    rng: np.random.Generator
    alone: bool = True  # the face search (down to detector.min_face_px) finds no other face


def _background(ctx: Context) -> np.ndarray | None:
    """The widest strip beside the face (left or right), at least a quarter of the image."""
    if not ctx.alone:
        return None
    face, rgb = ctx.result.face, ctx.sample.rgb
    width = rgb.shape[1]
    margin = int(0.3 * face.width)
    left, right = face.x - margin, width - (face.x + face.width + margin)
    if max(left, right) < width // 4:
        return None
    return rgb[:, :left].copy() if left >= right else rgb[:, width - right :].copy()


def _sunglasses(transmission: float) -> Callable[[Context], np.ndarray | None]:
    def make(ctx: Context) -> np.ndarray | None:
        if ctx.result.landmarks is None:
            return None
        shape = degrade.SUNGLASS_SHAPES[int(ctx.rng.integers(len(degrade.SUNGLASS_SHAPES)))]
        tint = degrade.SUNGLASS_TINTS[int(ctx.rng.integers(len(degrade.SUNGLASS_TINTS)))]
        size = float(ctx.rng.uniform(0.9, 1.1))
        return degrade.sunglasses(ctx.sample.rgb, ctx.result.landmarks.points, transmission, shape, tint, size)

    return make


def _pair(ctx: Context) -> np.ndarray | None:
    if ctx.other_face is None:
        return None
    return degrade.side_by_side(ctx.sample.rgb, ctx.other.rgb, ctx.result.face, ctx.other_face)


def _cut(side: str, fraction: float) -> Callable[[Context], np.ndarray]:
    return lambda ctx: degrade.cut_face(ctx.sample.rgb, ctx.result.face, side, fraction)


def default_cases(gate: QualityGate) -> list[Case]:
    """The degradations and the reason each must produce (levels documented in docs/quality.md)."""
    limits = gate.options.thresholds
    R = QualityReason
    cases = [
        Case(R.NO_FACE, "background strip beside the face", _background),
        Case(R.NO_FACE, "face masked out (1.6 x box, surrounding colour)",
             lambda c: degrade.mask_face(c.sample.rgb, c.result.face) if c.alone else None),
        Case(R.LOW_RESOLUTION, "downscaled to 0.8 x min short side",
             lambda c: degrade.downscale(c.sample.rgb, int(limits.min_image_short_side_px * 0.8))),
        Case(R.LOW_RESOLUTION, "downscaled to 0.5 x min short side",
             lambda c: degrade.downscale(c.sample.rgb, int(limits.min_image_short_side_px * 0.5))),
        Case(R.TOO_DARK, "underexposed 2.5 stops", lambda c: degrade.expose(c.sample.rgb, c.result.face, -2.5)),
        Case(R.TOO_DARK, "underexposed 3.5 stops", lambda c: degrade.expose(c.sample.rgb, c.result.face, -3.5)),
        Case(R.TOO_DARK, "gamma 4 (face at mid-grey first)",
             lambda c: degrade.gamma(degrade.expose(c.sample.rgb, c.result.face, 0.0), 4.0)),
        Case(R.TOO_DARK, "gamma 3 (face at mid-grey first)",
             lambda c: degrade.gamma(degrade.expose(c.sample.rgb, c.result.face, 0.0), 3.0), False),
        Case(R.TOO_DARK, "underexposed 1.5 stops", lambda c: degrade.expose(c.sample.rgb, c.result.face, -1.5), False),
        Case(R.TOO_BRIGHT, "overexposed 2 stops", lambda c: degrade.expose(c.sample.rgb, c.result.face, 2.0)),
        Case(R.TOO_BRIGHT, "overexposed 3 stops", lambda c: degrade.expose(c.sample.rgb, c.result.face, 3.0)),
        Case(R.TOO_BRIGHT, "gamma 0.1 (face at mid-grey first)",
             lambda c: degrade.gamma(degrade.expose(c.sample.rgb, c.result.face, 0.0), 0.1)),
        Case(R.TOO_BRIGHT, "overexposed 1.5 stops", lambda c: degrade.expose(c.sample.rgb, c.result.face, 1.5), False),
        Case(R.TOO_BRIGHT, "gamma 0.2 (face at mid-grey first)",
             lambda c: degrade.gamma(degrade.expose(c.sample.rgb, c.result.face, 0.0), 0.2), False),
        Case(R.LOW_CONTRAST, "contrast x 0.2", lambda c: degrade.contrast(c.sample.rgb, 0.2)),
        Case(R.LOW_CONTRAST, "contrast x 0.1", lambda c: degrade.contrast(c.sample.rgb, 0.1)),
        Case(R.LOW_CONTRAST, "contrast x 0.35", lambda c: degrade.contrast(c.sample.rgb, 0.35), False),
        Case(R.BLURRY, "Gaussian blur sigma 2 (96 px face)", lambda c: degrade.blur(c.sample.rgb, c.result.face, 2.0)),
        Case(R.BLURRY, "Gaussian blur sigma 3 (96 px face)", lambda c: degrade.blur(c.sample.rgb, c.result.face, 3.0)),
        Case(R.BLURRY, "Gaussian blur sigma 4 (96 px face)", lambda c: degrade.blur(c.sample.rgb, c.result.face, 4.0)),
        Case(R.BLURRY, "Gaussian blur sigma 6 (96 px face)", lambda c: degrade.blur(c.sample.rgb, c.result.face, 6.0), False),
        Case(R.BLURRY, "Gaussian blur sigma 1 (96 px face)", lambda c: degrade.blur(c.sample.rgb, c.result.face, 1.0), False),
        Case(R.FACE_TOO_SMALL, "face shrunk to 0.8 x min_face_size_px",
             lambda c: degrade.shrink_face(c.sample.rgb, c.result.face, 0.8 * limits.min_face_size_px)),
        Case(R.FACE_TOO_SMALL, "face shrunk to 0.6 x min_face_size_px",
             lambda c: degrade.shrink_face(c.sample.rgb, c.result.face, 0.6 * limits.min_face_size_px)),
        Case(R.MULTIPLE_FACES, "two photos side by side, faces of one size", _pair),
        Case(R.POSE_TOO_LARGE, "rotated 35 degrees", lambda c: degrade.rotate(c.sample.rgb, 35.0)),
        Case(R.POSE_TOO_LARGE, "rotated -35 degrees", lambda c: degrade.rotate(c.sample.rgb, -35.0)),
        Case(R.POSE_TOO_LARGE, "rotated 50 degrees", lambda c: degrade.rotate(c.sample.rgb, 50.0)),
        Case(R.POSE_TOO_LARGE, "rotated 90 degrees", lambda c: degrade.rotate(c.sample.rgb, 90.0)),
        Case(R.EYES_OCCLUDED, "sunglasses, 5 % transmission (category 4)", _sunglasses(0.05)),
        Case(R.EYES_OCCLUDED, "sunglasses, 12 % transmission (category 3)", _sunglasses(0.12)),
        Case(R.EYES_OCCLUDED, "sunglasses, 25 % transmission (category 2)", _sunglasses(0.25)),
        Case(R.EYES_OCCLUDED, "sunglasses, 40 % transmission (category 2)", _sunglasses(0.40), False),
    ]
    for side in ("left", "right", "top", "bottom"):
        cases.append(Case(R.FACE_CUT_OFF, f"face cut 25 % at the {side}", _cut(side, 0.25)))
    for side in ("left", "right", "top", "bottom"):
        cases.append(Case(R.FACE_CUT_OFF, f"face cut 10 % at the {side}", _cut(side, 0.10), False))
    return cases


# --- running ------------------------------------------------------------------------------


@dataclass
class Tally:
    caught: int = 0
    total: int = 0
    rejected: int = 0  # by any reason

    def rate(self) -> float:
        return self.caught / self.total if self.total else float("nan")

    def to_dict(self) -> dict:
        return {"caught": self.caught, "total": self.total, "rate": round(self.rate(), 4),
                "rejected_any_reason": self.rejected}


@dataclass
class Report:
    clean_total: int = 0
    clean_passed: int = 0
    clean_flags: dict = field(default_factory=lambda: defaultdict(int))  # reason -> clean images flagged
    clean_flagged_names: dict = field(default_factory=lambda: defaultdict(list))
    cases: dict = field(default_factory=dict)  # case name -> Tally
    case_reason: dict = field(default_factory=dict)
    case_target: dict = field(default_factory=dict)
    scores: list = field(default_factory=list)  # (case name, sample name, scores dict, reasons)
    by_group: dict = field(default_factory=dict)  # clean group (source, glasses) -> [images, {reason: flagged}]
    skipped: dict = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0

    def false_reject_rate(self, reason: QualityReason) -> float:
        return self.clean_flags.get(reason, 0) / self.clean_total if self.clean_total else float("nan")

    def caught_rate(self, reason: QualityReason, targets_only: bool = True) -> float:
        tallies = [t for name, t in self.cases.items()
                   if self.case_reason[name] == reason and (self.case_target[name] or not targets_only)]
        total = sum(t.total for t in tallies)
        return sum(t.caught for t in tallies) / total if total else float("nan")

    def to_dict(self) -> dict:
        reasons = {}
        for reason in QualityReason:
            reasons[reason.value] = {
                "caught_rate": _round(self.caught_rate(reason)),
                "clean_false_reject_rate": _round(self.false_reject_rate(reason)),
                "clean_flagged": self.clean_flags.get(reason, 0),
            }
        return {
            "clean_images": self.clean_total,
            "clean_passed": self.clean_passed,
            "reasons": reasons,
            "clean_by_group": {
                name: {"images": total, "flagged": {r.value: n for r, n in flags.items()}}
                for name, (total, flags) in self.by_group.items()
            },
            "clean_flagged_images": {r.value: names for r, names in self.clean_flagged_names.items()},
            "cases": {name: {"reason": self.case_reason[name].value, "target": self.case_target[name], **t.to_dict()}
                      for name, t in self.cases.items()},
            "skipped": dict(self.skipped),
            "seconds": round(self.seconds, 1),
        }


def _round(value: float) -> float | None:
    return None if value != value else round(value, 4)


def _group(sample: Sample) -> str:
    if sample.source == "nuaa":
        return "nuaa, clear glasses" if sample.clear_glasses else "nuaa, no glasses"
    return sample.source


def run(
    gate: QualityGate,
    samples: list[Sample],
    cases: Iterable[Case] | None = None,
    seed: int = 0,
    keep_scores: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Gate every clean sample, then every degradation of it."""
    cases = list(cases) if cases is not None else default_cases(gate)
    rng = np.random.default_rng(seed)
    report = Report()
    started = time.perf_counter()
    for case in cases:
        report.cases[case.name] = Tally()
        report.case_reason[case.name] = case.reason
        report.case_target[case.name] = case.target
    results = []
    for sample in samples:
        result = gate.assess(sample.rgb)
        results.append(result)
        report.clean_total += 1
        report.clean_passed += result.passed
        group = report.by_group.setdefault(_group(sample), [0, defaultdict(int)])
        group[0] += 1
        for reason in result.reasons:
            report.clean_flags[reason] += 1
            report.clean_flagged_names[reason].append(sample.name)
            group[1][reason] += 1
        if keep_scores:
            report.scores.append(("clean", sample.name, dict(vars(result.scores)), [r.value for r in result.reasons]))
    with_face = [i for i, r in enumerate(results) if r.face is not None]
    for index, (sample, result) in enumerate(zip(samples, results)):
        if result.face is None:
            report.skipped["no face on the clean image"] += 1
            continue
        partners = [i for i in with_face if i != index]
        partner = partners[int(rng.integers(len(partners)))] if partners else index
        # NO_FACE cases need photos of one person: skip those where other people show.
        alone = not any(c.reason is QualityReason.NO_FACE for c in cases) or len(gate.search_all_faces(sample.rgb)) <= 1
        context = Context(sample, result, samples[partner], results[partner].face, rng, alone)
        for case in cases:
            image = case.make(context)
            if image is None:
                report.skipped[case.name] += 1
                continue
            degraded = gate.assess(image)
            tally = report.cases[case.name]
            tally.total += 1
            tally.caught += case.reason in degraded.reasons
            tally.rejected += not degraded.passed
            if keep_scores:
                report.scores.append((case.name, sample.name, dict(vars(degraded.scores)), [r.value for r in degraded.reasons]))
        if progress is not None:
            progress(f"{index + 1}/{len(samples)} {sample.name}")
    report.seconds = time.perf_counter() - started
    return report


def closed_eyes(gate: QualityGate, samples: list[Sample]) -> Tally:
    """EYES_CLOSED on the frames labelled closed by eye."""
    tally = Tally()
    for sample in samples:
        result = gate.assess(sample.rgb)
        tally.total += 1
        tally.caught += QualityReason.EYES_CLOSED in result.reasons
        tally.rejected += not result.passed
    return tally


# --- detection recall ---------------------------------------------------------------------


def annotated_faces(data_dir: Path, min_width: int = 40) -> list[tuple[str, list[tuple[int, int, int, int]]]]:
    """(image file, [boxes x, y, w, h at least ``min_width`` wide]) from training.xml and testing.xml."""
    folder = data_dir / "faces" / "annotated"
    out = []
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(folder / name).getroot().iter("image"):
            boxes = [
                (int(b.get("left")), int(b.get("top")), int(b.get("width")), int(b.get("height")))
                for b in image.iter("box")
                if b.get("ignore") != "1" and int(b.get("width")) >= min_width
            ]
            if boxes:
                out.append((image.get("file"), boxes))
    return out


def _matches(box: tuple[int, int, int, int], face) -> bool:
    """An annotated box is found when a detected box overlaps it (IoU >= 0.3) or holds its centre
    with a similar size (dlib's boxes are tighter than BlazeFace's)."""
    x, y, w, h = box
    fx0, fy0, fx1, fy1 = face.x, face.y, face.x + face.width, face.y + face.height
    ix = max(0, min(x + w, fx1) - max(x, fx0))
    iy = max(0, min(y + h, fy1) - max(y, fy0))
    inter = ix * iy
    iou = inter / float(w * h + face.width * face.height - inter)
    cx, cy = x + w / 2.0, y + h / 2.0
    centred = fx0 <= cx <= fx1 and fy0 <= cy <= fy1 and 0.5 <= face.width / float(w) <= 2.5
    return iou >= 0.3 or centred


def detection_recall(gate: QualityGate, data_dir: Path, min_width: int = 40) -> dict:
    """Recall of the gate's face search (down to ``min_width`` px) on the annotated faces."""
    found = total = 0
    missed = []
    detections = 0
    for file, boxes in annotated_faces(data_dir, min_width):
        rgb = _load(data_dir / "faces" / "annotated" / file, gate)
        faces = gate.search_all_faces(rgb, min_width)
        detections += len(faces)
        for box in boxes:
            total += 1
            if any(_matches(box, face) for face in faces):
                found += 1
            else:
                missed.append((file, box))
    return {"found": found, "total": total, "recall": found / total if total else float("nan"),
            "detections": detections, "missed": missed}


# --- head pose ----------------------------------------------------------------------------


def pose_summary(checks: dict) -> dict:
    """Worst-case figures of pose_checks."""
    mirror = checks["mirror"]
    turned = [(y, m) for y, m, _, _ in mirror if abs(y) > 6.0]
    return {
        "mirrored_faces": len(mirror),
        "max_abs_yaw_sum": round(max((abs(y + m) for y, m, _, _ in mirror), default=float("nan")), 2),
        "max_abs_roll_sum": round(max((abs(r + rm) for _, _, r, rm in mirror), default=float("nan")), 2),
        "turned_faces_sign_flipped": f"{sum(y * m < 0 for y, m in turned)}/{len(turned)}",
        "roll_error_deg": {
            str(angle): {"n": len(errors), "mean_abs": round(float(np.mean(np.abs(errors))), 2),
                         "max_abs": round(float(np.max(np.abs(errors))), 2)}
            for angle, errors in checks["roll_error"].items() if errors
        },
    }


def pose_checks(gate: QualityGate, samples: list[Sample], angles=(-30.0, -15.0, 15.0, 30.0)) -> dict:
    """Yaw of the mirrored image vs the original (sign flips), and roll after rotating by θ."""
    mirror_pairs, roll_errors = [], defaultdict(list)
    for sample in samples:
        base = gate.assess(sample.rgb)
        if base.landmarks is None:
            continue
        flipped = gate.assess(degrade.mirror(sample.rgb))
        if flipped.landmarks is not None:
            mirror_pairs.append((base.scores.yaw_deg, flipped.scores.yaw_deg, base.scores.roll_deg, flipped.scores.roll_deg))
        for angle in angles:
            turned = gate.assess(degrade.rotate(sample.rgb, angle))
            if turned.landmarks is not None:
                roll_errors[angle].append(turned.scores.roll_deg - base.scores.roll_deg - angle)
    return {"mirror": mirror_pairs, "roll_error": dict(roll_errors)}


# --- command line -------------------------------------------------------------------------


def format_table(report: Report, closed: Tally | None, recall: dict | None) -> str:
    lines = ["| reason | caught (target levels) | caught (all levels) | clean false rejects |", "|---|---|---|---|"]
    for reason in QualityReason:
        caught = report.caught_rate(reason)
        every = report.caught_rate(reason, targets_only=False)
        if reason is QualityReason.EYES_CLOSED and closed is not None and closed.total:
            caught = every = closed.rate()
        flags = report.clean_flags.get(reason, 0)
        lines.append(
            f"| {reason.value} | {_pct(caught)} | {_pct(every)} | {_pct(report.false_reject_rate(reason))}"
            f" ({flags}/{report.clean_total}) |"
        )
    lines += ["", "| degradation | reason | caught | rejected (any reason) |", "|---|---|---|---|"]
    for name, tally in report.cases.items():
        mark = "" if report.case_target[name] else " (info)"
        lines.append(f"| {name}{mark} | {report.case_reason[name].value} | {_pct(tally.rate())} ({tally.caught}/{tally.total})"
                     f" | {_pct(tally.rejected / tally.total if tally.total else float('nan'))} |")
    if closed is not None:
        lines.append(f"| closed eyes, labelled NUAA frames | EYES_CLOSED | {_pct(closed.rate())} ({closed.caught}/{closed.total}) |"
                     f" {_pct(closed.rejected / closed.total if closed.total else float('nan'))} |")
    if recall is not None:
        lines += ["", f"face detection recall (annotated faces >= 40 px): {_pct(recall['recall'])}"
                  f" ({recall['found']}/{recall['total']})"]
    lines.append(f"clean images: {report.clean_total}, passed {report.clean_passed}")
    for name, (total, flags) in report.by_group.items():
        flagged = ", ".join(f"{r.value} {n}" for r, n in sorted(flags.items(), key=lambda kv: kv[0].value)) or "none"
        lines.append(f"  {name}: {total} images; flagged: {flagged}")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/quality_accuracy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="shared data folder (EKYC_DATA_DIR)")
    parser.add_argument("--nuaa", type=int, default=300, help="NUAA live frames drawn at random (0: all 1016)")
    parser.add_argument("--config", type=Path, help="thresholds file (TOML), as for ekyc-server --config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown tables")
    parser.add_argument("--scores", type=Path, help="also write every score of every image to this JSON file")
    parser.add_argument("--clean-only", action="store_true", help="only the clean images' false rejects (fast)")
    args = parser.parse_args(argv)
    if args.data is None or not (args.data / "manifest.csv").is_file():
        print("benchmark: no shared data: pass --data or set EKYC_DATA_DIR", file=sys.stderr)
        return 1
    from ekyc.quality.options import load_gate_options

    with QualityGate(load_gate_options(args.config, environ={})) as gate:
        samples = clean_samples(args.data, gate, args.nuaa or None, seed=args.seed)
        cases = [] if args.clean_only else None
        report = run(gate, samples, cases, seed=args.seed, keep_scores=bool(args.scores),
                     progress=lambda line: print(line, file=sys.stderr, flush=True))
        closed = closed_eyes(gate, closed_eye_samples(args.data, gate))
        recall = detection_recall(gate, args.data)
        pose = pose_summary(pose_checks(gate, [s for s in samples if s.source == "photos"]))
    if args.scores:
        args.scores.write_text(json.dumps(report.scores))
    if args.json:
        data = report.to_dict()
        data["closed_eyes"] = closed.to_dict()
        data["detection_recall"] = {k: v for k, v in recall.items()}
        data["pose"] = pose
        print(json.dumps(data, indent=2))
    else:
        print(format_table(report, closed, recall))
        print(f"head pose on the photos: {json.dumps(pose)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
