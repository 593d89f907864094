"""ekyc-quality: run the selfie quality gate locally, and calibrate its thresholds for a camera.

    ekyc-quality check IMG_OR_DIR... [--json] [--config FILE]
    ekyc-quality calibrate DIR -o thresholds.toml [--percentile 1] [--config FILE]

`check` runs the same gate as ekyc-server's CheckQuality, without a server; `--json` prints
exactly what `ekyc-client check-quality --json` prints for the server's report. Exit codes:
0 every image passed, 3 any image failed the gate, 1 any error (unreadable file, not an
image, bad configuration, bad usage); an error outranks a failure.

`calibrate` reads a folder of images a camera produced that should pass, reports the
distribution of every score (percentiles; a histogram PNG) and writes a thresholds file with
a [quality] section that `ekyc-server --config FILE` (and `ekyc-quality check --config FILE`)
loads. It sets the camera-dependent limits (exposure, contrast, sharpness, face size) to the
given percentile of the folder's scores; limits on the person (pose, eyes, other faces,
framing) and on the image size keep their configured values.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ekyc import imagefiles
from ekyc.argparsing import EXIT_USAGE, ArgumentParser

EXIT_OK = 0
EXIT_ERROR = EXIT_USAGE
EXIT_QUALITY = 3
PERCENTILES = (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100)

# Thresholds `calibrate` sets: (threshold, score, which tail). "low": the threshold is the
# percentile p of the score (a min_* limit); "high": the percentile 100 - p (a max_* limit).
CALIBRATED = (
    ("min_brightness", "brightness", "low"),
    ("max_brightness", "brightness", "high"),
    ("max_underexposed_fraction", "underexposed_fraction", "high"),
    ("max_overexposed_fraction", "overexposed_fraction", "high"),
    ("min_dynamic_range", "dynamic_range", "low"),
    ("min_sharpness", "sharpness", "low"),
    ("min_face_size_px", "face_size_px", "low"),
    ("min_face_coverage", "face_coverage", "low"),
    ("min_interocular_distance_px", "interocular_distance_px", "low"),
)
# Scores whose distribution is reported (and drawn) besides the calibrated ones.
REPORTED = (
    "brightness", "underexposed_fraction", "overexposed_fraction", "dynamic_range", "sharpness",
    "face_size_px", "face_coverage", "interocular_distance_px", "face_confidence", "face_border_margin",
    "second_face_area_ratio", "yaw_deg", "pitch_deg", "roll_deg", "eyes_closed_score", "eyes_occluded_score",
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ekyc-quality", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    check = commands.add_parser("check", help="run the quality gate on images (no server)")
    check.add_argument("images", nargs="+", help="image files or folders (walked for JPEG/PNG/WebP)")
    check.add_argument("--json", action="store_true", help="one JSON object per image per line (as ekyc-client)")
    check.add_argument("--config", type=Path, help="TOML file with [quality]/[detector]/[landmarks] overrides")
    calibrate = commands.add_parser("calibrate", help="derive thresholds from a folder of good images")
    calibrate.add_argument("folder", type=Path, help="folder of images (walked) that should pass")
    calibrate.add_argument("-o", "--output", type=Path, required=True, help="thresholds file to write (TOML)")
    calibrate.add_argument(
        "--percentile", type=float, default=1.0,
        help="share (%%) of the folder's images each calibrated check may reject (default 1)",
    )
    calibrate.add_argument(
        "--margin", type=float, default=0.5,
        help="widen each limit by this many interquartile ranges of its score (default 0.5; 0: the percentile itself)",
    )
    calibrate.add_argument("--config", type=Path, help="starting configuration (TOML), e.g. a previous calibration")
    calibrate.add_argument("--report", type=Path, help="JSON report (default: OUTPUT with .report.json)")
    calibrate.add_argument("--histogram", type=Path, help="histogram PNG (default: OUTPUT with .histograms.png)")
    return parser


def expand_paths(arguments: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given; folders walked (sorted) for image files (ekyc.imagefiles)."""
    return (Path(path) for path in imagefiles.expand_paths(arguments))


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence native libraries' start-up lines (C++ logging to fd 2) while models load."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _load_options(path: Path | None):
    """The gate's options: quality/defaults.toml, the gate's sections of ``path``, EKYC_* env."""
    from ekyc.quality.options import load_gate_options
    from ekyc.settings import ConfigError

    try:
        return load_gate_options(path, os.environ)
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None


