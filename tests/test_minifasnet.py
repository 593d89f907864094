"""The MiniFASNet teacher/peer: checksums, conversion, crops, and scoring through ONNX Runtime.

The MiniFASNet files come from ``../shared/models/minifasnet`` (or $EKYC_MINIFASNET_DIR);
without them (a fresh clone with no shared folder) these tests skip, except the crop rule's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ekyc.quality.faces import CropRule, Face, crop_face
from ekyc.training.facecrops import CropSpec, crop_input


def _teacher_dir() -> Path | None:
    from ekyc.training.minifasnet import FILES, models_dir

    d = models_dir()
    return d if all((d / f).is_file() for f, _ in FILES.values()) else None


needs_teacher = pytest.mark.skipif(_teacher_dir() is None, reason="MiniFASNet files (../shared/models/minifasnet) absent")


def _reference_crop(rgb, box, scale, size):
    """Silent-Face's rule as its README states it, written out independently."""
    import cv2

    h_img, w_img = rgb.shape[:2]
    x, y, w, h = box
    scale = min((h_img - 1) / h, (w_img - 1) / w, scale)
    cx, cy = x + w / 2, y + h / 2
    left, top, right, bottom = cx - w * scale / 2, cy - h * scale / 2, cx + w * scale / 2, cy + h * scale / 2
    if left < 0:
        right, left = right - left, 0
    if top < 0:
        bottom, top = bottom - top, 0
    if right > w_img - 1:
        left, right = left - (right - w_img + 1), w_img - 1
    if bottom > h_img - 1:
        top, bottom = top - (bottom - h_img + 1), h_img - 1
    window = rgb[int(top) : int(bottom) + 1, int(left) : int(right) + 1]
    return cv2.resize(window, (size, size), interpolation=cv2.INTER_AREA if window.shape[0] > size else cv2.INTER_LINEAR)


@pytest.mark.parametrize("box", [(100, 80, 60, 70), (2, 3, 80, 90), (250, 180, 60, 55), (0, 0, 300, 230)])
@pytest.mark.parametrize("scale", [2.7, 4.0])
def test_shift_crop_is_silent_face_rule_and_stays_inside(box, scale):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    ours = crop_face(rgb, Face(*box, 0.9), CropRule(80, scale, "shift"))
    assert ours.shape == (80, 80, 3)
    assert np.array_equal(ours, _reference_crop(rgb, box, scale, 80))
    face = Face(*box, 0.9)
    assert np.array_equal(crop_input(rgb, face, CropSpec("f", 80, scale, "shift")), ours)


def test_replicate_spec_is_the_servers_crop_rule():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)
    face = Face(-10, 20, 90, 100, 0.9)
    assert np.array_equal(crop_input(rgb, face, CropSpec("image", 128, 1.2)), crop_face(rgb, face, CropRule(128, 1.2)))
    with pytest.raises(ValueError):
        CropSpec("bad", 80, 2.7, "mirror")


@needs_teacher
def test_teacher_files_match_sha256sums_and_a_changed_file_is_refused(tmp_path):
    from ekyc.training.minifasnet import FILES, TeacherFileError, expected_sha256, sha256_file, verified_file

    d = _teacher_dir()
    sums = expected_sha256(d)
    readme = (d / "README.md").read_text() if (d / "README.md").is_file() else ""
    for name, (file_name, _) in FILES.items():
        path = verified_file(name, d)
        assert sha256_file(path) == sums[file_name]
        assert file_name in readme
    copy = tmp_path / "minifasnet"
    copy.mkdir()
    for file_name, _ in FILES.values():
        shutil.copyfile(d / file_name, copy / file_name)
    (tmp_path / "SHA256SUMS").write_text((d.parent / "SHA256SUMS").read_text())
    verified_file("minifasnet_v2", copy)
    with open(copy / FILES["minifasnet_v2"][0], "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(TeacherFileError, match="does not match"):
        verified_file("minifasnet_v2", copy)


@needs_teacher
def test_converted_teacher_and_peer_onnx_give_the_original_scores(tmp_path):
    """The PyTorch conversion, and the fused peer ONNX run by the server's LivenessModel (the ONNX Runtime
    path every candidate is scored through) equal the original files run directly."""
    import onnxruntime as ort
    import torch

    from ekyc.training.loso import peer_model
    from ekyc.training.minifasnet import FILES
    from ekyc.training.multimodel import export_fused, open_model, write_fused_metadata

    rng = np.random.default_rng(2)
    crops = {"face_x2.7": rng.integers(0, 256, (5, 80, 80, 3)).astype(np.uint8),
             "face_x4": rng.integers(0, 256, (5, 80, 80, 3)).astype(np.uint8)}
    peer = peer_model()  # converts both files once
    live = []
    for member, (file_name, _), key in zip(peer.members, FILES.values(), ("face_x2.7", "face_x4")):
        bgr = crops[key][..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
        session = ort.InferenceSession(str(_teacher_dir() / file_name), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input": bgr})[0]
        with torch.no_grad():
            converted = member.net(torch.from_numpy(np.ascontiguousarray(bgr))).numpy()
        assert np.abs(converted - logits).max() < 1e-4
        e = np.exp(logits - logits.max(1, keepdims=True))
        live.append(e[:, 1] / e.sum(1))
    expected = 1.0 - np.mean(live, axis=0)
    path = export_fused(peer, tmp_path / "peer.onnx")
    write_fused_metadata(path, peer, "peer-test")
    model = open_model(path)
    assert [name for name, _ in model.inputs] == ["face_x2.7", "face_x4"]
    assert [(r.size, r.scale, r.fit) for _, r in model.inputs] == [(80, 2.7, "shift"), (80, 4.0, "shift")]
    assert np.abs(model.score_inputs(crops) - expected).max() < 1e-5


@needs_teacher
def test_shipped_model_is_the_checked_minifasnet_pair():
    """The bundled model records the sha256 of the MiniFASNet files it was built from (they must
    match SHA256SUMS) and scores exactly as those files, fused, do."""
    import json

    import onnxruntime as ort

    from ekyc.models.liveness import LivenessModel
    from ekyc.paths import DEFAULT_MODEL
    from ekyc.training.minifasnet import FILES, expected_sha256

    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    sums = expected_sha256(_teacher_dir())
    assert meta["minifasnet_sources"] == {f: sums[f] for f, _ in FILES.values()}
    model = LivenessModel(DEFAULT_MODEL)
    assert [(name, r.size, r.scale, r.fit) for name, r in model.inputs] == [
        ("face_x2.7", 80, 2.7, "shift"), ("face_x4", 80, 4.0, "shift")]
    rng = np.random.default_rng(5)
    crops = {name: rng.integers(0, 256, (4, 80, 80, 3)).astype(np.uint8) for name, _ in model.inputs}
    live = []
    for (file_name, _), name in zip(FILES.values(), crops):
        session = ort.InferenceSession(str(_teacher_dir() / file_name), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input": crops[name][..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)})[0]
        e = np.exp(logits - logits.max(1, keepdims=True))
        live.append(e[:, 1] / e.sum(1))
    assert np.abs(model.score_inputs(crops) - (1 - np.mean(live, axis=0))).max() < 1e-4
