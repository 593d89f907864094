"""``ekyc-train``: the liveness model's pipeline, one subcommand per step.

    ekyc-train all --data-dir /path/to/data      # split, crops, train, export (+ calibrate), evaluate
    ekyc-train split | crops | train | export | calibrate | evaluate | baselines | compare | bench | publish

``--data-dir`` defaults to ``$EKYC_DATA_DIR``. The data directory holds a ``manifest.csv``
(``path,label,attack,subject,source,kind,note``), CelebA-Spoof's own layout (``Data/`` +
``metas/intra_test/``) or ``live/`` and ``spoof/`` folders (optionally ``live/<subject>/...``).
``python -m ekyc.training ...`` is the same program.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ekyc.paths import DEFAULT_CACHE, DEFAULT_DETECTOR, DEFAULT_MODEL
from ekyc.training import steps
from ekyc.training.steps import DEFAULT_SPLIT

PROG = "ekyc-train"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=os.environ.get("EKYC_DATA_DIR") or None,
                        help="labelled images (default: $EKYC_DATA_DIR)")
    common.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="crops, runs, reports and torch weights (default: .cache/)")
    common.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT,
                        help="subject split, made by `split` and reused (default: training/splits/shared-data.json)")
    common.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR, help="face detector model (BlazeFace .onnx)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    parser = argparse.ArgumentParser(prog=PROG, description="Train, evaluate and ship the ekyc liveness model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_text):
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    def split_opts(p):
        p.add_argument("--seed", type=int, default=0, help="seed of the subject shuffle (default 0)")
        p.add_argument("--force", action="store_true", help="make a new split even if the file exists")

    def crop_opts(p):
        p.add_argument("--crop-size", type=int, default=128, help="model input side in pixels (default 128)")
        p.add_argument("--crop-scale", type=float, default=1.2,
                       help="crop side / face box side: more context above 1.2 (default 1.2)")

    def train_opts(p):
        p.add_argument("--arch", dest="architecture", default=None,
                       choices=("mobilenet_v3_small", "mobilenet_v2", "efficientnet_b0"))
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--max-per-group", type=int, default=None, help="crops per (subject, label) and epoch, 0 = all")
        p.add_argument("--patience", type=int, default=None)
        p.add_argument("--train-seed", type=int, default=None)
        p.add_argument("--loss", choices=("bce", "focal"), default=None)
        p.add_argument("--spoof-weight", type=float, default=None, help="cost of a missed spoof x class ratio")
        p.add_argument("--synth-ratio", type=float, default=None, help="synthetic spoofs per live crop drawn (0 = off)")
        p.add_argument("--hard-mining", action="store_true", help="draw crops in proportion to their running loss")
        p.add_argument("--ema-decay", type=float, default=None, help="validate/keep an EMA of the weights (e.g. 0.98)")
        p.add_argument("--select", choices=("eer_max", "eer"), default=None,
                       help="early stopping metric: worst attack type's validation EER (default) or pooled")
        p.add_argument("--no-pretrained", action="store_true", help="random init instead of ImageNet weights")
        p.add_argument("--name", default=None, help="suffix of the run directory name")

    def export_opts(p, standalone):
        p.add_argument("--output", type=Path, default=DEFAULT_MODEL, help="ONNX file (metadata goes next to it)")
        p.add_argument("--threshold", type=float, default=None,
                       help="a fixed threshold instead of calibrated profiles (only without data)")
        p.add_argument("--version", default=None, help="model version string (default liveness-<arch>-<size>-x<scale>-v2)")
        p.add_argument("--default-profile", default="balanced", choices=("strict", "balanced", "lenient"))
        p.add_argument("--max-review-rate", type=float, default=0.05,
                       help="largest share of validation images a review band may send to a person (default 0.05)")
        if standalone:
            p.add_argument("--checkpoint", type=Path, default=None, help="best.pt of a run (default: the latest run)")

    def eval_opts(p, standalone):
        p.add_argument("--split", choices=("train", "val", "test", "all"), default=None,
                       help="which part of the data (default: test when the split file fits the data, else all)")
        p.add_argument("--report", type=Path, default=None, help="JSON report (default .cache/reports/<model>-<split>.json)")
        p.add_argument("--out-dir", type=Path, default=None,
                       help="also write <model>-<split>.md and PNG plots there")
        p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for intervals (0 = none)")
        p.add_argument("--no-stress", action="store_true", help="skip the degraded-crop stress conditions")
        if standalone:
            p.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL, help="ONNX model (default models/liveness.onnx)")
            p.add_argument("data", nargs="?", type=Path, default=None, help="data directory (default --data-dir)")
            p.add_argument("--eval-threshold", type=float, default=None, help="also evaluate at this threshold")
            p.add_argument("--update-metadata", action="store_true",
                           help="store the summary in the model's .json as <split>_metrics")
            p.add_argument("--fallback-crops", action="store_true",
                           help="also score images without a detected face (whole image / data set box)")

    split_opts(add("split", "make (or check) the subject-disjoint train/val/test split"))
    crop_opts(add("crops", "detect and crop every face into the crop cache"))
    p = add("train", "train a network on the train split, select on the validation split")
    crop_opts(p)
    train_opts(p)
    p.add_argument("--fallback-crops", action="store_true", help="also train on images without a detected face")
    p = add("export", "export a checkpoint to ONNX + metadata, calibrate the profiles on the validation split")
    export_opts(p, True)
    p = add("calibrate", "re-choose the operating points of an exported model on the validation split")
    p.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--default-profile", default=None, choices=("strict", "balanced", "lenient"))
    p.add_argument("--max-review-rate", type=float, default=0.05)
    p.add_argument("--sample", type=Path, default=None,
                   help="calibrate on this labelled sample of your own traffic (all of it; any data layout) "
                        "instead of the validation split")
    p = add("loso", "leave-one-setup-out: the model's recipe and the MiniFASNet peer, shifts, slices, profiles")
    p.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--out-dir", type=Path, default=None, help="reports (default .cache/reports)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--no-shifts", action="store_true", help="skip the capture-shift suite")
    p = add("evaluate", "score data through ONNX Runtime (LivenessModel): JSON report, Markdown, plots")
    eval_opts(p, True)
    p.add_argument("--loso", action="store_true",
                   help="leave-one-setup-out instead of a split: the same as `ekyc-train loso MODEL`")
    p = add("baselines", "trivial single-feature baselines (brightness, contrast, ...) on a split")
    crop_opts(p)
    p.add_argument("--split", choices=("train", "val", "test"), default="val")
    p = add("compare", "export each run's best checkpoint, calibrate and score it on the validation split")
    p.add_argument("runs", nargs="+", type=Path, help="run directories (or best.pt files)")
    p.add_argument("--out", type=Path, default=None, help="Markdown table (default .cache/reports/compare.md; JSON next to it)")
    p.add_argument("--n-boot", type=int, default=200)
    p = add("bench", "latency of one-crop calls on one ONNX Runtime thread")
    p.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-n", type=int, default=300)
    p = add("publish", "upload model + metadata + reports to s3://bucket/prefix/<version>/ with sha256s")
    p.add_argument("model", type=Path)
    p.add_argument("destination", help="s3://bucket/prefix")
    p.add_argument("--report", type=Path, action="append", default=[], help="a report file to publish (repeatable)")
    p = add("all", "split, crops, train, export (+ calibrate) and evaluate the test split")
    split_opts(p)
    crop_opts(p)
    train_opts(p)
    export_opts(p, False)
    eval_opts(p, False)
    p.add_argument("--fallback-crops", action="store_true", help="also train on images without a detected face")
    return parser


# --- from the command line to the steps' typed options --------------------------------------

def _workspace(args) -> steps.Workspace:
    return steps.Workspace(data_dir=args.data_dir, cache_dir=args.cache_dir, split_file=args.split_file,
                           detector=args.detector, quiet=args.quiet)


def _split_options(args) -> steps.SplitOptions:
    return steps.SplitOptions(seed=args.seed, force=args.force)


def _crop_options(args) -> steps.CropOptions:
    return steps.CropOptions(size=args.crop_size, scale=args.crop_scale)


def _train_options(args) -> steps.TrainOptions:
    return steps.TrainOptions(
        architecture=args.architecture, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        max_per_group=args.max_per_group, patience=args.patience, seed=args.train_seed, loss=args.loss,
        spoof_weight=args.spoof_weight, synth_ratio=args.synth_ratio, select=args.select, ema_decay=args.ema_decay,
        hard_mining=args.hard_mining, pretrained=not args.no_pretrained, name=args.name,
        fallback_crops=args.fallback_crops,
    )


def _export_options(args) -> steps.ExportOptions:
    return steps.ExportOptions(output=args.output, threshold=args.threshold, version=args.version,
                               default_profile=args.default_profile, max_review_rate=args.max_review_rate,
                               checkpoint=getattr(args, "checkpoint", None))


def _evaluate_options(args) -> steps.EvaluateOptions:
    return steps.EvaluateOptions(
        model=getattr(args, "model", DEFAULT_MODEL), data=getattr(args, "data", None), split=args.split,
        report=args.report, out_dir=args.out_dir, n_boot=args.n_boot, stress=not args.no_stress,
        eval_threshold=getattr(args, "eval_threshold", None), update_metadata=getattr(args, "update_metadata", False),
        fallback_crops=getattr(args, "fallback_crops", False),
    )


COMMANDS = {
    "split": lambda a: steps.split(_workspace(a), _split_options(a)),
    "crops": lambda a: steps.crops(_workspace(a), _crop_options(a)),
    "train": lambda a: steps.train(_workspace(a), _crop_options(a), _train_options(a)),
    "export": lambda a: steps.export(_workspace(a), _export_options(a)),
    "calibrate": lambda a: steps.calibrate(_workspace(a), steps.CalibrateOptions(
        model=a.model, default_profile=a.default_profile, max_review_rate=a.max_review_rate, sample=a.sample)),
    "loso": lambda a: steps.loso(_workspace(a), steps.LosoOptions(model=a.model, out_dir=a.out_dir, n_boot=a.n_boot,
                                                                  shifts=not a.no_shifts)),
    "evaluate": lambda a: (steps.loso(_workspace(a), steps.LosoOptions(model=a.model, out_dir=a.out_dir, n_boot=a.n_boot,
                                                                      shifts=not a.no_stress))
                           if a.loso else steps.evaluate(_workspace(a), _evaluate_options(a))),
    "baselines": lambda a: steps.baselines(_workspace(a), steps.BaselineOptions(crop=_crop_options(a), split=a.split)),
    "compare": lambda a: steps.compare(_workspace(a), steps.CompareOptions(runs=tuple(a.runs), out=a.out,
                                                                           n_boot=a.n_boot)),
    "bench": lambda a: steps.bench(steps.BenchOptions(model=a.model, threads=a.threads, n=a.n)),
    "publish": lambda a: steps.publish(steps.PublishOptions(model=a.model, destination=a.destination,
                                                            reports=tuple(a.report))),
    "all": lambda a: steps.run_all(_workspace(a), _split_options(a), _crop_options(a), _train_options(a),
                                   _export_options(a), _evaluate_options(a)),
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ekyc.errors import EkycError, ModelLoadError
    from ekyc.training.data import DataError
    from ekyc.training.publish import PublishError

    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (steps.StepError, DataError, ModelLoadError, PublishError, EkycError, FileNotFoundError, ValueError,
            OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
