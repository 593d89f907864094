"""The liveness model's pipeline, one function per step, each with typed options.

``ekyc-train`` (training/cli.py) parses the command line into these options and calls the
step; code (a notebook, a benchmark, another tool) calls the steps the same way::

    ws = Workspace(data_dir=Path("../shared/data"))
    checkpoint = train(ws, CropOptions(size=128), TrainOptions(epochs=5))
    model = export(ws, ExportOptions(output=Path("candidate.onnx")), checkpoint)
    evaluate(ws, EvaluateOptions(model=model, split="test"))

Every step prints one summary line per result (as the CLI shows it) and raises StepError
with a one-line message when it cannot run. Heavy imports (torch, ONNX Runtime) happen
inside the steps that need them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from ekyc.paths import DEFAULT_CACHE, DEFAULT_DETECTOR, DEFAULT_MODEL, PROJECT_ROOT

DEFAULT_SPLIT = PROJECT_ROOT / "training" / "splits" / "shared-data.json"


class StepError(Exception):
    """A step cannot run; the message says why in one line (ekyc-train: exit status 1)."""


@dataclass(frozen=True)
class Workspace:
    """Where the steps read and write (every subcommand's common flags)."""

    data_dir: Path | None = None  # labelled images
    cache_dir: Path = DEFAULT_CACHE  # crops, runs, reports, torch weights
    split_file: Path = DEFAULT_SPLIT  # the subject split, made by `split` and reused
    detector: Path = DEFAULT_DETECTOR  # face detector model (BlazeFace .onnx)
    quiet: bool = False  # no progress bars


@dataclass(frozen=True)
class SplitOptions:
    seed: int = 0  # seed of the subject shuffle
    force: bool = False  # make a new split even if the file exists


@dataclass(frozen=True)
class CropOptions:
    size: int = 128  # model input side in pixels
    scale: float = 1.2  # crop side / face box side

    def rule(self):
        """The CropRule (ekyc.quality.faces); StepError when out of range."""
        return _rule(self.size, self.scale)


@dataclass(frozen=True)
class TrainOptions:
    """Overrides of ekyc.training.train.TrainConfig; None keeps its default."""

    architecture: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    max_per_group: int | None = None  # crops per (subject, label) and epoch, 0 = all
    patience: int | None = None
    seed: int | None = None
    loss: str | None = None
    spoof_weight: float | None = None
    synth_ratio: float | None = None
    select: str | None = None
    ema_decay: float | None = None
    hard_mining: bool = False
    pretrained: bool = True
    name: str | None = None  # suffix of the run directory name
    fallback_crops: bool = False  # also train on images without a detected face

    def config(self):
        """The TrainConfig these options give (imports torch); StepError when out of range."""
        from ekyc.training.train import TrainConfig

        config = TrainConfig()
        for key in ("architecture", "epochs", "batch_size", "lr", "max_per_group", "patience", "seed", "loss",
                    "spoof_weight", "synth_ratio", "select", "ema_decay"):
            value = getattr(self, key)
            if value is not None:
                setattr(config, key, value)
        if self.hard_mining:
            config.hard_mining = True
        if not self.pretrained:
            config.pretrained = False
        if config.epochs < 1 or config.batch_size < 1 or config.lr <= 0 or config.synth_ratio < 0:
            raise StepError("--epochs and --batch-size must be >= 1, --lr > 0 and --synth-ratio >= 0")
        return config


@dataclass(frozen=True)
class ExportOptions:
    output: Path = DEFAULT_MODEL  # ONNX file (metadata goes next to it)
    threshold: float | None = None  # a fixed threshold instead of calibrated profiles (only without data)
    version: str | None = None  # default liveness-<arch>-<size>-x<scale>-v2
    default_profile: str = "balanced"
    max_review_rate: float = 0.05  # largest share of validation images a review band may send to a person
    checkpoint: Path | None = None  # best.pt of a run (default: the latest run)


@dataclass(frozen=True)
class CalibrateOptions:
    model: Path = DEFAULT_MODEL
    default_profile: str | None = None  # default: the metadata's
    max_review_rate: float = 0.05
    sample: Path | None = None  # a deployment's own labelled sample (all of it), instead of the validation split


@dataclass(frozen=True)
class LosoOptions:
    """Leave-one-setup-out of the shipped recipe (from the model's metadata) and of the peer."""

    model: Path = DEFAULT_MODEL
    out_dir: Path | None = None  # LOSO reports (JSON + Markdown); default .cache/reports
    n_boot: int = 1000
    shifts: bool = True  # the capture-shift suite on every held-out setup


@dataclass(frozen=True)
class EvaluateOptions:
    model: Path = DEFAULT_MODEL
    data: Path | None = None  # data directory (default: the workspace's)
    split: str | None = None  # train, val, test or all (default: test when the split file fits, else all)
    report: Path | None = None  # JSON report (default .cache/reports/<model>-<split>.json)
    out_dir: Path | None = None  # also <model>-<split>.md and PNG plots there
    n_boot: int = 1000  # bootstrap resamples for intervals (0 = none)
    stress: bool = True  # the degraded-crop stress conditions
    eval_threshold: float | None = None  # also evaluate at this threshold
    update_metadata: bool = False  # store the summary in the model's .json as <split>_metrics
    fallback_crops: bool = False  # also score images without a detected face


@dataclass(frozen=True)
class BaselineOptions:
    crop: CropOptions = CropOptions()
    split: str = "val"


@dataclass(frozen=True)
class CompareOptions:
    runs: tuple[Path, ...] = ()  # run directories (or best.pt files)
    out: Path | None = None  # Markdown table (default .cache/reports/compare.md; JSON next to it)
    n_boot: int = 200


@dataclass(frozen=True)
class BenchOptions:
    model: Path = DEFAULT_MODEL
    threads: int = 1
    n: int = 300


@dataclass(frozen=True)
class PublishOptions:
    model: Path
    destination: str  # s3://bucket/prefix
    reports: tuple[Path, ...] = ()


def _rel(path: Path) -> str:
    try:
        return Path(path).resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


# --- helpers -------------------------------------------------------------------------------

def _samples(ws: Workspace, data_dir=None):
    from ekyc.training.data import load_samples

    return load_samples(data_dir or ws.data_dir)


def _rule(size: int, scale: float):
    from ekyc.quality.faces import CropRule

    if size < 16 or scale <= 0:
        raise StepError("--crop-size must be >= 16 and --crop-scale > 0")
    return CropRule(size=int(size), scale=float(scale))


def _split(ws: Workspace, samples, making: SplitOptions | None = None):
    """(split, parts): the split file's, or with ``making`` made (or reused) first."""
    from ekyc.training.data import ensure_split, load_split, split_samples

    if making is not None:
        split, created = ensure_split(samples, ws.split_file, seed=making.seed, force=making.force)
        print(f"split: {'wrote' if created else 'reusing'} {_rel(ws.split_file)}")
    else:
        split = load_split(ws.split_file)
    return split, split_samples(samples, split)


def _cache(ws: Workspace, rule, data_dir=None):
    from ekyc.training.crops import CropCache

    return CropCache.for_data(data_dir or ws.data_dir, rule, ws.cache_dir)


def _crops(ws: Workspace, samples, rule, data_dir=None):
    from ekyc.training.crops import build_crops, describe_counts

    if not Path(ws.detector).is_file():
        raise StepError(f"face detector model not found: {ws.detector}")
    cache = _cache(ws, rule, data_dir)
    counts = build_crops(samples, data_dir or ws.data_dir, cache, ws.detector, progress=not ws.quiet)
    print(f"crops: {_rel(cache.root)}: {describe_counts(counts, samples, cache)}")
    return cache


def _latest_file(ws: Workspace) -> Path:
    return Path(ws.cache_dir) / "runs" / "latest.txt"


def _checkpoint_path(path: Path) -> Path:
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


# --- steps ---------------------------------------------------------------------------------

def split(ws: Workspace, options: SplitOptions = SplitOptions()) -> dict:
    """Make (or check) the subject-disjoint train/val/test split."""
    samples = _samples(ws)
    split, _ = _split(ws, samples, options)
    for name, counts in split["counts"].items():
        print(f"  {name}: {', '.join(split['subjects'][name])} -> {counts['live']} live, "
              f"{counts['spoof']} spoof {counts['spoof_by_attack']}")
    return split


def crops(ws: Workspace, crop: CropOptions = CropOptions(), samples=None):
    """Detect and crop every face into the crop cache; returns the CropCache."""
    samples = samples if samples is not None else _samples(ws)
    return _crops(ws, samples, crop.rule())


def train(ws: Workspace, crop: CropOptions = CropOptions(), options: TrainOptions = TrainOptions(),
          samples=None, parts=None, cache=None) -> Path:
    """Train on the train split, select on the validation split; returns the best checkpoint."""
    from ekyc.training.train import new_run_dir
    from ekyc.training.train import train as run_training

    samples = samples if samples is not None else _samples(ws)
    if parts is None:
        _, parts = _split(ws, samples)
    cache = cache or _crops(ws, parts["train"] + parts["val"], crop.rule())
    fallback = options.fallback_crops
    train_items, val_items = cache.usable(parts["train"], fallback), cache.usable(parts["val"])
    if not train_items or not val_items:
        raise StepError("no cached crops for the train/val split: run `ekyc-train crops` first")
    config = options.config()
    run_dir = new_run_dir(Path(ws.cache_dir) / "runs", options.name)
    extra = {"data_dir": Path(ws.data_dir).resolve().name, "split_file": _rel(ws.split_file),
             "crop": cache.rule.to_dict(), "fallback_crops": fallback}
    summary = run_training(train_items, val_items, config, run_dir, progress=not ws.quiet, extra_config=extra)
    _latest_file(ws).parent.mkdir(parents=True, exist_ok=True)
    _latest_file(ws).write_text(str(run_dir.resolve()) + "\n")
    best = summary["best"]
    print(f"train: {_rel(run_dir)}: best epoch {best['epoch']} val EER {best['val_eer']:.4f} "
          f"(worst attack {best['val_eer_max']:.4f}) AUC {best['val_auc']:.4f}; "
          f"{summary['epochs_run']} epochs in {summary['seconds']:.0f}s")
    return summary["checkpoint"]


def _training_description(samples, split, ws: Workspace) -> dict:
    sources = sorted({s.source for s in samples})
    shared = {"nuaa", "replay-a"} <= set(sources)
    return {
        "data": {
            "data_dir_name": Path(ws.data_dir).resolve().name if ws.data_dir else None,
            "sources": sources,
            "description": "NUAA Photograph Imposter Database frames (print attacks, 12 subjects) and two "
            "public demo replay sets (replay-a, replay-b; face crops, video replay attacks, two people each)"
            if shared else "see split file",
        },
        "split_file": _rel(ws.split_file),
        "split": {"unit": split["unit"], "subjects": split["subjects"], "counts": split["counts"]},
    }


def _val_scores(onnx_path, items):
    from ekyc.training.crops import load_crops
    from ekyc.training.export import onnx_scores

    crops = load_crops([p for _, p in items])
    return crops, onnx_scores(onnx_path, crops)


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compact_history(history: list[dict]) -> list[dict]:
    keys = ("epoch", "train_loss", "val_loss", "val_eer", "val_eer_max", "val_auc", "val_bpcer_at_apcer_1pct_max", "seconds")
    return [{k: h[k] for k in keys if k in h} for h in history]


def export_checkpoint(ws: Workspace, checkpoint, output, samples=None, split=None, parts=None, version=None,
                      default_profile="balanced", max_review_rate=0.05,
                      threshold: float | None = None) -> tuple[Path, dict]:
    """Checkpoint -> ONNX + metadata with profiles calibrated on the validation split (without
    data: the fixed ``threshold``)."""
    import numpy as np

    from ekyc.training.calibrate import calibrate, metadata_profiles
    from ekyc.training.export import default_version, export_onnx, latency_ms, parity, sha256_file, write_metadata
    from ekyc.training.metrics import eer, roc_auc
    from ekyc.training.model import load_checkpoint

    checkpoint = _checkpoint_path(checkpoint)
    if not checkpoint.is_file():
        raise StepError(f"checkpoint not found: {checkpoint}")
    net, ckpt = load_checkpoint(checkpoint)
    config = ckpt.get("config", {})
    crop = config.get("crop") or {"size": 128, "scale": 1.2}
    rule = _rule(crop["size"], crop["scale"])
    out = export_onnx(net, output, rule.size)
    history_file = checkpoint.parent / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    extra = {"training": {"run": checkpoint.parent.name, "checkpoint_sha256": sha256_file(checkpoint),
                          "best_epoch": ckpt.get("epoch"), "best_val": ckpt.get("val"), "config": config,
                          "history": _compact_history(history)}}
    version = version or default_version(config.get("architecture", "mobilenet_v2"), rule.size, rule.scale)
    if not ws.data_dir:
        if threshold is None:
            raise StepError("no data directory to calibrate on: pass --data-dir or a fixed --threshold")
        if not 0.0 <= threshold <= 1.0:
            raise StepError(f"--threshold must be within 0..1, got {threshold}")
        meta = write_metadata(out, net, rule, threshold, version=version, extra=extra)
        return out, json.loads(meta.read_text())
    samples = samples if samples is not None else _samples(ws)
    if parts is None:
        split, parts = _split(ws, samples)
    cache = _crops(ws, parts["val"], rule)  # incremental: only missing crops are made
    val_items = cache.usable(parts["val"])
    if not val_items:
        raise StepError("no validation crops to calibrate on")
    crops, scores = _val_scores(out, val_items)
    labels = np.array([s.label for s, _ in val_items])
    attacks = [s.attack for s, _ in val_items]
    calibrated = calibrate(scores, labels, attacks, max_review_rate=max_review_rate)
    pick = np.unique(np.linspace(0, len(crops) - 1, min(len(crops), 96)).astype(int))
    diff = parity(net, out, crops[pick])
    val_eer, val_t = eer(scores, labels)
    extra["validation"] = {"subjects": split["subjects"]["val"], "n_live": int((labels == 0).sum()),
                           "n_spoof": int((labels == 1).sum()), "eer": val_eer, "eer_threshold": val_t,
                           "auc": roc_auc(scores, labels), "scored_by": "onnxruntime",
                           "band_tradeoff": {k: v["val_band_tradeoff"] for k, v in calibrated.items()},
                           "max_review_rate": max_review_rate}
    extra["parity"] = {"max_abs_diff": diff, "n_crops": int(len(pick)), "crops": "real validation face crops",
                       "compared": "PyTorch float32 vs ONNX Runtime CPU, spoof probability"}
    extra.update(_training_description(samples, split, ws))
    extra["latency"] = {**latency_ms(out, rule.size, threads=1, n=200), "cpu": _cpu_name(),
                        "note": "one-crop calls, ONNX Runtime CPU, intra_op_num_threads=1 (the server's default)"}
    meta = write_metadata(out, net, rule, version=version, extra=extra, profiles=metadata_profiles(calibrated),
                          default_profile=default_profile)
    return out, json.loads(meta.read_text())


def export(ws: Workspace, options: ExportOptions = ExportOptions(), checkpoint=None, samples=None, split=None,
           parts=None) -> Path:
    """Export a checkpoint (default: the latest run's best) to ONNX + metadata; returns the ONNX path."""
    checkpoint = checkpoint or options.checkpoint
    if checkpoint is None:
        latest = _latest_file(ws)
        if not latest.is_file():
            raise StepError("no checkpoint given and no training run found: pass --checkpoint or run `train`")
        checkpoint = Path(latest.read_text().strip()) / "best.pt"
    out, meta = export_checkpoint(ws, checkpoint, options.output, samples, split, parts, version=options.version,
                                  default_profile=options.default_profile, max_review_rate=options.max_review_rate,
                                  threshold=options.threshold)
    print(f"export: {_rel(out)} ({out.stat().st_size / 1e6:.2f} MB), version {meta['version']}, "
          f"threshold {meta['threshold']:.4f}")
    if "parity" in meta:
        print(f"export: PyTorch/ONNX Runtime max abs diff {meta['parity']['max_abs_diff']:.2e} "
              f"on {meta['parity']['n_crops']} real crops")
    for name, p in (meta.get("profiles") or {}).items():
        print(f"  {name}: threshold {p['threshold']:.4f} ({p['target']}) val APCER {p['val_apcer']:.4f} "
              f"BPCER {p['val_bpcer']:.4f} band {p['review_band']}")
    return out


def calibrate(ws: Workspace, options: CalibrateOptions = CalibrateOptions()) -> dict:
    """Re-choose the operating points of an exported model on the validation split, or on a
    deployment's own labelled sample (``options.sample``: every image in it)."""
    if options.sample is not None:
        from ekyc.training.transfer import recalibrate

        result = recalibrate(options.model, options.sample, ws.cache_dir, max_review_rate=options.max_review_rate,
                             default_profile=options.default_profile)
        sample = result["sample"]
        print(f"calibrate: {sample['n_live']} live, {sample['n_spoof']} spoof faces of {_rel(options.sample)} "
              f"({sample['n_without_face']} images without a face), sources {', '.join(sample['sources'])}")
        for name, p in result["profiles"].items():
            print(f"calibrate: {name}: threshold {p['threshold']:.4f} APCER {p['val_apcer']:.4f} "
                  f"BPCER {p['val_bpcer']:.4f} band {p['review_band']}")
        return result["profiles"]
    import numpy as np

    from ekyc.models.liveness import LivenessModel
    from ekyc.training.calibrate import calibrate as choose_points
    from ekyc.training.calibrate import metadata_profiles
    from ekyc.training.evaluate import score_items
    from ekyc.training.export import update_metadata

    model = LivenessModel(Path(options.model), intra_op_threads=2)
    samples = _samples(ws)
    _, parts = _split(ws, samples)
    cache = _crops(ws, parts["val"], model.crop_rule)
    for _, rule in model.inputs[1:]:
        _crops(ws, parts["val"], rule)
    items = cache.usable(parts["val"])
    scores = score_items(model, items, cache=cache)
    labels = np.array([s.label for s, _ in items])
    calibrated = choose_points(scores, labels, [s.attack for s, _ in items], max_review_rate=options.max_review_rate)
    default = options.default_profile or model.metadata.raw.get("default_profile", "balanced")
    profiles = metadata_profiles(calibrated)
    update_metadata(options.model, profiles=profiles, default_profile=default, threshold=profiles[default]["threshold"])
    for name, p in profiles.items():
        print(f"calibrate: {name}: threshold {p['threshold']:.4f} val APCER {p['val_apcer']:.4f} "
              f"BPCER {p['val_bpcer']:.4f} band {p['review_band']}")
    return profiles


def loso(ws: Workspace, options: LosoOptions = LosoOptions()) -> dict:
    """Leave-one-setup-out over the data's setups (its ``source`` column) for the model's recipe
    (``training.recipe`` in its metadata) and for the MiniFASNet V2+V1SE peer, both scored through
    LivenessModel: per-setup rows with intervals and trivial baselines, pooled row, travelling
    profiles, capture shifts and live-face slices (``ekyc.training.loso``, ``ekyc.training.transfer``)."""
    from ekyc.models.liveness import ModelMetadata, metadata_path
    from ekyc.training import loso as L

    if ws.data_dir is None:
        raise StepError("no data for leave-one-setup-out: pass --data-dir or set EKYC_DATA_DIR")
    recipe = (ModelMetadata.load(metadata_path(Path(options.model))).raw.get("training") or {}).get("recipe")
    if not recipe:
        raise StepError(f"{_rel(options.model)} records no training recipe (metadata training.recipe)")
    root = Path(ws.cache_dir) / "loso"
    runs = [L.run("peer", ws.data_dir, [], peer=True, out_root=root, cache_dir=ws.cache_dir, shifts=options.shifts)]
    if recipe.get("kind") == "heads":
        from ekyc.training.heads import HeadConfig

        runs.append(L.run_heads(recipe["name"], ws.data_dir, HeadConfig(**recipe.get("head", {})),
                                cache_dir=ws.cache_dir, out_root=root, shifts=options.shifts))
    elif recipe.get("kind") == "members":
        runs.append(L.run(recipe["name"], ws.data_dir, recipe["members"], out_root=root, cache_dir=ws.cache_dir,
                          config_overrides=recipe.get("overrides"), shifts=options.shifts))
    out_dir = Path(options.out_dir or Path(ws.cache_dir) / "reports")
    reports = L.report(list(dict.fromkeys(runs)), ws.data_dir, out_dir / "loso.md", options.n_boot)
    print(f"loso: reports in {_rel(out_dir)} (loso.md, loso-<candidate>.json)")
    return reports


def _eval_parts(ws: Workspace, wanted: str | None, samples, data_dir):
    """(split name, samples) to evaluate: the requested split, or all when the split file does not fit."""
    from ekyc.training.data import DataError, load_split, split_samples

    if wanted == "all":
        return "all", samples
    try:
        parts = split_samples(samples, load_split(ws.split_file))
    except DataError as exc:
        if wanted is not None:
            raise
        print(f"evaluate: {exc}; evaluating all of {data_dir}", file=sys.stderr)
        return "all", samples
    name = wanted or "test"
    return name, parts[name]


def evaluate(ws: Workspace, options: EvaluateOptions = EvaluateOptions(), samples=None) -> dict:
    """Score data through ONNX Runtime (LivenessModel): JSON report, Markdown, plots."""
    from ekyc.models.liveness import LivenessModel
    from ekyc.training.evaluate import evaluate as evaluate_model
    from ekyc.training.evaluate import summary_line
    from ekyc.training.export import update_metadata as update

    model_path = Path(options.model)
    data_dir = options.data or ws.data_dir
    if data_dir is None:
        raise StepError("no data to evaluate on: pass DATA or --data-dir (or set EKYC_DATA_DIR)")
    samples = samples if samples is not None else _samples(ws, data_dir)
    split_name, part = _eval_parts(ws, options.split, samples, data_dir)
    model = LivenessModel(model_path)
    meta = model.metadata.raw
    cache = _crops(ws, part, model.crop_rule, data_dir)
    for _, rule in model.inputs[1:]:  # the other crops of a model that takes several
        _crops(ws, part, rule, data_dir)
    stem = f"{model_path.stem}-{split_name}"
    report_path = options.report or Path(ws.cache_dir) / "reports" / f"{stem}.json"
    out_dir = options.out_dir
    val_report = None
    if out_dir is not None and split_name == "test":
        val_json = Path(out_dir) / f"{model_path.stem}-val.json"
        val_report = json.loads(val_json.read_text()) if val_json.is_file() else None
    report = evaluate_model(model_path, part, cache, threshold=options.eval_threshold, split_name=split_name,
                            report_path=report_path, n_boot=options.n_boot, stress=options.stress,
                            plots_dir=out_dir, markdown_path=(Path(out_dir) / f"{stem}.md") if out_dir else None,
                            history=(meta.get("training") or {}).get("history"), val_report=val_report,
                            fallback=options.fallback_crops)
    print(f"evaluate: {summary_line(report)}")
    print(f"evaluate: report {_rel(report_path)}" + (f", Markdown and plots in {_rel(out_dir)}" if out_dir else ""))
    if out_dir is not None:
        Path(out_dir, f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    if options.update_metadata:
        keep = {k: report.get(k) for k in ("split", "subjects", "default_profile", "threshold", "n_scored",
                                           "n_without_crop", "overall", "by_attack", "at_profiles", "intervals")}
        for entry in (keep.get("at_profiles") or {}).values():
            entry.pop("confusion", None)
        keep["overall"] = {k: v for k, v in (keep["overall"] or {}).items() if k != "apcer_by_attack"}
        keep["scored_by"] = report["scored_by"]
        update(model_path, **{f"{split_name}_metrics": keep})
    return report


def baselines(ws: Workspace, options: BaselineOptions = BaselineOptions()) -> dict:
    """Trivial single-feature baselines (brightness, contrast, ...) on a split."""
    import numpy as np

    from ekyc.training.baselines import baseline_table, features
    from ekyc.training.crops import load_crops

    samples = _samples(ws)
    _, parts = _split(ws, samples)
    cache = _crops(ws, parts[options.split], options.crop.rule())
    items = cache.usable(parts[options.split])
    kept = [s for s, _ in items]
    feats = features(load_crops([p for _, p in items]), cache.rows(kept))
    labels = np.array([s.label for s in kept])
    sources = np.array([s.source for s in kept])
    tables = {"all": baseline_table(feats, labels)}
    for source in sorted(set(sources.tolist())):
        tables[source] = baseline_table(feats, labels, sources == source)
    print(f"baselines on {options.split} (AUC, better polarity; BPCER@APCER=1%):")
    for name, table in tables.items():
        cells = ", ".join(f"{f} {v['auc']:.3f}/{v['bpcer_at_apcer_1pct']:.3f}" for f, v in table.items() if f != "best")
        print(f"  {name}: {cells}")
    return tables


def compare(ws: Workspace, options: CompareOptions) -> list[dict]:
    """Export each run's best checkpoint, calibrate and score it on the validation split."""
    from ekyc.training.evaluate import evaluate as evaluate_model
    from ekyc.training.export import latency_ms
    from ekyc.training.model import load_checkpoint

    samples = _samples(ws)
    split, parts = _split(ws, samples)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, run in enumerate(options.runs):
            checkpoint = _checkpoint_path(run)
            net, ckpt = load_checkpoint(checkpoint)
            config = ckpt.get("config", {})
            onnx_path = Path(tmp) / f"cand{n}.onnx"
            out, meta = export_checkpoint(ws, checkpoint, onnx_path, samples, split, parts)
            rule = _rule(meta["crop"]["size"], meta["crop"]["scale"])
            cache = _cache(ws, rule)
            report = evaluate_model(out, parts["val"], cache, split_name="val", n_boot=options.n_boot, stress=True)
            summary = json.loads((checkpoint.parent / "summary.json").read_text()) if (checkpoint.parent / "summary.json").is_file() else {}
            rows.append({
                "run": checkpoint.parent.name, "architecture": config.get("architecture"), "crop": meta["crop"],
                "pretrained": config.get("pretrained_loaded"), "loss": config.get("loss", "bce"),
                "synth_ratio": config.get("synth_ratio", 0), "hard_mining": config.get("hard_mining", False),
                "epochs_run": summary.get("epochs_run"), "best_epoch": ckpt.get("epoch"),
                "train_seconds": summary.get("seconds"), "params": sum(p.numel() for p in net.parameters()),
                "onnx_mb": out.stat().st_size / 1e6, "latency": latency_ms(out, rule.size, threads=1, n=100),
                "profiles": meta["profiles"], "overall": {k: report["overall"].get(k) for k in ("auc", "eer", "bpcer_at_apcer_1pct")},
                "by_attack": report["by_attack"], "baselines": report["baselines"],
                "stress": {c: {a: e.get(a, {}).get("auc") for a in report["by_attack"]} for c, e in report["stress"].items()},
            })
            worst = max(e["bpcer_at_apcer_1pct"] for e in report["by_attack"].values())
            print(f"compare: {rows[-1]['run']}: worst-attack BPCER@APCER=1% {worst:.4f}, "
                  + ", ".join(f"{a} AUC {e['auc']:.4f}" for a, e in report["by_attack"].items()))
    for row in rows:
        row["select_worst_bpcer_at_apcer_1pct"] = max(e["bpcer_at_apcer_1pct"] for e in row["by_attack"].values())
    rows.sort(key=lambda r: (r["select_worst_bpcer_at_apcer_1pct"],
                             -min(e["auc"] for e in r["by_attack"].values())))
    out = options.out or Path(ws.cache_dir) / "reports" / "compare.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    out.write_text(render_compare(rows))
    print(f"compare: best {rows[0]['run']}; table {_rel(out)}")
    return rows


def render_compare(rows: list[dict]) -> str:
    attacks = sorted({a for r in rows for a in r["by_attack"]})
    head = ("| run | backbone | crop | loss | synth | hard mining | epochs (best) | "
            + " | ".join(f"{a}: BPCER@APCER=1 % / AUC" for a in attacks)
            + " | pooled AUC | stress AUC min | ms/crop (1 thread) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [f"{100 * r['by_attack'][a]['bpcer_at_apcer_1pct']:.1f} % / {r['by_attack'][a]['auc']:.4f}"
                 if a in r["by_attack"] else "–" for a in attacks]
        stress_min = min((v for c in r["stress"].values() for v in c.values() if v is not None), default=None)
        lines.append(
            f"| {r['run']} | {r['architecture']}{'' if r['pretrained'] else ' (scratch)'} | "
            f"{r['crop']['size']} x{r['crop']['scale']} | {r['loss']} | {r['synth_ratio']} | {r['hard_mining']} | "
            f"{r['epochs_run']} ({r['best_epoch']}) | " + " | ".join(cells) +
            f" | {r['overall']['auc']:.4f} | {stress_min if stress_min is None else f'{stress_min:.4f}'} | "
            f"{r['latency']['median_ms']:.2f} |")
    base = rows[0]["baselines"] if rows else {}
    cells = []
    for a in attacks:
        best = (base.get(a) or {}).get("best")
        cells.append(f"{100 * best['bpcer_at_apcer_1pct']:.1f} % / {best['auc']:.4f} ({best['feature']})" if best else "–")
    overall = (base.get("overall") or {}).get("best") or {}
    lines.append("| best trivial feature | – | – | – | – | – | – | " + " | ".join(cells)
                 + f" | {overall.get('auc', float('nan')):.4f} ({overall.get('feature', '–')}) | – | – |")
    return "\n".join(lines) + "\n"


def bench(options: BenchOptions = BenchOptions()) -> dict:
    """Latency of one-crop calls on ONNX Runtime threads."""
    from ekyc.models.liveness import LivenessModel
    from ekyc.training.export import latency_ms

    model = LivenessModel(Path(options.model))
    result = latency_ms(options.model, {name: rule.size for name, rule in model.inputs}, threads=options.threads,
                        n=options.n)
    result["inputs"] = [name for name, _ in model.inputs]
    print(f"bench: {options.model}: {result['median_ms']:.2f} ms median, {result['p90_ms']:.2f} ms p90 per face "
          f"({len(model.inputs)} crop(s), {options.threads} thread(s), {options.n} one-face calls)")
    return result


def publish(options: PublishOptions) -> dict:
    """Upload model + metadata + reports to s3://bucket/prefix/<version>/ with SHA-256s."""
    from ekyc.training.publish import publish as upload

    manifest = upload(options.model, options.destination, list(options.reports))
    for obj in manifest["objects"]:
        print(f"publish: {'uploaded' if obj['uploaded'] else 'unchanged'} {obj['key']} sha256 {obj['sha256'][:12]}...")
    print(f"publish: serve it with: ekyc-server --model {manifest['model_uri']}")
    return manifest


def run_all(ws: Workspace, split_options: SplitOptions = SplitOptions(), crop: CropOptions = CropOptions(),
            training: TrainOptions = TrainOptions(), exporting: ExportOptions = ExportOptions(),
            evaluating: EvaluateOptions = EvaluateOptions()) -> dict:
    """Split, crops, train, export (+ calibrate) and evaluate (the test split by default; its
    summary goes into the model's metadata). Returns the evaluation report."""
    samples = _samples(ws)
    split_file, parts = _split(ws, samples, split_options)
    cache = crops(ws, crop, samples)
    checkpoint = train(ws, crop, training, samples, parts, cache)
    out = export(ws, exporting, checkpoint, samples, split_file, parts)
    name = evaluating.split or "test"
    evaluating = replace(evaluating, model=out, data=None, split=name, update_metadata=name == "test")
    return evaluate(ws, evaluating, samples)