class _UsageError(Exception):
    pass


def _open_gate(options):
    from ekyc.quality.gate import QualityGate

    with quiet_native_stderr():
        gate = QualityGate(options)
        gate.warm_up()
    return gate


def _close(gate) -> None:
    with quiet_native_stderr():
        gate.close()


def _json_line(path: Path, result) -> str:
    from google.protobuf import json_format

    from ekyc.quality.report import quality_report
    from ekyc.v1 import liveness_pb2 as pb

    response = pb.CheckQualityResponse(quality=quality_report(result), request_id=path.name)
    data = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps({"path": str(path), **data})


def _describe(result) -> str:
    scores = result.scores
    head = "PASSED" if result.passed else f"FAILED ({', '.join(r.value for r in result.reasons)})"
    parts = [
        f"brightness {scores.brightness:.0f}",
        f"sharpness {scores.sharpness:.0f}",
        f"faces {scores.face_count}",
        f"face coverage {scores.face_coverage:.2f}",
    ]
    if scores.landmarks_measured:
        parts += [
            f"eyes {scores.interocular_distance_px:.0f} px apart",
            f"yaw {scores.yaw_deg:+.0f} pitch {scores.pitch_deg:+.0f} roll {scores.roll_deg:+.0f}",
            f"eyes closed {scores.eyes_closed_score:.2f} occluded {scores.eyes_occluded_score:.2f}",
        ]
    return f"{head} " + ", ".join(parts)


def _assess(gate, path: Path):
    """(result, None) or (None, (code, message))."""
    from ekyc.quality.errors import InvalidImageError

    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, ("CLIENT_ERROR", f"cannot read file: {exc.strerror or exc}")
    try:
        rgb = gate.decode(data)
    except InvalidImageError as exc:
        return None, ("INVALID_ARGUMENT", str(exc))
    return gate.assess(rgb), None


def run_check(args) -> int:
    paths = list(expand_paths(args.images))
    if not paths:
        print("ekyc-quality: no image files found", file=sys.stderr)
        return EXIT_ERROR
    options = _load_options(args.config)
    errors = failed = 0
    gate = _open_gate(options)
    try:
        for path in paths:
            result, error = _assess(gate, path)
            if error is not None:
                errors += 1
                code, message = error
                print(f"ekyc-quality: {path}: {message}", file=sys.stderr, flush=True)
                if args.json:
                    print(json.dumps({"path": str(path), "error": {"code": code, "message": message}}), flush=True)
                continue
            failed += not result.passed
            if args.json:
                print(_json_line(path, result), flush=True)
            else:
                print(f"{path}: {_describe(result)}", flush=True)
    finally:
        _close(gate)
    if errors:
        return EXIT_ERROR
    return EXIT_QUALITY if failed else EXIT_OK


# --- calibrate ----------------------------------------------------------------------------


def _score_row(result) -> dict:
    row = asdict(result.scores)
    row["face_size_px"] = float(min(result.face.width, result.face.height))
    return row


