"""ekyc-quality: `check` (the gate without a server, the same JSON as ekyc-client) and
`calibrate` (a thresholds file that ekyc-server --config loads)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import encode, flat_image
from ekyc.client.cli import to_json
import degrade
from ekyc.quality import cli
from ekyc.quality.gate import QualityGate
from ekyc.server.config import load_config


def run(capfd, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def images(tmp_path_factory, face_jpeg, face_rgb) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    paths = {
        "face": root / "face.jpg",
        "wall": root / "wall.png",
        "dark": root / "dark.jpg",
        "webp": root / "face.webp",
        "text": root / "notes.jpg",
    }
    paths["face"].write_bytes(face_jpeg)
    paths["wall"].write_bytes(flat_image())
    paths["dark"].write_bytes(encode((face_rgb * 0.1).astype(np.uint8)))
    paths["webp"].write_bytes(encode(face_rgb, "WEBP", quality=92))
    paths["text"].write_text("not an image")
    return paths


def test_check_passes_a_good_selfie_with_exit_zero(capfd, images):
    code, out, err = run(capfd, "check", str(images["face"]), str(images["webp"]))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(": PASSED" in line for line in lines)
    assert "yaw" in lines[0] and "Traceback" not in err


def test_check_exits_three_when_an_image_fails(capfd, images):
    code, out, _ = run(capfd, "check", str(images["face"]), str(images["wall"]), str(images["dark"]))
    assert code == 3
    assert "wall.png: FAILED (NO_FACE)" in out
    assert "TOO_DARK" in out.splitlines()[2]


@pytest.mark.parametrize(
    "name, words",
    [("text", "not a JPEG or PNG"), ("missing", "cannot read file")],
)
def test_check_errors_are_one_line_and_exit_one(capfd, images, tmp_path, name, words):
    path = images.get(name, tmp_path / "missing.jpg")
    code, out, err = run(capfd, "check", str(images["wall"]), str(path))
    assert code == 1  # an error outranks the failed wall
    error_lines = [line for line in err.splitlines() if line.startswith("ekyc-quality:")]
    assert len(error_lines) == 1 and words in error_lines[0] and str(path) in error_lines[0]
    assert "Traceback" not in err


def test_check_json_is_what_ekyc_client_prints_for_the_server(capfd, images, client):
    """Same image, same thresholds: the local report equals the served one, field for field."""
    code, out, _ = run(capfd, "check", "--json", str(images["face"]), str(images["wall"]), str(images["text"]))
    assert code == 1
    records = [json.loads(line) for line in out.strip().splitlines()]
    for record, name in zip(records[:2], ("face", "wall")):
        path = images[name]
        response = client.check_quality(path.read_bytes(), request_id=path.name)
        served = json.loads(to_json(response, path=str(path)))
        assert record.keys() == served.keys()
        assert record["quality"]["reasons"] == served["quality"]["reasons"]
        assert record["quality"].get("face_box") == served["quality"].get("face_box")
        for key, value in served["quality"]["scores"].items():
            assert record["quality"]["scores"][key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
    assert records[2] == {"path": str(images["text"]), "error": {"code": "INVALID_ARGUMENT",
                                                                 "message": records[2]["error"]["message"]}}
    assert set(records[0]["quality"]["scores"]) >= {"yaw_deg", "eyes_occluded_score", "landmarks_measured"}


def test_check_walks_folders_and_reads_a_config(capfd, images, tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text("[quality]\nmin_sharpness = 1e9\n")
    code, out, _ = run(capfd, "check", "--config", str(strict), str(images["face"]))
    assert code == 3 and "BLURRY" in out
    folder = tmp_path / "walk"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.jpg").write_bytes(images["face"].read_bytes())
    (folder / "b.png").write_bytes(images["wall"].read_bytes())
    (folder / "ignored.txt").write_text("x")
    code, out, _ = run(capfd, "check", str(folder))
    assert code == 3 and len(out.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "args, words",
    [
        (["check"], "required"),
        (["frobnicate"], "invalid choice"),
        (["check", "--config", "/nonexistent/x.toml", "x.jpg"], "config file not found"),
        (["calibrate", "/nonexistent/folder", "-o", "x.toml"], "not a folder"),
        (["calibrate", ".", "-o", "x.toml", "--percentile", "70"], "percentile"),
    ],
)
def test_usage_errors_exit_one_with_one_line(capfd, tmp_path, args, words):
    code = None
    try:
        code = cli.main(args)
    except SystemExit as exit_:
        code = exit_.code
    _, err = capfd.readouterr()
    assert code == 1
    assert words in err and "Traceback" not in err


def test_calibrate_writes_a_thresholds_file_the_server_loads(capfd, tmp_path, face_rgb):
    folder = tmp_path / "camera"
    folder.mkdir()
    gate_options = load_config(environ={}).quality
    with QualityGate(gate_options) as gate:
        face = gate.assess(face_rgb).face
    # A camera's good images: the portrait at a few exposures, sharpnesses and framings.
    variants = [face_rgb, degrade.expose(face_rgb, face, -0.7), degrade.expose(face_rgb, face, 0.6),
                degrade.blur(face_rgb, face, 0.6), degrade.mirror(face_rgb), degrade.rotate(face_rgb, 5.0),
                degrade.contrast(face_rgb, 0.8), face_rgb[20:, 10:].copy()]
    for index, image in enumerate(variants):
        (folder / f"img{index}.jpg").write_bytes(encode(image, "JPEG", quality=92))
    (folder / "wall.png").write_bytes(flat_image())
    output = tmp_path / "out" / "camera.toml"
    code, out, err = run(capfd, "calibrate", str(folder), "-o", str(output), "--percentile", "5")
    assert code == 0, err
    assert "| brightness |" in out and "min_sharpness" in out
    values = tomllib.loads(output.read_text())["quality"]
    assert {name for name, _, _ in cli.CALIBRATED} == set(values)
    config = load_config(output, environ={})
    limits = config.quality.thresholds
    assert limits.min_sharpness == values["min_sharpness"] != gate_options.thresholds.min_sharpness
    assert limits.min_brightness < limits.max_brightness
    assert limits.max_abs_yaw_deg == gate_options.thresholds.max_abs_yaw_deg  # not calibrated
    report = json.loads(output.with_suffix(".report.json").read_text())
    assert report["images"] == len(variants) + 1 and report["measured"] == len(variants)
    assert report["skipped"] == {"no face": 1}
    assert set(report["scores"]) >= {"brightness", "sharpness", "yaw_deg", "eyes_occluded_score"}
    assert report["scores"]["brightness"]["p0"] <= report["scores"]["brightness"]["p50"] <= report["scores"]["brightness"]["p100"]
    png = output.with_suffix(".histograms.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # Percentile 0 without margin: the limits are the folder's extremes, so all its images pass,
    # and each limit is tight: some image sits on it.
    extremes = tmp_path / "extremes.toml"
    code, _, err = run(capfd, "calibrate", str(folder), "-o", str(extremes), "--percentile", "0", "--margin", "0")
    assert code == 0, err
    report = json.loads(extremes.with_suffix(".report.json").read_text())
    assert all(entry["folder_images_rejected"] == 0 for entry in report["thresholds"].values())
    code, out, _ = run(capfd, "check", "--config", str(extremes), *[str(p) for p in sorted(folder.glob("img*.jpg"))])
    assert code == 0, out
    tight = tomllib.loads(extremes.read_text())["quality"]
    assert tight["min_sharpness"] == pytest.approx(report["scores"]["sharpness"]["p0"], rel=1e-3)


def test_calibrate_without_any_face_is_an_error(capfd, tmp_path):
    folder = tmp_path / "walls"
    folder.mkdir()
    (folder / "wall.png").write_bytes(flat_image())
    code, _, err = run(capfd, "calibrate", str(folder), "-o", str(tmp_path / "t.toml"))
    assert code == 1 and "no face" in err
    assert not (tmp_path / "t.toml").exists()


def test_the_installed_command_runs(tmp_path, images):
    command = Path(sys.executable).parent / "ekyc-quality"
    done = subprocess.run([str(command), "check", "--json", str(images["face"])], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["quality"]["passed"] is True
    assert "Traceback" not in done.stderr
