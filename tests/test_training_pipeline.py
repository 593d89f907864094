"""``ekyc-train`` end to end on a tiny data set the test builds: every step through the CLI.

With EKYC_DATA_DIR the data set is a few real frames of five NUAA subjects and one replay
person; without it, live and spoof images are generated from a packaged portrait (spoofs by
the print/replay synthesis), so the real face detector finds faces in both.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import packaged_face_path
from ekyc.training.data import SPLITS, load_samples, load_split, split_samples

DATA_DIR = os.environ.get("EKYC_DATA_DIR")
COLUMNS = ["path", "label", "attack", "subject", "source", "kind", "note"]


def _real_tiny(root: Path) -> Path:
    rows = []
    with open(Path(DATA_DIR) / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    for subject in ("nuaa-0001", "nuaa-0002", "nuaa-0003", "nuaa-0004", "nuaa-0005", "replay-a"):
        for label in ("live", "spoof"):
            group = [r for r in manifest if r["subject"] == subject and r["label"] == label]
            for row in group[:: max(1, len(group) // 4)][:4]:
                row = dict(row)
                if subject == "replay-a":  # one person of replay-a, under a name the shared split does not pin
                    row["subject"] = row["source"] = "replay-x"
                target = root / row["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(Path(DATA_DIR).resolve() / row["path"])
                rows.append([row[c] for c in COLUMNS])
    return _write(root, rows)


def _generated_tiny(root: Path) -> Path:
    from ekyc.training.augment import synthesize_print, synthesize_replay

    rgb = np.asarray(Image.open(packaged_face_path()).convert("RGB"))
    h, w = rgb.shape[:2]
    side = min(h, w)
    rng = np.random.default_rng(0)
    rows = []
    for n in range(6):
        subject = f"gen-{n}"
        for k in range(4):
            s = int(side * rng.uniform(0.85, 1.0))
            y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            live = np.asarray(Image.fromarray(rgb[y : y + s, x : x + s]).resize((256, 256)))
            live = np.clip(live.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
            spoof = (synthesize_print if (n + k) % 2 else synthesize_replay)(live, rng)
            for label, image in (("live", live), ("spoof", spoof)):
                rel = f"{label}/{subject}/{k}.jpg"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / rel, quality=92)
                attack = "" if label == "live" else ("print" if (n + k) % 2 else "replay")
                rows.append([rel, label, attack, subject, "generated", "frame", ""])
    return _write(root, rows)


def _write(root: Path, rows) -> Path:
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """``ekyc-train all`` on the tiny data set; returns the paths it wrote."""
    from ekyc.training.cli import main

    tmp = tmp_path_factory.mktemp("pipeline")
    data = (_real_tiny if DATA_DIR else _generated_tiny)(tmp / "data")
    paths = {"data": data, "cache": tmp / "cache", "split": tmp / "split.json", "model": tmp / "model" / "liveness.onnx",
             "reports": tmp / "reports"}
    common = ["--data-dir", str(data), "--cache-dir", str(paths["cache"]), "--split-file", str(paths["split"]), "--quiet"]
    code = main(["all", *common, "--arch", "mobilenet_v3_small", "--no-pretrained", "--crop-size", "64",
                 "--epochs", "2", "--batch-size", "8", "--max-per-group", "0", "--synth-ratio", "0.5",
                 "--hard-mining", "--ema-decay", "0.9", "--output", str(paths["model"]), "--version", "tiny-test-v1",
                 "--n-boot", "20", "--out-dir", str(paths["reports"]), "--max-review-rate", "0.5"])
    assert code == 0
    paths["common"] = common
    return paths


def test_split_is_subject_disjoint_and_reused(pipeline):
    samples = load_samples(pipeline["data"])
    split = load_split(pipeline["split"])
    subjects = [set(split["subjects"][name]) for name in SPLITS]
    assert not (subjects[0] & subjects[1]) and not (subjects[0] & subjects[2]) and not (subjects[1] & subjects[2])
    parts = split_samples(samples, split)
    assert sum(len(p) for p in parts.values()) == len(samples)
    from ekyc.training.cli import main

    before = pipeline["split"].read_text()
    assert main(["split", *pipeline["common"], "--seed", "5"]) == 0  # reused, not remade
    assert pipeline["split"].read_text() == before


def test_training_run_directory(pipeline):
    runs = [p for p in (pipeline["cache"] / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1
    run = runs[0]
    for name in ("config.json", "history.json", "best.pt", "summary.json"):
        assert (run / name).is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["architecture"] == "mobilenet_v3_small" and config["crop"]["size"] == 64
    assert config["synthetic_per_epoch"] > 0 and config["hard_mining"] is True
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["train_loss"]) and "val_eer_by_attack" in h for h in history)


def test_exported_model_carries_calibrated_profiles(pipeline):
    from ekyc.model_store import sha256_file
    from ekyc.models.liveness import LivenessModel

    model = LivenessModel(pipeline["model"])
    meta = model.metadata.raw
    assert meta["version"] == "tiny-test-v1" and meta["crop"]["size"] == 64
    assert set(meta["profiles"]) == {"strict", "balanced", "lenient"} and meta["default_profile"] == "balanced"
    assert meta["threshold"] == meta["profiles"]["balanced"]["threshold"]
    assert meta["profiles"]["strict"]["val_apcer"] <= 0.01 and meta["profiles"]["lenient"]["val_bpcer"] <= 0.01
    assert meta["onnx"]["sha256"] == sha256_file(pipeline["model"])
    assert meta["parity"]["max_abs_diff"] < 1e-4 and meta["parity"]["n_crops"] >= 2
    assert meta["training"]["history"] and meta["validation"]["band_tradeoff"]


def test_evaluation_report_markdown_and_plots(pipeline):
    reports = pipeline["reports"]
    report = json.loads((reports / "liveness-test.json").read_text())
    assert report["split"] == "test" and report["scored_by"].startswith("ekyc.models.liveness.LivenessModel")
    assert set(report["at_profiles"]) == {"strict", "balanced", "lenient"}
    assert report["baselines"]["overall"] and report["stress"]
    for plot in ("det", "scores", "confusion", "band", "loss"):
        assert (reports / f"liveness-test-{plot}.png").is_file()
    assert "## Per attack type" in (reports / "liveness-test.md").read_text()
    meta = json.loads(pipeline["model"].with_suffix(".json").read_text())
    assert meta["test_metrics"]["threshold"] == meta["threshold"]


def test_other_steps_run_on_the_result(pipeline, capsys):
    from ekyc.training.cli import main

    common, model = pipeline["common"], str(pipeline["model"])
    assert main(["evaluate", model, str(pipeline["data"]), *common[2:], "--split", "val", "--n-boot", "0",
                 "--no-stress", "--report", str(pipeline["reports"] / "val.json")]) == 0
    assert json.loads((pipeline["reports"] / "val.json").read_text())["split"] == "val"
    assert main(["calibrate", model, *common]) == 0
    assert main(["bench", model, "-n", "5"]) == 0
    assert "ms median" in capsys.readouterr().out
    run = next(p for p in (pipeline["cache"] / "runs").iterdir() if p.is_dir())
    out = pipeline["reports"] / "compare.md"
    assert main(["compare", str(run), *common, "--out", str(out), "--n-boot", "0"]) == 0
    table = out.read_text()
    assert run.name in table and "best trivial feature" in table
