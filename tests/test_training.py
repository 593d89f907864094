"""Tests of the training pipeline (ekyc.training) and of the shipped liveness model.

Data-free by default (synthetic manifests and images written to tmp_path); tests marked
``data`` also run on the shared images when EKYC_DATA_DIR is set.
"""

from __future__ import annotations

import csv
import json
import os
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from ekyc.quality.faces import CropRule
from ekyc.training import metrics
from ekyc.training.data import (
    LIVE,
    SPOOF,
    SPLITS,
    DataError,
    Sample,
    ensure_split,
    load_folder,
    load_manifest,
    load_split,
    make_split,
    split_samples,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "liveness.onnx"
SPLIT_FILE = ROOT / "training" / "splits" / "shared-data.json"
DATA_DIR = os.environ.get("EKYC_DATA_DIR")
needs_data = pytest.mark.skipif(not DATA_DIR, reason="needs EKYC_DATA_DIR (the shared face images)")

LIVE_SCORES = [0.1, 0.2, 0.3, 0.6]
SPOOF_SCORES = [0.4, 0.7, 0.8, 0.9]


def _scores_labels(live, spoof):
    return np.array(list(live) + list(spoof)), np.array([0] * len(live) + [1] * len(spoof))


# --- metrics -------------------------------------------------------------------------------

def test_apcer_bpcer_by_hand():
    # spoof iff score >= threshold
    assert metrics.apcer(SPOOF_SCORES, 0.5) == pytest.approx(0.25)  # 0.4 accepted as live
    assert metrics.bpcer(LIVE_SCORES, 0.5) == pytest.approx(0.25)  # 0.6 rejected
    assert metrics.apcer(SPOOF_SCORES, 0.35) == 0.0
    assert metrics.bpcer(LIVE_SCORES, 0.65) == 0.0
    assert metrics.apcer(SPOOF_SCORES, 0.95) == 1.0
    # a score equal to the threshold is a spoof decision
    assert metrics.bpcer([0.5], 0.5) == 1.0
    assert metrics.apcer([0.5], 0.5) == 0.0


def test_eer_and_auc_by_hand():
    scores, labels = _scores_labels(LIVE_SCORES, SPOOF_SCORES)
    value, threshold = metrics.eer(scores, labels)
    assert value == pytest.approx(0.25)
    assert 0.4 < threshold <= 0.6  # between the misordered pair: APCER = BPCER = 1/4
    assert metrics.apcer(SPOOF_SCORES, threshold) == metrics.bpcer(LIVE_SCORES, threshold) == 0.25
    # 15 of the 16 (spoof, live) pairs are ordered correctly
    assert metrics.roc_auc(scores, labels) == pytest.approx(15 / 16)
    # ties count one half
    assert metrics.roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)


def test_perfect_and_inverted_scores():
    scores, labels = _scores_labels([0.1, 0.2], [0.8, 0.9])
    value, threshold = metrics.eer(scores, labels)
    assert value == 0.0 and 0.2 < threshold <= 0.8
    assert metrics.roc_auc(scores, labels) == 1.0
    assert metrics.roc_auc(scores, 1 - labels) == 0.0
    assert metrics.eer(scores, 1 - labels)[0] == pytest.approx(1.0)


def test_bpcer_at_apcer_by_hand():
    scores, labels = _scores_labels(LIVE_SCORES, SPOOF_SCORES)
    # APCER 0 needs threshold <= 0.4, where live 0.6 is still rejected
    b0, t0 = metrics.bpcer_at_apcer(scores, labels, 0.0)
    assert b0 == pytest.approx(0.25) and t0 <= 0.4
    # APCER 1/4 allows threshold up to 0.7, where no live score is rejected
    b25, t25 = metrics.bpcer_at_apcer(scores, labels, 0.25)
    assert b25 == 0.0 and 0.6 < t25 <= 0.7


def test_pad_metrics_per_attack_by_hand():
    scores = [0.1, 0.6, 0.9, 0.2, 0.8, 0.7, 0.1]
    labels = [0, 0, 1, 1, 1, 1, 1]
    attacks = ["", "", "print", "print", "replay", "replay", "replay"]
    m = metrics.pad_metrics(scores, labels, attacks, threshold=0.5)
    assert m["apcer_by_attack"]["print"] == {"n": 2, "apcer": 0.5}
    assert m["apcer_by_attack"]["replay"]["apcer"] == pytest.approx(1 / 3)
    assert m["apcer_max"] == 0.5
    assert m["apcer_pooled"] == pytest.approx(2 / 5)
    assert m["bpcer"] == 0.5
    assert m["acer"] == pytest.approx(0.5)
    assert m["n_live"] == 2 and m["n_spoof"] == 5


