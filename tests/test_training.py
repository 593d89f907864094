"""Tests of the training pipeline (ekyc.training) and of the shipped liveness model.

Data-free by default (synthetic images written to tmp_path); tests marked ``data`` also run
on the shared images when EKYC_DATA_DIR is set. Loaders and splits: test_training_data.py;
calibration: test_training_calibration.py; the CLI end to end: test_training_pipeline.py.
"""

from __future__ import annotations

import json
import os
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from ekyc.quality.faces import CropRule
from ekyc.training import metrics
from ekyc.training.data import LIVE, Sample, load_manifest, load_split

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


# --- crops -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_crops(tmp_path_factory):
    """A few real face crops (through the crop cache) with EKYC_DATA_DIR, else None."""
    if not DATA_DIR:
        return None
    from ekyc.training.crops import CropCache, build_crops, load_crops

    samples = load_manifest(DATA_DIR)
    picked = [s for s in samples if s.kind == "frame"][::400][:4] + [s for s in samples if s.kind == "face_crop"][::300][:4]
    cache = CropCache.for_data(DATA_DIR, TINY, tmp_path_factory.mktemp("crops"))
    build_crops(picked, DATA_DIR, cache, progress=False)
    items = cache.usable(picked)
    return picked, cache, load_crops([p for _, p in items])


@needs_data
@pytest.mark.data
def test_cached_crops_are_the_server_crops(real_crops):
    """The cache holds exactly what the server scores: decode, the gate's main face, crop_main_face."""
    from ekyc.quality.face_search import crop_main_face
    from ekyc.quality.gate import QualityGate
    from ekyc.quality.options import load_gate_options
    from ekyc.training.crops import load_crop

    picked, cache, crops = real_crops
    frames = [(s, p) for s, p in cache.usable(picked) if s.kind == "frame"]
    assert frames and crops.shape[1:] == (64, 64, 3)
    with QualityGate(load_gate_options(environ={})) as gate:
        for sample, path in frames:
            rgb = gate.decode((Path(DATA_DIR) / sample.path).read_bytes())
            quality = gate.assess(rgb)
            assert np.array_equal(load_crop(path), crop_main_face(rgb, quality.faces, TINY))


# --- training, export, evaluation ------------------------------------------------------------

TINY = CropRule(size=64)  # the tiny training/export tests run at 64 px: 4x cheaper than 128