def percentiles(values: list[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {f"p{q}": round(float(np.percentile(array, q)), 4) for q in PERCENTILES}


def _values(rows: list[dict], score: str) -> list[float]:
    """The score over the rows that measured it (landmark scores need landmarks)."""
    landmark_scores = {"interocular_distance_px", "yaw_deg", "pitch_deg", "roll_deg", "eyes_closed_score",
                       "eyes_occluded_score"}
    return [row[score] for row in rows if row["landmarks_measured"] or score not in landmark_scores]


def calibrated_thresholds(rows: list[dict], percentile: float, current, margin: float = 0.0) -> dict:
    """New values for the CALIBRATED thresholds from the score ``rows`` of good images: the
    ``percentile`` (low tail) or 100 - ``percentile`` (high tail) of each score, widened by
    ``margin`` x the score's interquartile range (so a tight folder does not give limits that
    reject the next ordinary image)."""
    from ekyc.quality.options import QualityThresholds

    types = {f.name: f.type for f in fields(QualityThresholds)}
    out = {}
    for threshold, score, tail in CALIBRATED:
        values = _values(rows, score)
        if not values:
            continue
        q = percentile if tail == "low" else 100.0 - percentile
        array = np.asarray(values, dtype=np.float64)
        value = float(np.percentile(array, q))
        spread = float(np.percentile(array, 75) - np.percentile(array, 25))
        value += margin * spread * (-1.0 if tail == "low" else 1.0)
        if types[threshold] in (int, "int"):
            value = int(math.floor(value)) if tail == "low" else int(math.ceil(value))
        else:
            # Round outwards, so that the limit never rejects the percentile's own image.
            value = math.floor(value * 1000) / 1000 if tail == "low" else math.ceil(value * 1000) / 1000
        if threshold.endswith("_fraction") or threshold == "min_face_coverage":
            value = min(1.0, max(0.0, value))
        elif threshold.endswith("_brightness"):
            value = min(255.0, max(0.0, value))
        else:
            value = max(0, value)
        out[threshold] = value
    # Keep the pairs consistent even on a degenerate folder (every image alike).
    if out.get("min_brightness", current.min_brightness) >= out.get("max_brightness", current.max_brightness):
        out["max_brightness"] = out.get("min_brightness", current.min_brightness) + 1.0
    return out


def _write_toml(path: Path, values: dict, header: list[str]) -> None:
    lines = [f"# {line}" if line else "#" for line in header]
    lines += ["", "[quality]"]
    for key, value in values.items():
        lines.append(f"{key} = {value!r}" if isinstance(value, int) else f"{key} = {value:.6g}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _histograms(path: Path, rows: list[dict], new: dict, current) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limits = {score: threshold for threshold, score, _ in CALIBRATED}
    extra = {"yaw_deg": "max_abs_yaw_deg", "pitch_deg": "max_abs_pitch_deg", "roll_deg": "max_abs_roll_deg",
             "eyes_closed_score": "max_eyes_closed_score", "eyes_occluded_score": "max_eyes_occluded_score",
             "face_border_margin": "min_face_border_margin", "second_face_area_ratio": "multiple_faces_min_area_ratio"}
    columns = 4
    rows_n = math.ceil(len(REPORTED) / columns)
    figure, axes = plt.subplots(rows_n, columns, figsize=(4 * columns, 2.8 * rows_n))
    for axis, score in zip(axes.ravel(), REPORTED):
        values = _values(rows, score)
        axis.hist(values, bins=30, color="#4c72b0")
        axis.set_title(score, fontsize=9)
        axis.tick_params(labelsize=7)
        drawn = set()
        for threshold, score_name, _ in CALIBRATED:
            if score_name != score:
                continue
            axis.axvline(getattr(current, threshold), color="grey", linestyle="--", linewidth=1)
            if threshold in new:
                axis.axvline(new[threshold], color="#c44e52", linewidth=1.5)
            drawn.add(threshold)
        if score in extra and score not in limits:
            value = getattr(current, extra[score])
            for line in ((value, -value) if score.endswith("_deg") else (value,)):
                axis.axvline(line, color="grey", linestyle="--", linewidth=1)
    for axis in axes.ravel()[len(REPORTED):]:
        axis.axis("off")
    figure.suptitle("score distributions (red: calibrated limit, dashed: limit before)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def run_calibrate(args) -> int:
    from ekyc.quality.options import QualityThresholds

    if not args.folder.is_dir():
        raise _UsageError(f"not a folder: {args.folder}")
    if not 0.0 <= args.percentile < 50.0:
        raise _UsageError("--percentile must be within 0..50")
    if not 0.0 <= args.margin <= 10.0:
        raise _UsageError("--margin must be within 0..10")
    paths = list(expand_paths([args.folder]))
    if not paths:
        raise _UsageError(f"no image files in {args.folder}")
    options = _load_options(args.config)
    current = options.thresholds
    rows: list[dict] = []
    skipped: dict[str, int] = {}
    errors = 0
    gate = _open_gate(options)
    try:
        for path in paths:
            result, error = _assess(gate, path)
            if error is not None:
                errors += 1
                print(f"ekyc-quality: {path}: {error[1]}", file=sys.stderr)
                continue
            if result.face is None:
                skipped["no face"] = skipped.get("no face", 0) + 1
                continue
            rows.append(_score_row(result))
    finally:
        _close(gate)
    if not rows:
        print(f"ekyc-quality: no face found in any of the {len(paths)} images: nothing to calibrate", file=sys.stderr)
        return EXIT_ERROR
    new = calibrated_thresholds(rows, args.percentile, current, args.margin)
    merged = {**{f.name: getattr(current, f.name) for f in fields(QualityThresholds)}, **new}
    try:
        QualityThresholds.from_dict(merged)
    except ValueError as exc:
        print(f"ekyc-quality: the calibrated thresholds are inconsistent: {exc}", file=sys.stderr)
        return EXIT_ERROR
    rejected = {}
    for threshold, score, tail in CALIBRATED:
        if threshold in new:
            values = _values(rows, score)
            rejected[threshold] = sum((v < new[threshold]) if tail == "low" else (v > new[threshold]) for v in values)
    report_path = args.report or args.output.with_suffix(".report.json")
    histogram_path = args.histogram or args.output.with_suffix(".histograms.png")
    report = {
        "folder": str(args.folder),
        "images": len(paths),
        "measured": len(rows),
        "skipped": skipped,
        "errors": errors,
        "percentile": args.percentile,
        "margin": args.margin,
        "scores": {score: percentiles(_values(rows, score)) for score in REPORTED if _values(rows, score)},
        "thresholds": {
            threshold: {"before": getattr(current, threshold), "calibrated": new[threshold],
                        "folder_images_rejected": rejected[threshold]}
            for threshold, _, _ in CALIBRATED if threshold in new
        },
    }
    header = [
        f"Written by ekyc-quality calibrate from {len(rows)} images with a face in {args.folder}",
        f"({len(paths)} files). Each limit is percentile {args.percentile:g} of its score on the folder's",
        f"images (the tail that fails), widened by {args.margin:g} x its interquartile range.",
        "Load it with: ekyc-server --config THIS_FILE (or ekyc-quality check --config THIS_FILE).",
        f"Score distributions: {report_path.name}, {histogram_path.name}",
    ]
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        _write_toml(args.output, new, header)
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _histograms(histogram_path, rows, new, current)
    except OSError as exc:
        print(f"ekyc-quality: cannot write {exc.filename or args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    print(_markdown(report))
    print(f"\nwrote {args.output}, {report_path}, {histogram_path}")
    return EXIT_ERROR if errors else EXIT_OK


def _markdown(report: dict) -> str:
    lines = [f"{report['measured']} of {report['images']} images measured"
             + (f" (skipped: {report['skipped']})" if report["skipped"] else ""), "",
             "| score | p0 | p1 | p5 | p50 | p95 | p99 | p100 |", "|---|---|---|---|---|---|---|---|"]
    for score, values in report["scores"].items():
        cells = " | ".join(f"{values[k]:.4g}" for k in ("p0", "p1", "p5", "p50", "p95", "p99", "p100"))
        lines.append(f"| {score} | {cells} |")
    lines += ["", "| threshold | before | calibrated | folder images it rejects |", "|---|---|---|---|"]
    for threshold, values in report["thresholds"].items():
        lines.append(f"| {threshold} | {values['before']:.4g} | {values['calibrated']:.4g} | {values['folder_images_rejected']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            return run_check(args)
        return run_calibrate(args)
    except _UsageError as exc:
        print(f"ekyc-quality: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ekyc-quality: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