def test_metrics_match_brute_force_on_random_scores():
    rng = np.random.default_rng(7)
    live = rng.normal(0.3, 0.15, 60)
    spoof = rng.normal(0.6, 0.15, 40)
    scores, labels = _scores_labels(live, spoof)
    pairs = [(s > l) + 0.5 * (s == l) for s, l in product(spoof, live)]
    assert metrics.roc_auc(scores, labels) == pytest.approx(np.mean(pairs))
    # EER: no threshold brings APCER and BPCER closer than the one eer() picks
    value, threshold = metrics.eer(scores, labels)
    gap = abs(metrics.apcer(spoof, threshold) - metrics.bpcer(live, threshold))
    for t in np.linspace(-0.5, 1.5, 401):
        assert gap <= abs(metrics.apcer(spoof, t) - metrics.bpcer(live, t)) + 1e-12
    assert value == pytest.approx((metrics.apcer(spoof, threshold) + metrics.bpcer(live, threshold)) / 2)
    # BPCER at APCER <= 5%: the best over a fine threshold grid is no better
    b5, t5 = metrics.bpcer_at_apcer(scores, labels, 0.05)
    assert metrics.apcer(spoof, t5) <= 0.05
    grid = [metrics.bpcer(live, t) for t in np.linspace(-0.5, 1.5, 2001) if metrics.apcer(spoof, t) <= 0.05]
    assert b5 <= min(grid) + 1e-12


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError):
        metrics.eer([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError):
        metrics.roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError):
        metrics.eer([0.1], [0, 1])


# --- data and splits -------------------------------------------------------------------------

def _write_manifest(root: Path, n_subjects: int = 12, live_only: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(1, n_subjects + 1):
        subject = f"nuaa-{i:04d}"
        for label in ("live", "spoof"):
            if label == "spoof" and subject in live_only:
                continue
            for k in range(3):
                rows.append([f"nuaa/{label}/{i:04d}/{k}.jpg", label, "print" if label == "spoof" else "",
                             subject, "nuaa", "frame", ""])
    for subject in ("replay-a", "replay-b"):
        for label in ("live", "spoof"):
            for k in range(4):
                rows.append([f"replay/{subject}/{label}/{k}.jpg", label, "replay" if label == "spoof" else "",
                             subject, subject, "face_crop", ""])
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "attack", "subject", "source", "kind", "note"])
        writer.writerows(rows)
    return root


def _check_split(split: dict, samples: list[Sample]) -> dict[str, list[Sample]]:
    subjects = [set(split["subjects"][name]) for name in SPLITS]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not subjects[a] & subjects[b], "a subject is in two splits"
    parts = split_samples(samples, split)
    assert sum(len(p) for p in parts.values()) == len(samples)
    for name, part in parts.items():
        labels = {s.label for s in part}
        assert labels == {LIVE, SPOOF}, f"{name} lacks a class"
        per_subject = {}
        for s in part:
            per_subject.setdefault(s.subject, set()).add(name)
        assert all(v == {name} for v in per_subject.values())
    return parts


def test_split_on_synthetic_manifest(tmp_path):
    # four subjects without spoofs: some shuffles leave a split with one class, which must be retried
    root = _write_manifest(tmp_path / "data", live_only=("nuaa-0001", "nuaa-0002", "nuaa-0003", "nuaa-0004"))
    samples = load_manifest(root)
    for seed in range(5):
        split = make_split(samples, seed=seed)
        _check_split(split, samples)
        assert "replay-a" in split["subjects"]["train"] and "replay-b" in split["subjects"]["test"]
        assert len(split["subjects"]["test"]) == 1 + 3 and len(split["subjects"]["val"]) == 2
    assert make_split(samples, seed=3)["subjects"] == make_split(samples, seed=3)["subjects"]


def test_split_file_is_reused_and_checked(tmp_path):
    samples = load_manifest(_write_manifest(tmp_path / "data"))
    path = tmp_path / "split.json"
    first, created = ensure_split(samples, path, seed=1)
    assert created and path.is_file()
    again, created = ensure_split(samples, path, seed=99)
    assert not created and again["subjects"] == first["subjects"]
    assert load_split(path)["subjects"] == first["subjects"]
    # a subject the split does not know is an error, not a silent leak into training
    extra = samples + [Sample("x.jpg", LIVE, "", "someone-new", "nuaa", "frame")]
    with pytest.raises(DataError, match="not in the split"):
        split_samples(extra, first)
    broken = dict(first, subjects={**first["subjects"], "val": first["subjects"]["train"][:1]})
    path.write_text(json.dumps(broken))
    with pytest.raises(DataError, match="is in"):
        load_split(path)