def _synthetic_crops(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, max_per_group=0, patience=1, seed=0, warmup_epochs=0,
                         synth_ratio=0.0)
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
    from ekyc.training.augment import AugmentConfig, augment_crop

    crops, _ = _synthetic_crops(4)
    rng = np.random.default_rng(0)
    out = [augment_crop(c, rng, AugmentConfig()) for c in crops for _ in range(3)]
    assert all(o.shape == crops[0].shape and o.dtype == np.uint8 for o in out)
    assert any(not np.array_equal(o, crops[i // 3]) for i, o in enumerate(out))
    still = AugmentConfig(flip_p=0, geometry_p=0, rescale_p=0, blur_p=0, jitter_p=0, noise_p=0, jpeg_p=0)
    assert np.array_equal(augment_crop(crops[0], rng, still), crops[0])


def test_attack_synthesis_leaves_its_cues():
    from ekyc.training.augment import synthesize, synthesize_print, synthesize_replay

    crops, _ = _synthetic_crops(2)
    live = crops[0]
    printed = synthesize_print(live, np.random.default_rng(1))
    replayed = synthesize_replay(live, np.random.default_rng(1))
    for out in (printed, replayed):
        assert out.shape == live.shape and out.dtype == np.uint8 and not np.array_equal(out, live)
    # a print loses colour and dynamic range: less saturation, no pure black or white
    def saturation(x):
        x = x.astype(float)
        return float(np.mean(x.max(-1) - x.min(-1)))
    assert saturation(printed) < saturation(live)
    # same seed, same spoof; the attack name says it is synthetic
    a, name = synthesize(live, np.random.default_rng(3))
    b, _ = synthesize(live, np.random.default_rng(3))
    assert np.array_equal(a, b) and name in ("synthetic-print", "synthetic-replay")


@pytest.mark.parametrize("architecture", ["mobilenet_v3_small", "mobilenet_v2", "efficientnet_b0"])
def test_every_backbone_builds_and_exports_with_dynamic_batch(architecture, tmp_path):
    import torch

    from ekyc.training.export import export_onnx, parity
    from ekyc.training.model import build_model

    torch.manual_seed(0)
    net = build_model(architecture, pretrained=architecture == "mobilenet_v2").eval()
    crops, _ = _synthetic_crops(3, size=64)
    out = export_onnx(net, tmp_path / f"{architecture}.onnx", 64)
    assert parity(net, out, crops) < 1e-4
    import onnx

    graph = onnx.load(str(out))
    assert graph.opset_import[0].version == 17
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch


def test_export_parity_and_runtime_load(tiny_run, real_crops, tmp_path):
    from ekyc.models.liveness import LivenessModel
    from ekyc.training.export import MAX_MODEL_BYTES, export_onnx, parity, torch_scores, write_metadata
    from ekyc.training.model import load_checkpoint

    model, _ = load_checkpoint(tiny_run["summary"]["checkpoint"])
    out = export_onnx(model, tmp_path / "m.onnx", TINY.size)
    assert out.stat().st_size <= MAX_MODEL_BYTES
    crops = real_crops[2] if real_crops is not None else tiny_run["x_val"]
    assert len(crops) >= 4
    assert parity(model, out, crops) < 1e-4
    write_metadata(out, model, TINY, threshold=0.5)
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
    out = export_onnx(model, tmp_path / "m.onnx", TINY.size)
    write_metadata(out, model, TINY, threshold=0.5)
    # a crop cache whose index points at the generated validation crops
    cache = CropCache.for_data(tmp_path, TINY, tmp_path / "cache")
    x_val, y_val = tiny_run["x_val"], tiny_run["y_val"]
    items = _write_items(cache.root / "images", x_val, y_val, "e")
    rows = {s.path: {"path": s.path, "status": "ok", "file": p.relative_to(cache.root).as_posix()} for s, p in items}
    samples = [s for s, _ in items] + [Sample("noface.jpg", LIVE, "", "e9", "synthetic", "frame")]
    rows["noface.jpg"] = {"path": "noface.jpg", "status": "no_face"}
    cache.write_index(rows)
    report = evaluate(out, samples, cache, report_path=tmp_path / "report.json", n_boot=50,
                      plots_dir=tmp_path / "plots", markdown_path=tmp_path / "report.md",
                      history=[{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "val_eer": 0.3}])
    assert report["n_scored"] == len(items) and report["n_without_crop"] == 1
    m = report["overall"]
    assert m["n_live"] == int((y_val == 0).sum()) and m["n_spoof"] == int((y_val == 1).sum())
    assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["eer"] <= 1.0
    assert json.loads((tmp_path / "report.json").read_text())["overall"]["bpcer"] == m["bpcer"]
    # ISO metrics per attack type with intervals, at the (single) metadata threshold
    at = report["at_profiles"]["default"]
    assert at["threshold"] == 0.5 and set(at["apcer_by_attack"]) == {"print"}
    assert at["bpcer"]["n"] == m["n_live"] and len(at["bpcer"]["wilson"]) == 2 and len(at["bpcer"]["boot"]) == 2
    for key in ("auc", "eer", "bpcer_at_apcer_1pct", "bpcer_at_apcer_5pct", "apcer_at_bpcer_5pct", "ci"):
        assert key in report["by_attack"]["print"]
    assert report["baselines"]["overall"]["best"]["feature"] in ("brightness", "contrast", "saturation", "laplacian_var")
    assert set(report["stress"]) >= {"resolution_64px", "jpeg_q40"}
    assert report["slices"]["subject"] and "lighting (measured)" in report["slices"]
    assert set(report["plots"]) == {"det", "scores", "confusion", "band", "loss"}
    for path in report["plots"].values():
        assert Path(path).stat().st_size < 200_000
    text = (tmp_path / "report.md").read_text()
    assert "BPCER@APCER=1 %" in text and "![det](plots/" in text


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
    assert main(["evaluate", str(tmp_path / "none.onnx"), str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]


# --- the shipped model ---------------------------------------------------------------------

def test_shipped_model_loads_with_server_metadata():
    from ekyc.model_store import sha256_file
    from ekyc.models.liveness import LivenessModel
    from ekyc.training.export import MAX_MODEL_BYTES, probe_batch

    assert SHIPPED.is_file(), "models/liveness.onnx is missing"
    assert SHIPPED.stat().st_size <= MAX_MODEL_BYTES
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    for key in ("version", "inputs", "threshold", "profiles", "default_profile"):
        assert key in meta
    assert isinstance(meta["version"], str) and meta["version"]
    assert meta["onnx"]["sha256"] == sha256_file(SHIPPED) and meta["onnx"]["opset"] == 17
    model = LivenessModel(SHIPPED)
    assert model.metadata.threshold == meta["threshold"]
    for (name, rule), item in zip(model.inputs, meta["inputs"]):
        assert item["name"] == name and rule == CropRule.from_dict(item)
        assert item["shape"] == ["N", rule.size, rule.size, 3]
    # parity of the shipped file with the PyTorch scores recorded at export time
    probe = meta["parity_probe"]
    expected = np.array(probe["torch_spoof_probability"])
    feed = {name: probe_batch(size, len(expected)) for name, size in zip(probe["inputs"], probe["sizes"])}
    scores = model.score_inputs(feed)
    assert np.max(np.abs(scores - expected)) < 1e-4
    assert np.all((scores >= 0) & (scores <= 1))


def test_shipped_model_profiles_follow_the_contract():
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    profiles = meta["profiles"]
    assert set(profiles) == {"strict", "balanced", "lenient"} and meta["default_profile"] == "balanced"
    assert meta["threshold"] == profiles["balanced"]["threshold"]
    targets = {"strict": "APCER<=1%", "lenient": "BPCER<=1%"}
    for name, p in profiles.items():
        assert {"threshold", "target", "val_apcer", "val_bpcer", "review_band"} <= set(p)
        assert 0.0 <= p["threshold"] <= 1.0 and 0.0 <= p["val_apcer"] <= 1.0 and 0.0 <= p["val_bpcer"] <= 1.0
        if name in targets:
            assert p["target"] == targets[name]
        if p["review_band"] is not None:
            lo, hi = p["review_band"]
            assert 0.0 <= lo <= p["threshold"] <= hi <= 1.0
    assert profiles["strict"]["val_apcer"] <= 0.01 and profiles["lenient"]["val_bpcer"] <= 0.01
    assert profiles["strict"]["threshold"] <= profiles["balanced"]["threshold"] <= profiles["lenient"]["threshold"]


def test_shipped_model_metadata_describes_leave_one_setup_out_metrics():
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    loso = meta["loso"]
    report = json.loads((ROOT / "models" / "reports" / "loso-liveness.json").read_text())
    assert set(loso["rows"]) == set(report["rows"]) and len(loso["rows"]) >= 2
    for setup, row in {**loso["rows"], "pooled": loso["pooled"]}.items():
        assert {"auc", "eer", "bpcer_at_apcer_1pct", "apcer_at_bpcer_5pct", "ci"} <= set(row), setup
        assert {"auc", "eer", "bpcer_at_apcer_1pct", "apcer_at_bpcer_5pct"} <= set(row["ci"]), setup
        source = report["rows"].get(setup, report["pooled"])
        assert row["auc"] == pytest.approx(source["auc"])
    # the profiles are the report's pooled out-of-fold ones, each band spanning the setups' thresholds
    for name, p in meta["profiles"].items():
        assert p["threshold"] == pytest.approx(report["profiles"][name]["threshold"])
        lo, hi = p["review_band"]
        assert all(lo <= t <= hi for t in p["setup_thresholds"].values())
    assert meta["training"]["recipe"]["members"] and meta["latency"]["threads"] == 1
    assert meta["latency"]["median_ms"] <= 6.0


@needs_data
@pytest.mark.data
def test_shipped_model_separates_real_crops(real_crops, tmp_path):
    """Sanity, not a benchmark: on real crops (cut with the shipped model's own crop rule) the
    scores are valid and not constant."""
    from ekyc.models.liveness import LivenessModel
    from ekyc.training.crops import CropCache, build_crops, load_crops

    model = LivenessModel(SHIPPED)
    picked = real_crops[0]
    crops = {}
    for name, rule in model.inputs:
        cache = CropCache.for_data(DATA_DIR, rule, tmp_path / "cache")
        build_crops(picked, DATA_DIR, cache, progress=False)
        crops[name] = load_crops([p for _, p in cache.usable(picked)])
    scores = model.score_inputs(crops)
    assert scores.shape[0] >= 6 and np.all(np.isfinite(scores))
    assert np.ptp(scores) > 1e-3
