"""Data loaders (manifest, folders, CelebA-Spoof), subject regrouping, splits and the crop cache."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ekyc.quality.faces import CropRule
from ekyc.training.data import (
    CELEBA_ATTRIBUTES,
    LIVE,
    SHARED_DATA_REGROUP,
    SPLITS,
    SPOOF,
    DataError,
    Sample,
    cluster_key,
    detect_layout,
    ensure_split,
    load_celeba_spoof,
    load_folder,
    load_manifest,
    load_samples,
    load_split,
    make_split,
    regroup,
    slice_values,
    split_samples,
)

ROOT = Path(__file__).resolve().parents[1]
SPLIT_FILE = ROOT / "training" / "splits" / "shared-data.json"
DATA_DIR = os.environ.get("EKYC_DATA_DIR")
needs_data = pytest.mark.skipif(not DATA_DIR, reason="needs EKYC_DATA_DIR (the shared face images)")


def _check_split(split: dict, samples: list[Sample]) -> dict[str, list[Sample]]:
    """No subject in two splits, every sample in exactly one, both classes everywhere."""
    subjects = [set(split["subjects"][name]) for name in SPLITS]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not subjects[a] & subjects[b], "a subject is in two splits"
    parts = split_samples(samples, split)
    assert sum(len(p) for p in parts.values()) == len(samples)
    for name, part in parts.items():
        assert {s.label for s in part} == {LIVE, SPOOF}, f"{name} lacks a class"
        assert {s.subject for s in part} <= set(split["subjects"][name])
    return parts


def _shared_like_manifest(root: Path, n_subjects: int = 12, live_only: tuple[str, ...] = ()) -> Path:
    """A manifest shaped like the shared data: NUAA subjects plus two replay sets of numbered frames."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(1, n_subjects + 1):
        subject = f"nuaa-{i:04d}"
        for label in ("live", "spoof"):
            if label == "spoof" and subject in live_only:
                continue
            for k in range(3):
                rows.append([f"nuaa/{label}/{i:04d}/{i:04d}_00_0{k}_01_{4 * k}.jpg", label,
                             "print" if label == "spoof" else "", subject, "nuaa", "frame",
                             f"glasses=00 pos=0{k} session=01"])
    # every person of SHARED_DATA_REGROUP gets frames at both ends of its range
    for rule in SHARED_DATA_REGROUP:
        for frame in (rule["first"], rule["last"]):
            rows.append([f"replay/{rule['subject']}/{rule['label']}/{frame}.jpg", rule["label"],
                         "replay" if rule["label"] == "spoof" else "", rule["subject"], rule["subject"], "face_crop", ""])
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "attack", "subject", "source", "kind", "note"])
        writer.writerows(rows)
    return root


# --- loaders ---------------------------------------------------------------------------------

def test_manifest_meta_from_notes_and_file_names(tmp_path):
    samples = load_manifest(_shared_like_manifest(tmp_path / "data"))
    nuaa = next(s for s in samples if s.source == "nuaa" and s.label == SPOOF)
    assert nuaa.meta["glasses"] == "00" and nuaa.meta["session"] == "01" and "frame" in nuaa.meta
    assert nuaa.attack == "print" and nuaa.attack_family == "print"
    replay = next(s for s in samples if s.path == "replay/replay-b/live/68.jpg")
    assert replay.meta["frame"] == 68 and replay.kind == "face_crop"
    assert detect_layout(tmp_path / "data") == "manifest"
    # a manifest row without a label is an error with its line number
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.csv").write_text("path,label,attack,subject,source,kind\nx.jpg,maybe,,s,t,frame\n")
    with pytest.raises(DataError, match=":2: label"):
        load_manifest(tmp_path / "bad")


