"""Leave-one-setup-out folds, the capture-shift suite, slices and the travelling calibration.

The folds are read from the data (its ``source`` column), never from a list: tested on a
tiny manifest the test writes and, with EKYC_DATA_DIR, on the shared data and on the split
files of the shipped model's LOSO evaluation (``training/splits/loso``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ekyc.quality.faces import Face
from ekyc.training.data import Sample, load_samples
from ekyc.training.loso import apply_fold, check_fold, fold_split, fold_splits, setups
from ekyc.training.shifts import SHIFTS, apply_shift

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = os.environ.get("EKYC_DATA_DIR")
needs_data = pytest.mark.skipif(not DATA_DIR, reason="needs EKYC_DATA_DIR (the shared face images)")


def _samples() -> list[Sample]:
    out = []
    for source, subjects in (("cam-a", ["p1", "p2"]), ("cam-b", ["p3"]), ("screen-c", ["p4", "p5"])):
        for subject in subjects:
            for label in (0, 1):
                for k in range(3):
                    out.append(Sample(f"{source}/{subject}/{label}/{k}.jpg", label, "replay" if label else "",
                                      subject, source, "frame", {"frame": k}))
    return out


def test_folds_come_from_the_sources_of_the_data():
    samples = _samples()
    folds = fold_splits(samples)
    assert [f["held_out"] for f in folds] == setups(samples) == ["cam-a", "cam-b", "screen-c"]
    for fold in folds:
        check_fold(fold, samples)
        train, test = apply_fold(samples, fold)
        assert {s.source for s in test} == {fold["held_out"]}
        assert fold["held_out"] not in {s.source for s in train}
        assert len(train) + len(test) == len(samples)
    # a new setup in the data is a new fold, with no code change
    extra = samples + [Sample("new/p9/0.jpg", 0, "", "p9", "new-cam", "frame"), Sample("new/p9/1.jpg", 1, "print", "p9", "new-cam", "frame")]
    assert "new-cam" in [f["held_out"] for f in fold_splits(extra)]


def test_a_person_in_two_setups_never_trains_the_fold_that_tests_them():
    samples = _samples() + [Sample("cam-b/p1/0/9.jpg", 0, "", "p1", "cam-b", "frame")]  # p1 also in cam-b
    fold = fold_split(samples, "cam-a")
    assert "p1" not in fold["train"]["subjects"] and fold["dropped_from_train"] == ["p1"]
    check_fold(fold, samples)
    leaky = json.loads(json.dumps(fold))
    leaky["train"]["subjects"].append("p1")
    with pytest.raises(ValueError, match="subjects"):
        check_fold(leaky, samples)
    leaky = json.loads(json.dumps(fold))
    leaky["train"]["sources"].append("cam-a")
    with pytest.raises(ValueError, match="setups"):
        check_fold(leaky)


@needs_data
def test_shared_data_folds_and_the_committed_loso_split_files():
    samples = load_samples(DATA_DIR)
    sources = sorted({s.source for s in samples})
    folds = {f["held_out"]: f for f in fold_splits(samples)}
    assert sorted(folds) == sources
    for fold in folds.values():
        check_fold(fold, samples)
    committed = sorted((ROOT / "training" / "splits" / "loso").glob("*.json"))
    assert committed, "the shipped model's LOSO split files are missing"
    for path in committed:
        fold = json.loads(path.read_text())
        check_fold(fold, samples)  # no setup or person of its test part in its training part
        train, test = apply_fold(samples, fold)
        assert test and train and {s.source for s in test} == {fold["held_out"]}


# --- the capture-shift suite ----------------------------------------------------------------

def _frame() -> tuple[np.ndarray, Face]:
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(140, 40, (240, 320, 3)), 0, 255).astype(np.uint8)
    return rgb, Face(120, 60, 100, 120, 0.9)


@pytest.mark.parametrize("shift", SHIFTS)
def test_every_shift_is_deterministic_and_changes_the_frame(shift):
    rgb, face = _frame()
    a, fa = apply_shift(rgb, face, shift, "x.jpg")
    b, fb = apply_shift(rgb, face, shift, "x.jpg")
    assert np.array_equal(a, b) and fa == fb and a.dtype == np.uint8
    assert a.shape != rgb.shape or np.abs(a.astype(int) - rgb.astype(int)).mean() > 1.0


def test_shifts_do_what_they_say():
    rgb, face = _frame()
    luma = lambda x: float((x.astype(np.float32) @ np.array([0.299, 0.587, 0.114])).mean())  # noqa: E731
    dim, _ = apply_shift(rgb, face, "dim", "k")
    over, _ = apply_shift(rgb, face, "overexposed", "k")
    assert luma(dim) < 0.6 * luma(rgb) and luma(over) > 1.3 * luma(rgb)
    warm, _ = apply_shift(rgb, face, "warm", "k")
    cool, _ = apply_shift(rgb, face, "cool", "k")
    assert warm[..., 0].mean() > rgb[..., 0].mean() > cool[..., 0].mean()
    assert warm[..., 2].mean() < rgb[..., 2].mean() < cool[..., 2].mean()
    small, box = apply_shift(rgb, face, "lowres", "k")
    assert 46 <= max(box.width, box.height) <= 66 and small.shape[0] < rgb.shape[0]


# --- slices, pooled row and travelling profiles on a tiny fixture ---------------------------

def test_loso_report_rows_pooled_slices_and_profiles(tmp_path):
    from ekyc.training.facecrops import FaceArrays
    from ekyc.training.transfer import loso_report, loso_table, shift_table, slice_table

    rng = np.random.default_rng(1)
    samples = []
    for source in ("cam-a", "cam-b"):
        for subject in ("p1", "p2"):
            for label in (0, 1):
                for k in range(12):
                    samples.append(Sample(f"{source}/{subject}/{label}/{k}.jpg", label, "print" if label else "",
                                          f"{source}-{subject}", source, "frame",
                                          {"frame": k, "glasses": "01" if k % 2 else "00"}))
    n = len(samples)
    brightness = rng.uniform(30, 220, n)
    crops = np.clip(brightness[:, None, None, None] + rng.normal(0, 5, (n, 128, 128, 3)), 0, 255).astype(np.uint8)
    labels = np.array([s.label for s in samples])
    # a model that rejects dark live faces: its darkest tercile's BPCER must show it
    scores = np.where(labels == 1, rng.uniform(0.55, 1.0, n), np.where(brightness < 80, 0.7, rng.uniform(0, 0.45, n)))
    for source in ("cam-a", "cam-b"):
        idx = [i for i, s in enumerate(samples) if s.source == source]
        fold = tmp_path / "cand" / source
        fold.mkdir(parents=True)
        (fold / "scores.json").write_text(json.dumps({
            "held_out": source, "paths": [samples[i].path for i in idx], "scores": scores[idx].tolist(),
            "shifts": {"dim": {"paths": [samples[i].path for i in idx], "scores": (scores[idx] * 0.9).tolist()}}}))
    rows = [{"width": "100", "height": "100", "image_height": "480"} for _ in samples]
    arrays = FaceArrays(samples, {"face_x1.2": crops}, rows)
    report = loso_report(tmp_path / "cand", samples, arrays, n_boot=50)
    assert set(report["rows"]) == {"cam-a", "cam-b"} and report["pooled"]["n_live"] == int((labels == 0).sum())
    assert report["rows"]["cam-a"]["baseline"]["feature"] in ("brightness", "contrast", "saturation", "laplacian_var",
                                                                 "face_size", "image_height")
    terciles = report["slices"]["face luma tercile"]
    assert terciles["dark"]["balanced"]["rate"] > terciles["bright"]["balanced"]["rate"]
    assert report["luma_flag"]["balanced"]["dark_over_twice_bright"] is True
    assert set(report["slices"]["glasses"]) == {"yes", "no"} and set(report["slices"]["setup"]) == {"cam-a", "cam-b"}
    for p in report["profiles"].values():
        lo, hi = p["review_band"]
        assert lo <= p["threshold"] < hi
        assert all(lo <= t <= hi for t in p["setup_thresholds"].values())
    assert set(report["shifts"]) == {"none", "dim"} and report["min_shift_auc"] is not None
    text = loso_table(report) + shift_table(report) + slice_table(report)
    assert "pooled" in text and "dim" in text and "face luma tercile" in text


# --- `ekyc-train calibrate --sample`: thresholds from a deployment's own labelled sample ------

def test_calibrate_on_a_deployment_sample_rewrites_the_profiles(tmp_path):
    """The bundled model recalibrated on a small labelled sample (two 'cameras'), through the CLI."""
    import csv
    import shutil

    from PIL import Image

    from conftest import packaged_face_path
    from ekyc.models.liveness import ModelMetadata
    from ekyc.paths import DEFAULT_MODEL
    from ekyc.training.augment import synthesize_replay
    from ekyc.training.cli import main

    rgb = np.asarray(Image.open(packaged_face_path()).convert("RGB"))
    side = min(rgb.shape[:2])
    rgb = np.ascontiguousarray(rgb[:side, :side])  # the synthesis works on square images
    rng = np.random.default_rng(0)
    data = tmp_path / "sample"
    rows = []
    for cam, gain in (("cam-1", 1.0), ("cam-2", 0.7)):
        for k in range(3):
            live = np.clip(rgb.astype(np.float32) * gain * rng.uniform(0.9, 1.1), 0, 255).astype(np.uint8)
            spoof = synthesize_replay(live, rng)
            for label, image in (("live", live), ("spoof", spoof)):
                rel = f"{cam}/{label}/{k}.jpg"
                (data / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(data / rel, quality=90)
                rows.append([rel, label, "" if label == "live" else "replay", f"{cam}-p", cam, "frame", ""])
    with open(data / "manifest.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label", "attack", "subject", "source", "kind", "note"], *rows])
    model = tmp_path / "model" / "liveness.onnx"
    model.parent.mkdir()
    shutil.copy(DEFAULT_MODEL, model)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), model.with_suffix(".json"))
    assert main(["calibrate", str(model), "--sample", str(data), "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    meta = ModelMetadata.load(model.with_suffix(".json"))
    record = meta.raw["calibration"]
    assert record["n_live"] + record["n_spoof"] > 0 and record["sources"] == ["cam-1", "cam-2"]
    assert set(meta.profiles) == {"strict", "balanced", "lenient"}
    assert meta.threshold == meta.profiles[meta.default_profile].threshold
    for name, point in meta.profiles.items():
        assert point.review_band is not None and point.review_band[0] <= point.threshold < point.review_band[1]
    empty = tmp_path / "empty"
    (empty / "live").mkdir(parents=True)
    Image.fromarray(rgb).save(empty / "live" / "a.jpg")
    assert main(["calibrate", str(model), "--sample", str(empty), "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 1
