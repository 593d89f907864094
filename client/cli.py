"""ekyc-client: verify selfies and check their quality against an ekyc-server.

Exit codes: 0 every image live (check-quality: every image passed; health: SERVING),
2 any spoof, 3 any quality failure and no spoof, 1 any error (unreadable file,
server unreachable, RPC error, bad usage). An error outranks the other outcomes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import grpc
from google.protobuf import json_format

from ekyc.client.client import DEFAULT_TARGET, LivenessClient, LivenessError
from ekyc.v1 import liveness_pb2 as pb

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SPOOF = 2
EXIT_QUALITY = 3

# Codes that mean the server, not this image, is the problem: stop instead of failing every image.
_FATAL_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1 like every other error: 2 means 'spoof' to scripts."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ekyc-client", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("EKYC_SERVER", DEFAULT_TARGET),
        help=f"HOST:PORT of the server (default: $EKYC_SERVER or {DEFAULT_TARGET})",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per RPC (default 30)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    verify = commands.add_parser("verify", help="quality gate + liveness decision for each image")
    verify.add_argument("images", nargs="+", metavar="IMG")
    verify.add_argument("--no-quality", action="store_true", help="skip the quality gate")
    verify.add_argument("--json", action="store_true", help="one JSON object per image per line")
    quality = commands.add_parser("check-quality", help="quality gate only, for each image")
    quality.add_argument("images", nargs="+", metavar="IMG")
    quality.add_argument("--json", action="store_true", help="one JSON object per image per line")
    commands.add_parser("health", help="print the server's health status")
    return parser


def to_json(message, **extra) -> str:
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps({**extra, **data})


def _reasons(report: pb.QualityReport) -> str:
    return ", ".join(pb.QualityReason.Name(r).removeprefix("QUALITY_REASON_") for r in report.reasons)


def describe_verify(response: pb.VerifyResponse) -> str:
    if response.status == pb.VERIFY_STATUS_QUALITY_FAILED:
        return f"QUALITY_FAILED ({_reasons(response.quality)})"
    verdict = "LIVE" if response.is_live else "SPOOF"
    return (
        f"{verdict} (spoof score {response.liveness_score:.3f}, threshold {response.threshold:.3f},"
        f" model {response.model_version})"
    )


def describe_quality(response: pb.CheckQualityResponse) -> str:
    report = response.quality
    scores = report.scores
    head = "PASSED" if report.passed else f"FAILED ({_reasons(report)})"
    return (
        f"{head} brightness {scores.brightness:.0f}, sharpness {scores.sharpness:.0f},"
        f" faces {scores.face_count}, face coverage {scores.face_coverage:.2f}"
    )


def outcome_of(command: str, response) -> int:
    if command == "verify":
        if response.status == pb.VERIFY_STATUS_QUALITY_FAILED:
            return EXIT_QUALITY
        return EXIT_OK if response.is_live else EXIT_SPOOF
    return EXIT_OK if response.quality.passed else EXIT_QUALITY


def combine(codes: list[int]) -> int:
    for code in (EXIT_ERROR, EXIT_SPOOF, EXIT_QUALITY):
        if code in codes:
            return code
    return EXIT_OK


def _error(path: str, message: str, as_json: bool, code: str = "") -> None:
    print(f"ekyc-client: {path}: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"path": path, "error": {"code": code or "CLIENT_ERROR", "message": message}}))


def run_images(client: LivenessClient, args) -> int:
    codes: list[int] = []
    for path in args.images:
        try:
            image = Path(path).read_bytes()
        except OSError as exc:
            _error(path, f"cannot read file: {exc.strerror or exc}", args.json)
            codes.append(EXIT_ERROR)
            continue
        try:
            if args.command == "verify":
                response = client.verify(image, enable_quality_checks=not args.no_quality, request_id=Path(path).name)
                line = describe_verify(response)
            else:
                response = client.check_quality(image, request_id=Path(path).name)
                line = describe_quality(response)
        except LivenessError as exc:
            _error(path, f"{exc.code.name}: {exc.details}", args.json, exc.code.name)
            codes.append(EXIT_ERROR)
            if exc.code in _FATAL_CODES:
                print(f"ekyc-client: stopping: server {args.server} is unavailable", file=sys.stderr)
                return EXIT_ERROR
            continue
        print(to_json(response, path=path) if args.json else f"{path}: {line}", flush=True)
        codes.append(outcome_of(args.command, response))
    return combine(codes)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with LivenessClient(args.server, timeout=args.timeout) as client:
            if args.command == "health":
                try:
                    status = client.health()
                except LivenessError as exc:
                    print(f"ekyc-client: health check failed: {exc}", file=sys.stderr)
                    return EXIT_ERROR
                print(status)
                return EXIT_OK if status == "SERVING" else EXIT_ERROR
            return run_images(client, args)
    except KeyboardInterrupt:
        print("ekyc-client: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