def test_load_folder_subjects_and_attack_folders(tmp_path):
    img = Image.new("RGB", (8, 8))
    for rel in ("live/alice/1.jpg", "live/alice/2.png", "spoof/alice/3.jpg", "live/bob.jpg", "spoof/x.txt",
                "spoof/replay/carol/4.jpg", "live/carol/5.jpg",
                "Data/test/10001/live/a.png", "Data/test/10001/spoof/b.jpg", "other/c.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("not an image")
        else:
            img.save(tmp_path / rel)
    samples = load_folder(tmp_path, attack="print")
    by_path = {s.path: s for s in samples}
    assert set(by_path) == {"live/alice/1.jpg", "live/alice/2.png", "spoof/alice/3.jpg", "live/bob.jpg",
                            "spoof/replay/carol/4.jpg", "live/carol/5.jpg",
                            "Data/test/10001/live/a.png", "Data/test/10001/spoof/b.jpg"}
    assert by_path["Data/test/10001/spoof/b.jpg"].subject == "10001"
    assert by_path["Data/test/10001/spoof/b.jpg"].label == SPOOF
    assert by_path["spoof/alice/3.jpg"].subject == "alice" and by_path["spoof/alice/3.jpg"].attack == "print"
    assert by_path["spoof/replay/carol/4.jpg"].attack == "replay"
    assert by_path["spoof/replay/carol/4.jpg"].subject == "carol" == by_path["live/carol/5.jpg"].subject
    assert by_path["live/alice/1.jpg"].attack == "" and by_path["live/bob.jpg"].subject == "bob"
    with pytest.raises(DataError):
        load_folder(tmp_path / "missing")


def _labels(spoof_type: int, illumination: int = 0, environment: int = 0, glasses: bool = False) -> list[int]:
    attrs = [0] * 40
    attrs[CELEBA_ATTRIBUTES.index("eyeglasses")] = int(glasses)
    return attrs + [spoof_type, illumination, environment, int(spoof_type > 0)]


def write_celeba_tree(root: Path) -> Path:
    """A tiny CelebA-Spoof tree in its documented layout (images, *_BB.txt, metas/intra_test labels)."""
    rng = np.random.default_rng(0)
    labels = {"train": {}, "test": {}}
    plan = {"train": {"4980": [0, 0, 1, 8], "4981": [0, 3, 9], "4982": [0, 7]}, "test": {"9001": [0, 2, 10], "9002": [0, 0, 4]}}
    for part, subjects in plan.items():
        for subject, types in subjects.items():
            for k, spoof_type in enumerate(types):
                folder = "live" if spoof_type == 0 else "spoof"
                rel = f"Data/{part}/{subject}/{folder}/{k:06d}.{'png' if k % 2 else 'jpg'}"
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
                path.with_name(path.stem + "_BB.txt").write_text("56 40 112 140 0.99\n")
                labels[part][rel] = _labels(spoof_type, illumination=2 if spoof_type else 0,
                                            environment=1 if spoof_type else 0, glasses=subject == "4981")
    metas = root / "metas" / "intra_test"
    metas.mkdir(parents=True)
    for part, table in labels.items():
        (metas / f"{part}_label.json").write_text(json.dumps(table))
    return root


def test_celeba_spoof_loader_reads_labels_boxes_and_attributes(tmp_path):
    root = write_celeba_tree(tmp_path / "celeba")
    assert detect_layout(root) == "celeba-spoof"
    samples = load_samples(root)
    assert len(samples) == 15
    by_path = {s.path: s for s in samples}
    replay = by_path["Data/train/4980/spoof/000003.png"]
    assert (replay.label, replay.attack, replay.attack_family, replay.subject) == (SPOOF, "pad", "replay", "4980")
    assert replay.meta["illumination"] == "strong" and replay.meta["environment"] == "indoor"
    assert replay.meta["bbox_224"] == [56.0, 40.0, 112.0, 140.0, 0.99]
    assert by_path["Data/test/9001/spoof/000002.jpg"].attack == "3d_mask"
    assert by_path["Data/train/4981/spoof/000001.png"].attack_family == "print"
    live = by_path["Data/train/4981/live/000000.jpg"]
    assert live.label == LIVE and live.attack == "" and live.meta["attributes"]["eyeglasses"] is True
    assert slice_values(live)["glasses"] == "yes" and "illumination" not in slice_values(live)
    assert slice_values(replay)["attr:eyeglasses"] == "no"
    # the official test part is pinned to the test split; the rest is split by subject
    split = make_split(samples, seed=0, val_fraction=0.34)
    parts = _check_split(split, samples)
    assert set(split["subjects"]["test"]) == {"9001", "9002"}
    assert all(s.meta["official_split"] == "train" for s in parts["train"] + parts["val"])


def test_celeba_spoof_loader_rejects_inconsistent_labels(tmp_path):
    root = write_celeba_tree(tmp_path / "celeba")
    label_file = root / "metas" / "intra_test" / "train_label.json"
    table = json.loads(label_file.read_text())
    table["Data/train/4980/live/000000.jpg"] = _labels(7)  # a spoof type under live/
    label_file.write_text(json.dumps(table))
    with pytest.raises(DataError, match="contradicts"):
        load_celeba_spoof(root)
    table["Data/train/4980/live/000000.jpg"] = [0] * 10
    label_file.write_text(json.dumps(table))
    with pytest.raises(DataError, match="44 labels"):
        load_celeba_spoof(root)


def test_dataset_box_is_used_when_no_face_is_found(tmp_path):
    """CelebA-Spoof's own box (224-scale) crops an image the detector finds nothing in."""
    from ekyc.quality.faces import Face, crop_face
    from ekyc.training.crops import DATASET_BOX, CropCache, build_crops, load_crop

    root = write_celeba_tree(tmp_path / "celeba")
    samples = [s for s in load_samples(root) if s.subject == "4982"]
    cache = CropCache.for_data(root, CropRule(size=32), tmp_path / "cache")
    counts = build_crops(samples, root, cache, progress=False)
    assert counts == {DATASET_BOX: 2}
    assert cache.usable(samples) == []  # the server would say NO_FACE: not scored by default
    usable = cache.usable(samples, fallback=True)
    assert len(usable) == 2
    pixels = np.asarray(Image.open(root / samples[0].path).convert("RGB"))
    # 80 x 60 image: x 56*80/224=20, y 40*60/224=11, w 112*80/224=40, h 140*60/224=38
    expected = crop_face(pixels, Face(20, 11, 40, 38, 0.99), CropRule(size=32))
    got = dict((s.path, p) for s, p in usable)[samples[0].path]
    assert np.array_equal(load_crop(got), expected)


# --- regrouping and splits ---------------------------------------------------------------------

def test_regroup_by_frame_ranges_and_gaps_are_errors():
    samples = [Sample(f"r/live/{i}.jpg", LIVE, "", "r", "r", "face_crop", {"frame": i}) for i in (0, 5, 9)]
    rules = [{"subject": "r", "label": "live", "first": 0, "last": 5, "new_subject": "r-1"},
             {"subject": "r", "label": "live", "first": 6, "last": 9, "new_subject": "r-2"}]
    out = regroup(samples, rules)
    assert [s.subject for s in out] == ["r-1", "r-1", "r-2"] and out[0].meta["original_subject"] == "r"
    with pytest.raises(DataError, match="matches 0 ranges"):
        regroup(samples + [Sample("r/live/12.jpg", LIVE, "", "r", "r", "face_crop", {"frame": 12})], rules)


def test_shared_like_split_puts_replay_people_in_every_split(tmp_path):
    samples = load_manifest(_shared_like_manifest(tmp_path / "data"))
    split = make_split(samples, seed=0)
    parts = _check_split(split, samples)
    assert split["regroup"] == SHARED_DATA_REGROUP
    assert {"replay-a-p1", "replay-a-p2"} <= set(split["subjects"]["train"])
    assert "replay-b-p1" in split["subjects"]["val"] and "replay-b-p2" in split["subjects"]["test"]
    for name in SPLITS:
        assert {s.attack for s in parts[name] if s.label == SPOOF} == {"print", "replay"}


def test_split_retries_until_every_split_has_both_classes(tmp_path):
    # four subjects without spoofs: some shuffles leave a split with one class, which must be retried
    samples = load_manifest(_shared_like_manifest(tmp_path / "data", live_only=("nuaa-0001", "nuaa-0002",
                                                                                 "nuaa-0003", "nuaa-0004")))
    nuaa = [s for s in samples if s.source == "nuaa"]
    for seed in range(5):
        split = make_split(nuaa, seed=seed)
        _check_split(split, nuaa)
        assert len(split["subjects"]["test"]) == 3 and len(split["subjects"]["val"]) == 2
    assert make_split(nuaa, seed=3)["subjects"] == make_split(nuaa, seed=3)["subjects"]


def test_split_file_is_reused_and_checked(tmp_path):
    samples = load_manifest(_shared_like_manifest(tmp_path / "data"))
    path = tmp_path / "split.json"
    first, created = ensure_split(samples, path, seed=1)
    assert created and path.is_file()
    again, created = ensure_split(samples, path, seed=99)
    assert not created and again["subjects"] == first["subjects"]
    assert load_split(path)["subjects"] == first["subjects"]
    extra = samples + [Sample("x.jpg", LIVE, "", "someone-new", "nuaa", "frame")]
    with pytest.raises(DataError, match="not in the split"):
        split_samples(extra, first)
    broken = dict(first, subjects={**first["subjects"], "val": first["subjects"]["train"][:1]})
    path.write_text(json.dumps(broken))
    with pytest.raises(DataError, match="is in"):
        load_split(path)


def test_clusters_group_recordings_and_frame_blocks():
    a = Sample("n/1.jpg", LIVE, "", "nuaa-0001", "nuaa", "frame", {"glasses": "00", "pos": "01", "session": "02", "frame": 4})
    b = Sample("n/2.jpg", LIVE, "", "nuaa-0001", "nuaa", "frame", {"glasses": "00", "pos": "01", "session": "02", "frame": 8})
    c = Sample("r/3.jpg", SPOOF, "replay", "replay-b-p2", "replay-b", "face_crop", {"frame": 61})
    d = Sample("r/4.jpg", SPOOF, "replay", "replay-b-p2", "replay-b", "face_crop", {"frame": 85})
    assert cluster_key(a) == cluster_key(b) != cluster_key(c) != cluster_key(d)


@needs_data
@pytest.mark.data
def test_committed_split_on_shared_data():
    split = load_split(SPLIT_FILE)
    # The capture setups the split was made for; setups added to the shared data later
    # (replay-e) are in none of its parts.
    known = {subject for name in SPLITS for subject in split["subjects"][name]}
    sources = {s.source for s in regroup(load_manifest(DATA_DIR), split["regroup"]) if s.subject in known}
    samples = [s for s in load_manifest(DATA_DIR) if s.source in sources]
    parts = _check_split(split, samples)
    for name in SPLITS:
        assert {s.attack for s in parts[name] if s.label == SPOOF} == {"print", "replay"}, name
        assert split["counts"][name]["live"] == sum(s.label == LIVE for s in parts[name])
    # reproducible from the code
    assert make_split(samples, seed=0)["subjects"] == split["subjects"]
    # no near-identical neighbouring frames across splits: along each replay set's frame numbers
    # the split changes at most once per label, exactly at a person boundary
    where = {subject: name for name in SPLITS for subject in split["subjects"][name]}
    regrouped = regroup(samples, split["regroup"])
    for source in ("replay-a", "replay-b"):
        for label in (LIVE, SPOOF):
            frames = sorted((s.meta["frame"], where[s.subject]) for s in regrouped if s.source == source and s.label == label)
            changes = [i for i in range(1, len(frames)) if frames[i][1] != frames[i - 1][1]]
            assert len(changes) <= 1, (source, label, changes)


# --- crop cache -----------------------------------------------------------------------------

def test_crop_cache_fallbacks_without_faces(tmp_path):
    """No face: a face_crop image's fallback is the whole image, a frame is skipped; only
    detected faces are used unless the fallback is asked for."""
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
    assert cache.usable(samples) == []
    usable = cache.usable(samples, fallback=True)
    assert [s.path for s, _ in usable] == ["a.png"]
    assert np.array_equal(load_crop(usable[0][1]), crop_face(pixels, Face(0, 0, 40, 60, 0.0), rule))
    row = cache.read_index()["a.png"]
    assert (row["image_width"], row["image_height"]) == ("40", "60")
    # a second rule reuses the boxes (no detector needed) and crops at its own size
    other = CropCache.for_data(tmp_path, CropRule(size=32, scale=1.5), tmp_path / "cache")
    assert other.sibling_indexes() == [cache.index_path]
    assert build_crops(samples, tmp_path, other, detector_path=tmp_path / "no-detector.task", progress=False) == counts
    assert load_crop(other.usable(samples, fallback=True)[0][1]).shape == (32, 32, 3)