@needs_data
@pytest.mark.data
def test_committed_split_on_shared_data():
    samples = load_manifest(DATA_DIR)
    split = load_split(SPLIT_FILE)
    parts = _check_split(split, samples)
    assert {s.attack for s in parts["test"] if s.label == SPOOF} == {"print", "replay"}
    for name in SPLITS:
        assert split["counts"][name]["live"] == sum(s.label == LIVE for s in parts[name])


def test_load_folder_subjects(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (8, 8))
    for rel in ("live/alice/1.jpg", "live/alice/2.png", "spoof/alice/3.jpg", "live/bob.jpg", "spoof/x.txt",
                "Data/test/10001/live/a.png", "Data/test/10001/spoof/b.jpg", "other/c.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("not an image")
        else:
            img.save(tmp_path / rel)
    samples = load_folder(tmp_path, attack="print")
    by_path = {s.path: s for s in samples}
    assert set(by_path) == {"live/alice/1.jpg", "live/alice/2.png", "spoof/alice/3.jpg", "live/bob.jpg",
                            "Data/test/10001/live/a.png", "Data/test/10001/spoof/b.jpg"}
    # CelebA-Spoof style: <subject>/live|spoof/<image>
    assert by_path["Data/test/10001/spoof/b.jpg"].subject == "10001"
    assert by_path["Data/test/10001/spoof/b.jpg"].label == SPOOF
    assert by_path["spoof/alice/3.jpg"].subject == "alice" and by_path["spoof/alice/3.jpg"].label == SPOOF
    assert by_path["spoof/alice/3.jpg"].attack == "print" and by_path["live/alice/1.jpg"].attack == ""
    assert by_path["live/bob.jpg"].subject == "bob"
    with pytest.raises(DataError):
        load_folder(tmp_path / "missing")


# --- crops -----------------------------------------------------------------------------------

def test_crop_cache_fallbacks_without_faces(tmp_path):
    """No face: a face_crop image becomes its own face box, a frame is skipped and counted."""
    from PIL import Image

    from ekyc.quality.faces import Face, crop_face
    from ekyc.training.crops import NO_FACE, WHOLE_IMAGE, CropCache, build_crops, load_crop

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (60, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "b.png")
    samples = [Sample("a.png", LIVE, "", "s1", "t", "face_crop"), Sample("b.png", SPOOF, "print", "s2", "t", "frame")]
    rule = CropRule()
    cache = CropCache.for_data(tmp_path, rule, tmp_path / "cache")
    counts = build_crops(samples, tmp_path, cache, progress=False)
    assert counts == {WHOLE_IMAGE: 1, NO_FACE: 1}
    usable = cache.usable(samples)
    assert [s.path for s, _ in usable] == ["a.png"]
    expected = crop_face(pixels, Face(0, 0, 40, 60, 0.0), rule)
    assert np.array_equal(load_crop(usable[0][1]), expected)


@pytest.fixture(scope="module")
def real_crops(tmp_path_factory):
    """A few real face crops (through the crop cache) with EKYC_DATA_DIR, else None."""
    if not DATA_DIR:
        return None
    from ekyc.training.crops import CropCache, build_crops, load_crops

    samples = load_manifest(DATA_DIR)
    picked = [s for s in samples if s.kind == "frame"][::400][:4] + [s for s in samples if s.kind == "face_crop"][::300][:4]
    cache = CropCache.for_data(DATA_DIR, CropRule(), tmp_path_factory.mktemp("crops"))
    build_crops(picked, DATA_DIR, cache, progress=False)
    items = cache.usable(picked)
    return picked, cache, load_crops([p for _, p in items])


@needs_data
@pytest.mark.data
def test_cached_crops_are_the_server_crops(real_crops):
    """The cache holds exactly decode_image -> FaceDetector -> crop_face of the largest face."""
    from ekyc.quality.decode import decode_image
    from ekyc.quality.faces import FaceDetector, FaceDetectorOptions, crop_face
    from ekyc.training.crops import DEFAULT_DETECTOR, load_crop

    picked, cache, crops = real_crops
    frames = [(s, p) for s, p in cache.usable(picked) if s.kind == "frame"]
    assert frames and crops.shape[1:] == (128, 128, 3)
    with FaceDetector(FaceDetectorOptions(model_path=DEFAULT_DETECTOR)) as detector:
        for sample, path in frames:
            rgb = decode_image((Path(DATA_DIR) / sample.path).read_bytes(), 40_000_000)
            faces = detector.detect(rgb)
            assert np.array_equal(load_crop(path), crop_face(rgb, faces[0], CropRule()))


# --- training, export, evaluation ------------------------------------------------------------

def _synthetic_crops(n: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth gradients ("live", 0) versus coarse noise ("spoof", 1), uint8 NHWC."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, labels = [], []
    for i in range(n):
        if i % 2 == 0:
            base = rng.uniform(60, 200, 3)
            tilt = rng.uniform(-60, 60, (2, 3))
            img = base + xx[..., None] * tilt[0] + yy[..., None] * tilt[1]
        else:
            coarse = rng.uniform(0, 255, (size // 8, size // 8, 3))
            img = np.kron(coarse, np.ones((8, 8, 1)))
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(i % 2)
    return np.stack(images), np.array(labels)


def _write_items(root: Path, images: np.ndarray, labels: np.ndarray, prefix: str):
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i, (img, label) in enumerate(zip(images, labels)):
        path = root / f"{prefix}{i:03d}.png"
        Image.fromarray(img).save(path)
        sample = Sample(path.name, int(label), "print" if label else "", f"{prefix}{i // 4}", "synthetic", "face_crop")
        items.append((sample, path))
    return items


def _bce(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    return float(np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))))


def _batch_stat_loss(model, images: np.ndarray, labels: np.ndarray) -> float:
    """BCE with BatchNorm on batch statistics and dropout off.

    After a handful of steps the BatchNorm running averages still lag far behind the weights,
    so the eval-mode loss says little about what one epoch learned; batch statistics do not.
    """
    import torch

    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(images).float()).numpy()
    model.eval()
    return _bce(logits, labels)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One epoch of the real training loop on 48 generated crops."""
    import torch

    from ekyc.training.model import build_model
    from ekyc.training.train import TrainConfig, seed_everything, train

    root = tmp_path_factory.mktemp("tiny")
    x_train, y_train = _synthetic_crops(48, seed=1)
    x_val, y_val = _synthetic_crops(16, seed=2)
    train_items = _write_items(root / "train", x_train, y_train, "t")
    val_items = _write_items(root / "val", x_val, y_val, "v")
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, max_per_group=0, patience=1, seed=0, warmup_epochs=0)
    # the same initial weights train() starts from (same seed, same construction order)
    seed_everything(config.seed)
    torch.set_num_threads(2)
    initial = build_model(pretrained=config.pretrained)
    loss_before = _batch_stat_loss(initial, x_train, y_train)
    summary = train(train_items, val_items, config, root / "run", progress=False)
    return {"summary": summary, "x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val,
            "loss_before": loss_before, "root": root}


def test_one_epoch_lowers_the_loss(tiny_run):
    from ekyc.training.model import load_checkpoint

    summary = tiny_run["summary"]
    run_dir = Path(summary["run_dir"])
    for name in ("config.json", "history.json", "best.pt"):
        assert (run_dir / name).is_file()
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    model, _ = load_checkpoint(run_dir / "best.pt")
    loss_after = _batch_stat_loss(model, tiny_run["x_train"], tiny_run["y_train"])
    assert loss_after < tiny_run["loss_before"]


def test_augmentation_keeps_shape_and_changes_pixels():
    from ekyc.training.train import AugmentConfig, augment_crop

    crops, _ = _synthetic_crops(4)
    rng = np.random.default_rng(0)
    out = [augment_crop(c, rng, AugmentConfig()) for c in crops for _ in range(3)]
    assert all(o.shape == crops[0].shape and o.dtype == np.uint8 for o in out)
    assert any(not np.array_equal(o, crops[i // 3]) for i, o in enumerate(out))
    still = AugmentConfig(flip_p=0, rescale_p=0, jitter_p=0, jpeg_p=0, shift=0, scale=0)
    assert np.array_equal(augment_crop(crops[0], rng, still), crops[0])


def test_export_parity_and_runtime_load(tiny_run, real_crops, tmp_path):
    from ekyc.server.model import LivenessModel
    from ekyc.training.export import MAX_MODEL_BYTES, export_onnx, parity, torch_scores, write_metadata
    from ekyc.training.model import load_checkpoint

    model, _ = load_checkpoint(tiny_run["summary"]["checkpoint"])
    out = export_onnx(model, tmp_path / "m.onnx", 128)
    assert out.stat().st_size <= MAX_MODEL_BYTES
    crops = real_crops[2] if real_crops is not None else tiny_run["x_val"]
    assert len(crops) >= 4
    assert parity(model, out, crops) < 1e-4
    write_metadata(out, model, CropRule(), threshold=0.5)
    runtime = LivenessModel(out)
    scores = runtime.score(crops)
    assert scores.shape == (len(crops),)
    assert np.max(np.abs(scores - torch_scores(model, crops))) < 1e-4
    # dynamic batch: one at a time gives the same scores
    single = np.array([runtime.score(c[None])[0] for c in crops[:3]])
    assert np.max(np.abs(single - scores[:3])) < 1e-5


def test_evaluate_scores_through_the_runtime(tiny_run, tmp_path):
    from ekyc.training.crops import CropCache
    from ekyc.training.evaluate import evaluate
    from ekyc.training.export import export_onnx, write_metadata
    from ekyc.training.model import load_checkpoint

    model, _ = load_checkpoint(tiny_run["summary"]["checkpoint"])
    out = export_onnx(model, tmp_path / "m.onnx", 128)
    write_metadata(out, model, CropRule(), threshold=0.5)
    # a crop cache whose index points at the generated validation crops
    cache = CropCache.for_data(tmp_path, CropRule(), tmp_path / "cache")
    x_val, y_val = tiny_run["x_val"], tiny_run["y_val"]
    items = _write_items(cache.root / "images", x_val, y_val, "e")
    rows = {s.path: {"path": s.path, "status": "ok", "file": p.relative_to(cache.root).as_posix()} for s, p in items}
    samples = [s for s, _ in items] + [Sample("noface.jpg", LIVE, "", "e9", "synthetic", "frame")]
    rows["noface.jpg"] = {"path": "noface.jpg", "status": "no_face"}
    cache.write_index(rows)
    report = evaluate(out, samples, cache, report_path=tmp_path / "report.json")
    assert report["n_scored"] == len(items) and report["n_without_crop"] == 1
    m = report["overall"]
    assert m["n_live"] == int((y_val == 0).sum()) and m["n_spoof"] == int((y_val == 1).sum())
    assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["eer"] <= 1.0
    assert json.loads((tmp_path / "report.json").read_text())["overall"]["bpcer"] == m["bpcer"]


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    from ekyc.training.cli import main

    assert main(["split", "--data-dir", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data directory not found" in err[0] and "Traceback" not in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["crops", "--data-dir", str(tmp_path / "empty")]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--threshold", "0.5"]) == 1
    assert "checkpoint not found" in capsys.readouterr().err


# --- the shipped model ---------------------------------------------------------------------

def test_shipped_model_loads_with_server_metadata():
    from ekyc.server.model import LivenessModel, sha256_file
    from ekyc.training.export import MAX_MODEL_BYTES, probe_batch

    assert SHIPPED.is_file(), "models/liveness.onnx is missing"
    assert SHIPPED.stat().st_size <= MAX_MODEL_BYTES
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    for key in ("version", "crop", "threshold"):
        assert key in meta
    assert isinstance(meta["version"], str) and meta["version"]
    assert 0.0 <= meta["threshold"] <= 1.0
    assert CropRule.from_dict(meta["crop"]) == CropRule()  # the server's default crop
    assert meta["onnx"]["sha256"] == sha256_file(SHIPPED)
    model = LivenessModel(SHIPPED)
    assert model.crop_rule == CropRule() and model.metadata.threshold == meta["threshold"]
    # parity of the shipped file with the PyTorch scores recorded at export time
    probe = meta["parity_probe"]
    scores = model.score(probe_batch(probe["size"], probe["n"]))
    assert np.max(np.abs(scores - np.array(probe["torch_spoof_probability"]))) < 1e-4
    assert np.all((scores >= 0) & (scores <= 1))


def test_shipped_model_metadata_describes_test_metrics():
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    test = meta["test_metrics"]["overall"]
    for key in ("auc", "eer", "apcer_by_attack", "bpcer", "bpcer_at_apcer_1pct"):
        assert key in test
    assert meta["test_metrics"]["threshold"] == meta["threshold"]
    assert set(meta["split"]["subjects"]["test"]) == set(load_split(SPLIT_FILE)["subjects"]["test"])


@needs_data
@pytest.mark.data
def test_shipped_model_separates_real_crops(real_crops):
    """Sanity, not a benchmark: on real crops the shipped model's scores are valid and not constant."""
    from ekyc.server.model import LivenessModel

    picked, cache, crops = real_crops
    scores = LivenessModel(SHIPPED).score(crops)
    assert scores.shape == (len(crops),) and np.all(np.isfinite(scores))
    assert np.ptp(scores) > 1e-3
