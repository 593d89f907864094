"""Labelled samples: the shared manifest CSV, or a plain ``live/`` + ``spoof/`` folder tree."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

LIVE, SPOOF = 0, 1
LABELS = {"live": LIVE, "spoof": SPOOF}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
MANIFEST_COLUMNS = ("path", "label", "attack", "subject", "source", "kind")


class DataError(Exception):
    """The data directory, manifest or split cannot be used; the message says why."""


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``path`` is relative to the data directory (POSIX separators)."""

    path: str
    label: int  # 0 live, 1 spoof
    attack: str  # "" for live; "print", "replay", ... for spoofs
    subject: str  # the unit of splitting: never split one subject across splits
    source: str  # which collection the image comes from
    kind: str  # "frame" (full camera frame) or "face_crop" (already a tight face crop)

    @property
    def key(self) -> str:
        """A stable identifier, usable as a file name stem."""
        return self.path

    def to_dict(self) -> dict:
        return asdict(self)


def _check_dir(data_dir: Path | str | None) -> Path:
    if data_dir is None or str(data_dir) == "":
        raise DataError("no data directory: pass --data-dir or set EKYC_DATA_DIR")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory not found: {data_dir}")
    return data_dir


def load_manifest(data_dir: Path | str, manifest: str = "manifest.csv") -> list[Sample]:
    """Samples listed in ``<data_dir>/manifest.csv`` (``path,label,attack,subject,source,kind,note``)."""
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
            samples.append(
                Sample(
                    path=row["path"].strip(),
                    label=LABELS[label],
                    attack=attack if LABELS[label] == SPOOF else "",
                    subject=row["subject"].strip(),
                    source=(row["source"] or "").strip() or "unknown",
                    kind=(row["kind"] or "").strip() or "frame",
                )
            )
    if not samples:
        raise DataError(f"{manifest_path} lists no samples")
    return samples


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
        if at > 0:
            subject = parts[at - 1]
        elif len(parts) > 2:
            subject = parts[1]
        else:
            subject = path.stem
        samples.append(
            Sample(
                path="/".join(parts),
                label=label,
                attack=attack if label == SPOOF else "",
                subject=subject,
                source=source,
                kind=kind,
            )
        )
    if not samples:
        raise DataError(f"{folder} has no images under live/ or spoof/ folders")
    return samples


def load_samples(data_dir: Path | str) -> list[Sample]:
    """The manifest when the directory has one, else the ``live/``/``spoof/`` layout."""
    data_dir = _check_dir(data_dir)
    if (data_dir / "manifest.csv").is_file():
        return load_manifest(data_dir)
    return load_folder(data_dir)


# --- subject-disjoint splits -------------------------------------------------------------

SPLITS = ("train", "val", "test")
SPLIT_FORMAT = 1
# The shared data's two replay sets each come from one or two people who are not told apart,
# so each set is one subject, pinned: replay-a trains, replay-b is held out for the test.
SHARED_DATA_PINNED = {"replay-a": "train", "replay-b": "test"}


def _class_counts(samples: list[Sample]) -> dict:
    live = sum(1 for s in samples if s.label == LIVE)
    attacks: dict[str, int] = {}
    for s in samples:
        if s.label == SPOOF:
            attacks[s.attack] = attacks.get(s.attack, 0) + 1
    return {"live": live, "spoof": len(samples) - live, "spoof_by_attack": dict(sorted(attacks.items()))}


def make_split(
    samples: list[Sample],
    seed: int = 0,
    test_fraction: float = 0.25,
    val_fraction: float = 1 / 6,
    pinned: dict[str, str] | None = None,
    max_tries: int = 1000,
) -> dict:
    """Assign whole subjects to train/val/test; never split one subject's images.

    ``pinned`` subjects go where they are told; the rest are shuffled (``random.Random(seed)``)
    and cut by ``test_fraction`` / ``val_fraction`` of their number. Shuffles are retried with
    seed+1, seed+2, ... until every split holds both live and spoof images.
    Returns the split description written to the split file.
    """
    import random

    pinned = dict(SHARED_DATA_PINNED if pinned is None else pinned)
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
                "pinned": pinned,
                "subjects": {name: sorted(subjects[name]) for name in SPLITS},
                "counts": counts,
            }
    raise DataError(
        f"no subject split with live and spoof images in every split after {max_tries} tries"
    )


def write_split(split: dict, path: Path | str) -> Path:
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split, indent=2) + "\n")
    return path


def load_split(path: Path | str) -> dict:
    """Read a split file and check that no subject is in two splits."""
    import json

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
    """The samples of each split. With ``strict``, a subject the split does not know is an error."""
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
