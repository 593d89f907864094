"""Labelled samples and subject-disjoint splits.

Three layouts are read (``load_samples`` picks one):

* the manifest CSV of the shared data (``path,label,attack,subject,source,kind,note``);
* CelebA-Spoof's own layout: ``Data/{train,test}/<id>/{live,spoof}/*.jpg|png`` with
  ``*_BB.txt`` face boxes and ``metas/intra_test/{train,test}_label.json`` (path -> 44 labels:
  40 face attributes, spoof type, illumination, environment, live/spoof);
* a plain ``live/`` + ``spoof/`` folder tree.

Everything a loader knows beyond label/attack/subject goes into ``Sample.meta`` (NUAA's
glasses/position/session, CelebA-Spoof's attributes, illumination and environment, the
frame number of a video frame): the evaluation slices and clusters come from there.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ekyc.imagefiles import IMAGE_SUFFIXES

LIVE, SPOOF = 0, 1
LABELS = {"live": LIVE, "spoof": SPOOF}
MANIFEST_COLUMNS = ("path", "label", "attack", "subject", "source", "kind")


# CelebA-Spoof (Zhang et al., ECCV 2020), metas/intra_test/*_label.json: 44 integers per image.
CELEBA_ATTRIBUTES = (
    "5_o_clock_shadow", "arched_eyebrows", "attractive", "bags_under_eyes", "bald", "bangs", "big_lips",
    "big_nose", "black_hair", "blond_hair", "blurry", "brown_hair", "bushy_eyebrows", "chubby",
    "double_chin", "eyeglasses", "goatee", "gray_hair", "heavy_makeup", "high_cheekbones", "male",
    "mouth_slightly_open", "mustache", "narrow_eyes", "no_beard", "oval_face", "pale_skin", "pointy_nose",
    "receding_hairline", "rosy_cheeks", "sideburns", "smiling", "straight_hair", "wavy_hair",
    "wearing_earrings", "wearing_hat", "wearing_lipstick", "wearing_necklace", "wearing_necktie", "young",
)
# index 40: spoof type (PAI species) -> (attack name, attack family)
CELEBA_SPOOF_TYPES = {
    0: ("", ""),
    1: ("photo", "print"),
    2: ("poster", "print"),
    3: ("a4", "print"),
    4: ("face_mask", "paper_mask"),
    5: ("upper_body_mask", "paper_mask"),
    6: ("region_mask", "paper_mask"),
    7: ("pc", "replay"),
    8: ("pad", "replay"),
    9: ("phone", "replay"),
    10: ("3d_mask", "3d_mask"),
}
CELEBA_ILLUMINATION = {0: "live", 1: "normal", 2: "strong", 3: "back", 4: "dark"}
CELEBA_ENVIRONMENT = {0: "live", 1: "indoor", 2: "outdoor"}
CELEBA_BOX_SCALE = 224  # *_BB.txt boxes are given for the image resized to 224 x 224


class DataError(Exception):
    """The data directory, manifest or split cannot be used; the message says why."""


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``path`` is relative to the data directory (POSIX separators)."""

    path: str
    label: int  # 0 live, 1 spoof
    attack: str  # "" for live; "print", "replay", ... for spoofs (the PAI species)
    subject: str  # the unit of splitting: never split one subject across splits
    source: str  # which collection the image comes from
    kind: str  # "frame" (full camera frame) or "face_crop" (already a tight face crop)
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # slices, clusters, boxes

    @property
    def key(self) -> str:
        """A stable identifier, usable as a file name stem."""
        return self.path

    @property
    def attack_family(self) -> str:
        """A coarser attack type (print/replay/...): ``meta['attack_family']`` or the attack."""
        return self.meta.get("attack_family") or self.attack if self.label == SPOOF else ""

    def to_dict(self) -> dict:
        return asdict(self)


def _check_dir(data_dir: Path | str | None) -> Path:
    if data_dir is None or str(data_dir) == "":
        raise DataError("no data directory: pass --data-dir or set EKYC_DATA_DIR")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory not found: {data_dir}")
    return data_dir


_FRAME = re.compile(r"(\d+)$")


def frame_number(path: str) -> int | None:
    """The trailing number of a file stem (``0001_00_00_01_112.jpg`` -> 112, ``37.jpg`` -> 37)."""
    match = _FRAME.search(Path(path).stem)
    return int(match.group(1)) if match else None


def _note_meta(note: str) -> dict:
    """``glasses=00 pos=01 session=02`` -> {"glasses": "00", "pos": "01", "session": "02"}."""
    meta = {}
    for token in (note or "").split():
        if "=" in token:
            key, value = token.split("=", 1)
            meta[key.strip()] = value.strip()
    return meta


def load_manifest(data_dir: Path | str, manifest: str = "manifest.csv") -> list[Sample]:
    """Samples listed in ``<data_dir>/manifest.csv`` (``path,label,attack,subject,source,kind,note``).

    ``note`` may hold ``key=value`` pairs (NUAA: glasses, pos, session); they go into ``meta``
    with the frame number of the file name.
    """
    data_dir = _check_dir(data_dir)
    manifest_path = data_dir / manifest
    if not manifest_path.is_file():
        raise DataError(f"manifest not found: {manifest_path}")
    samples: list[Sample] = []
    with open(manifest_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{manifest_path} lacks columns: {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip().lower()
            if label not in LABELS:
                raise DataError(f"{manifest_path}:{line}: label must be live or spoof, got {label!r}")
            if not row["path"] or not row["subject"]:
                raise DataError(f"{manifest_path}:{line}: path and subject must be set")
            attack = (row["attack"] or "").strip()
            if LABELS[label] == SPOOF and not attack:
                attack = "unknown"
            meta = _note_meta(row.get("note") or "")
            frame = frame_number(row["path"].strip())
            if frame is not None:
                meta["frame"] = frame
            samples.append(
                Sample(
                    path=row["path"].strip(),
                    label=LABELS[label],
                    attack=attack if LABELS[label] == SPOOF else "",
                    subject=row["subject"].strip(),
                    source=(row["source"] or "").strip() or "unknown",
                    kind=(row["kind"] or "").strip() or "frame",
                    meta=meta,
                )
            )
    if not samples:
        raise DataError(f"{manifest_path} lists no samples")
    return samples



def nuaa_live_frames(data_dir: Path | str) -> list[Sample]:
    """The shared data's NUAA live webcam frames (640x480 JPEGs as captured; ``meta`` holds
    glasses/pos/session), in manifest order: the real selfies the benchmarks measure."""
    return [s for s in load_manifest(data_dir) if s.source == "nuaa" and s.label == LIVE]


def load_folder(
    folder: Path | str, attack: str = "unknown", source: str | None = None, kind: str = "frame"
) -> list[Sample]:
    """Samples from the ``live/`` and ``spoof/`` images under ``folder``.

    Two layouts are understood, and may be mixed:

    * ``live/...`` and ``spoof/...`` at the top: the subject is the first path component
      below ``live/`` or ``spoof/`` when images are nested (``live/<subject>/x.jpg``),
      otherwise the file stem (one subject per image);
    * ``.../<subject>/live/x.jpg`` and ``.../<subject>/spoof/x.jpg`` deeper down (the
      CelebA-Spoof ``Data/<part>/<id>/`` layout): the subject is the folder above.

    A spoof image's attack type is the folder below ``spoof/`` when it is one of ``print``,
    ``replay``, ``mask`` (``spoof/print/<subject>/x.jpg``), else ``attack``.
    Keep a person's live and spoof images under the same subject name so that splits stay
    subject-disjoint.
    """
    folder = _check_dir(folder)
    source = source or folder.name
    samples: list[Sample] = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        parts = path.relative_to(folder).parts
        at = next((i for i, part in enumerate(parts[:-1]) if part in LABELS), None)
        if at is None:
            continue
        label = LABELS[parts[at]]
        below = list(parts[at + 1 : -1])
        sample_attack = attack if label == SPOOF else ""
        if label == SPOOF and below and below[0] in FOLDER_ATTACKS:
            sample_attack = below.pop(0)
        if at > 0:
            subject = parts[at - 1]
        elif below:
            subject = below[0]
        else:
            subject = path.stem
        meta = {}
        frame = frame_number(path.name)
        if frame is not None:
            meta["frame"] = frame
        samples.append(
            Sample(
                path="/".join(parts),
                label=label,
                attack=sample_attack,
                subject=subject,
                source=source,
                kind=kind,
                meta=meta,
            )
        )
    if not samples:
        raise DataError(f"{folder} has no images under live/ or spoof/ folders")
    return samples


FOLDER_ATTACKS = frozenset({"print", "replay", "mask", "paper_mask", "3d_mask"})


def is_celeba_spoof(data_dir: Path | str) -> bool:
    data_dir = Path(data_dir)
    return (data_dir / "metas" / "intra_test").is_dir() and (data_dir / "Data").is_dir()


def read_celeba_box(image_path: Path) -> tuple[float, float, float, float, float] | None:
    """``<stem>_BB.txt`` next to an image: ``x y w h score`` in 224 x 224 coordinates, or None."""
    box_path = image_path.with_name(image_path.stem + "_BB.txt")
    try:
        values = [float(v) for v in box_path.read_text().split()[:5]]
    except (OSError, ValueError):
        return None
    if len(values) < 4:
        return None
    return tuple(values + [1.0] * (5 - len(values)))  # type: ignore[return-value]


def load_celeba_spoof(data_dir: Path | str, parts: tuple[str, ...] = ("train", "test")) -> list[Sample]:
    """CelebA-Spoof in its own layout, labels from ``metas/intra_test/<part>_label.json``.

    Each label list has 44 entries: ``[0:40]`` the CelebA face attributes, ``[40]`` the spoof
    type (1-3 print, 4-6 paper masks, 7-9 replay on PC/pad/phone, 10 3D mask), ``[41]``
    illumination, ``[42]`` environment, ``[43]`` 0 live / 1 spoof. The subject is the ``<id>``
    folder; ``meta['official_split']`` keeps the part (``make_split`` pins ``test`` subjects to
    the test split); ``meta['bbox_224']`` is the dataset's face box, used when our detector
    finds no face.
    """
    data_dir = _check_dir(data_dir)
    samples: list[Sample] = []
    for part in parts:
        label_file = data_dir / "metas" / "intra_test" / f"{part}_label.json"
        if not label_file.is_file():
            continue
        try:
            labels = json.loads(label_file.read_text())
        except ValueError as exc:
            raise DataError(f"{label_file} is not valid JSON: {exc}") from None
        if not isinstance(labels, dict):
            raise DataError(f"{label_file} must map image paths to label lists")
        for rel, values in sorted(labels.items()):
            if not isinstance(values, list) or len(values) != 44:
                raise DataError(f"{label_file}: {rel}: expected 44 labels, got {values!r}")
            rel = rel.replace("\\", "/").lstrip("./")
            pieces = rel.split("/")
            if "live" in pieces:
                at = pieces.index("live")
            elif "spoof" in pieces:
                at = pieces.index("spoof")
            else:
                raise DataError(f"{label_file}: {rel}: no live/ or spoof/ folder in the path")
            if at == 0:
                raise DataError(f"{label_file}: {rel}: no subject folder above {pieces[at]}/")
            label = int(values[43])
            if label not in (LIVE, SPOOF) or LABELS[pieces[at]] != label:
                raise DataError(f"{label_file}: {rel}: label {values[43]} contradicts its {pieces[at]}/ folder")
            spoof_type = int(values[40])
            if spoof_type not in CELEBA_SPOOF_TYPES or (spoof_type == 0) != (label == LIVE):
                raise DataError(f"{label_file}: {rel}: spoof type {spoof_type} does not fit label {label}")
            attack, family = CELEBA_SPOOF_TYPES[spoof_type]
            meta = {
                "official_split": part,
                "spoof_type": spoof_type,
                "attack_family": family,
                "illumination": CELEBA_ILLUMINATION.get(int(values[41]), str(values[41])),
                "environment": CELEBA_ENVIRONMENT.get(int(values[42]), str(values[42])),
                "attributes": {name: int(v) > 0 for name, v in zip(CELEBA_ATTRIBUTES, values[:40])},
            }
            box = read_celeba_box(data_dir / rel)
            if box is not None:
                meta["bbox_224"] = list(box)
            samples.append(Sample(path=rel, label=label, attack=attack, subject=pieces[at - 1],
                                  source="celeba-spoof", kind="frame", meta=meta))
    if not samples:
        raise DataError(f"{data_dir}: no labels in metas/intra_test/{{{','.join(parts)}}}_label.json")
    return samples


def detect_layout(data_dir: Path | str) -> str:
    """``manifest``, ``celeba-spoof`` or ``folder``: what ``load_samples`` will read."""
    data_dir = _check_dir(data_dir)
    if (data_dir / "manifest.csv").is_file():
        return "manifest"
    if is_celeba_spoof(data_dir):
        return "celeba-spoof"
    return "folder"


def load_samples(data_dir: Path | str) -> list[Sample]:
    """The manifest when the directory has one, CelebA-Spoof's layout, else ``live/``/``spoof/``."""
    layout = detect_layout(data_dir)
    if layout == "manifest":
        return load_manifest(data_dir)
    if layout == "celeba-spoof":
        return load_celeba_spoof(data_dir)
    return load_folder(data_dir)


# --- slices and clusters -------------------------------------------------------------------

FRAME_BLOCK = 20  # consecutive frame numbers that count as one cluster when no clip is known


def cluster_key(sample: Sample) -> str:
    """The unit of resampling for confidence intervals: images that are nearly copies of each other.

    NUAA: one recording (subject, label, glasses, position, session); numbered video frames
    without a known clip: blocks of ``FRAME_BLOCK`` consecutive numbers; otherwise the
    subject's images of one label.
    """
    base = f"{sample.subject}/{sample.label}"
    meta = sample.meta
    if "session" in meta:
        return f"{base}/g{meta.get('glasses', '')}/p{meta.get('pos', '')}/s{meta['session']}"
    if sample.kind == "face_crop" and meta.get("frame") is not None:
        return f"{base}/b{int(meta['frame']) // FRAME_BLOCK}"
    return base


def slice_values(sample: Sample) -> dict[str, str]:
    """Named slices of a sample for per-slice BPCER: subject, glasses, CelebA-Spoof attributes..."""
    meta = sample.meta
    out = {"subject": sample.subject, "source": sample.source}
    if "glasses" in meta:
        out["glasses"] = "yes" if meta["glasses"] not in ("00", "0", "no") else "no"
    elif "attributes" in meta:
        out["glasses"] = "yes" if meta["attributes"].get("eyeglasses") else "no"
    if "session" in meta:
        out["session"] = str(meta["session"])
    for key in ("illumination", "environment"):
        if key in meta and sample.label == SPOOF:
            out[key] = str(meta[key])
    for name, value in (meta.get("attributes") or {}).items():
        out[f"attr:{name}"] = "yes" if value else "no"
    return out


# --- subject-disjoint splits -------------------------------------------------------------

SPLITS = ("train", "val", "test")
SPLIT_FORMAT = 2

# The shared data's replay sets name one "subject" per set, but each holds two people whose
# frames are numbered in recording order: the person changes exactly once per (set, label),
# at a jump in frame-to-frame difference confirmed by eye (contact sheets, see
# models/liveness.md). Regrouping by person keeps every near-identical neighbouring frame in
# one group, so the split stays person-disjoint while replays reach all three splits.
# replay-a's second person (frames 193..402) has live frames only.
SHARED_DATA_REGROUP = [
    {"subject": "replay-a", "label": "live", "first": 0, "last": 192, "new_subject": "replay-a-p1"},
    {"subject": "replay-a", "label": "live", "first": 193, "last": 402, "new_subject": "replay-a-p2"},
    {"subject": "replay-a", "label": "spoof", "first": 0, "last": 357, "new_subject": "replay-a-p1"},
    {"subject": "replay-b", "label": "live", "first": 0, "last": 67, "new_subject": "replay-b-p1"},
    {"subject": "replay-b", "label": "live", "first": 68, "last": 189, "new_subject": "replay-b-p2"},
    {"subject": "replay-b", "label": "spoof", "first": 0, "last": 60, "new_subject": "replay-b-p1"},
    {"subject": "replay-b", "label": "spoof", "first": 61, "last": 184, "new_subject": "replay-b-p2"},
]
# replay-a (both people) trains; replay-b's first person validates (so that thresholds and
# early stopping see replays), its second person is held out for the test.
SHARED_DATA_PINNED = {"replay-a-p1": "train", "replay-a-p2": "train", "replay-b-p1": "val", "replay-b-p2": "test"}
# NUAA subjects: the assignment of the first split (seed 0), kept so that results stay comparable.
SHARED_DATA_NUAA = {
    "train": ["nuaa-0001", "nuaa-0003", "nuaa-0004", "nuaa-0005", "nuaa-0007", "nuaa-0008", "nuaa-0012"],
    "val": ["nuaa-0006", "nuaa-0011"],
    "test": ["nuaa-0002", "nuaa-0009", "nuaa-0010"],
}


def regroup(samples: list[Sample], rules: list[dict] | None) -> list[Sample]:
    """Give samples a finer subject by frame-number ranges (``SHARED_DATA_REGROUP``-style rules).

    A rule matches ``subject`` and ``label`` (``live``/``spoof``) with ``first <= frame <= last``.
    Every sample of a regrouped subject must match exactly one rule: a frame that falls in no
    range is an error, never a silent leak.
    """
    if not rules:
        return list(samples)
    regrouped = {r["subject"] for r in rules}
    out = []
    for s in samples:
        if s.subject not in regrouped:
            out.append(s)
            continue
        frame = s.meta.get("frame", frame_number(s.path))
        label = "live" if s.label == LIVE else "spoof"
        hits = [r for r in rules if r["subject"] == s.subject and r["label"] == label
                and frame is not None and int(r["first"]) <= frame <= int(r["last"])]
        if len(hits) != 1:
            raise DataError(f"{s.path}: subject {s.subject!r} is regrouped, but frame {frame} matches "
                            f"{len(hits)} ranges of the split file")
        out.append(replace(s, subject=hits[0]["new_subject"], meta={**s.meta, "original_subject": s.subject}))
    return out


def _class_counts(samples: list[Sample]) -> dict:
    live = sum(1 for s in samples if s.label == LIVE)
    attacks: dict[str, int] = {}
    for s in samples:
        if s.label == SPOOF:
            attacks[s.attack] = attacks.get(s.attack, 0) + 1
    return {"live": live, "spoof": len(samples) - live, "spoof_by_attack": dict(sorted(attacks.items()))}


def is_shared_data(samples: list[Sample]) -> bool:
    subjects = {s.subject for s in samples}
    return {"replay-a", "replay-b"} <= subjects and any(s.startswith("nuaa-") for s in subjects)


def make_split(
    samples: list[Sample],
    seed: int = 0,
    test_fraction: float = 0.25,
    val_fraction: float = 1 / 6,
    pinned: dict[str, str] | None = None,
    regroup_rules: list[dict] | None = None,
    max_tries: int = 1000,
) -> dict:
    """Assign whole subjects to train/val/test; never split one subject's images.

    ``regroup_rules`` first refine subjects (see ``regroup``); they are written into the split
    file and re-applied by ``apply_split``. ``pinned`` subjects go where they are told (default:
    the shared data's replay people and NUAA assignment when the samples are the shared data,
    CelebA-Spoof's official ``test`` part to test); the rest are shuffled
    (``random.Random(seed)``) and cut by ``test_fraction`` / ``val_fraction`` of their number.
    Shuffles are retried with seed+1, seed+2, ... until every split holds live and spoof images.
    """
    import random

    shared = is_shared_data(samples)
    if regroup_rules is None and shared:
        regroup_rules = SHARED_DATA_REGROUP
    samples = regroup(samples, regroup_rules)
    if pinned is None:
        pinned = {}
        if shared:
            pinned.update(SHARED_DATA_PINNED)
            if seed == 0:
                pinned.update({s: name for name, subjects in SHARED_DATA_NUAA.items() for s in subjects})
        official_test = {s.subject for s in samples if s.meta.get("official_split") == "test"}
        if official_test:
            pinned.update({subject: "test" for subject in official_test})
            test_fraction = 0.0
    pinned = dict(pinned)
    by_subject: dict[str, list[Sample]] = {}
    for s in samples:
        by_subject.setdefault(s.subject, []).append(s)
    for subject, split in pinned.items():
        if split not in SPLITS:
            raise DataError(f"pinned subject {subject!r} names unknown split {split!r}")
    free = sorted(subject for subject in by_subject if subject not in pinned)
    n_test = int(round(len(free) * test_fraction))
    n_val = int(round(len(free) * val_fraction))
    if len(free) - n_test - n_val < 1 and not any(v == "train" for v in pinned.values()):
        raise DataError(f"{len(by_subject)} subjects are too few for a train/val/test split")
    for attempt in range(max_tries):
        order = list(free)
        random.Random(seed + attempt).shuffle(order)
        subjects = {name: [] for name in SPLITS}
        for subject, split in pinned.items():
            if subject in by_subject:
                subjects[split].append(subject)
        subjects["test"] += order[:n_test]
        subjects["val"] += order[n_test : n_test + n_val]
        subjects["train"] += order[n_test + n_val :]
        parts = {name: [s for subj in subjects[name] for s in by_subject[subj]] for name in SPLITS}
        counts = {name: _class_counts(parts[name]) for name in SPLITS}
        if all(c["live"] > 0 and c["spoof"] > 0 for c in counts.values()):
            return {
                "format": SPLIT_FORMAT,
                "unit": "subject",
                "seed": seed,
                "seed_used": seed + attempt,
                "test_fraction": test_fraction,
                "val_fraction": val_fraction,
                "regroup": list(regroup_rules or []),
                "pinned": {k: pinned[k] for k in sorted(pinned)},
                "subjects": {name: sorted(subjects[name]) for name in SPLITS},
                "counts": counts,
            }
    raise DataError(
        f"no subject split with live and spoof images in every split after {max_tries} tries"
    )


def write_split(split: dict, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split, indent=2) + "\n")
    return path


def load_split(path: Path | str) -> dict:
    """Read a split file and check that no subject is in two splits."""
    path = Path(path)
    try:
        split = json.loads(path.read_text())
        subjects = {name: list(split["subjects"][name]) for name in SPLITS}
    except FileNotFoundError:
        raise DataError(f"split file not found: {path} (make one with `ekyc-train split`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"split file {path} is invalid: {exc!r}") from None
    seen: dict[str, str] = {}
    for name, names in subjects.items():
        for subject in names:
            if subject in seen:
                raise DataError(f"split file {path}: subject {subject!r} is in {seen[subject]} and {name}")
            seen[subject] = name
    return split


def split_samples(samples: list[Sample], split: dict, strict: bool = True) -> dict[str, list[Sample]]:
    """The samples of each split (after the split file's regrouping).

    With ``strict``, a subject the split does not know is an error.
    """
    samples = regroup(samples, split.get("regroup"))
    where = {subject: name for name in SPLITS for subject in split["subjects"][name]}
    parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    unknown = sorted({s.subject for s in samples if s.subject not in where})
    if unknown and strict:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise DataError(
            f"{len(unknown)} subjects are not in the split file ({shown}); "
            "run `ekyc-train split --force` to make a new split for this data"
        )
    for s in samples:
        if s.subject in where:
            parts[where[s.subject]].append(s)
    return parts


def ensure_split(samples: list[Sample], path: Path | str, seed: int = 0, force: bool = False) -> tuple[dict, bool]:
    """Reuse the split file at ``path`` when it exists (and fits the samples); else make and write one.

    Returns ``(split, created)``.
    """
    path = Path(path)
    if path.is_file() and not force:
        split = load_split(path)
        split_samples(samples, split)  # raises if the data has subjects the split lacks
        return split, False
    split = make_split(samples, seed=seed)
    write_split(split, path)
    return split, True
