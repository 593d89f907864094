"""ekyc-client: verify selfies (and match them to an ID document), compare faces and check image quality against an ekyc-server.

Exit codes, the worst outcome over all images deciding:
  0  every image live and, with --reference, matching it (check-quality: every image passed;
     compare: the faces match; health: SERVING)
  1  any error: unreadable file, server unreachable, RPC error, bad usage
  2  any spoof
  5  any face that does not match its reference (NO_MATCH), and no spoof
  4  any uncertain decision (liveness or match: send to review), and nothing above
  3  any image that failed its quality checks (the selfie's gate, or a reference that cannot
     be matched), and nothing above
  130 interrupted
A non-match is never "live": onboarding needs both (README: "Liveness and match").
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Iterator, TextIO

import grpc
from google.protobuf import json_format

from ekyc.argparsing import EXIT_USAGE, ArgumentParser
from ekyc.client.batch import BatchUnavailable, Item, SourceFailed, StreamBatch
from ekyc.client.client import DEFAULT_TARGET, LivenessClient, LivenessError
from ekyc.client.storage import Output, Source, StorageError, is_s3, iter_sources
from ekyc.v1 import liveness_pb2 as pb

EXIT_OK = 0
EXIT_ERROR = EXIT_USAGE
EXIT_SPOOF = 2
EXIT_QUALITY = 3
EXIT_UNCERTAIN = 4
EXIT_NO_MATCH = 5
EXIT_INTERRUPTED = 130
CSV_COLUMNS = (
    "path", "status", "decision", "is_live", "liveness_score", "confidence", "threshold", "profile", "model_version",
    "quality_passed", "reasons", "reference", "match_status", "match_decision", "is_match", "similarity",
    "match_threshold", "match_profile", "matcher_version", "reference_reasons", "error_code", "error_message",
)

# Codes that mean the server, not this image, is the problem: stop instead of failing every image.
_FATAL_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ekyc-client", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("EKYC_SERVER", DEFAULT_TARGET),
        help=f"HOST:PORT of the server (default: $EKYC_SERVER or {DEFAULT_TARGET})",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per RPC (default 30)")
    parser.add_argument("--api-key", default=os.environ.get("EKYC_API_KEY"),
                        help="API key sent as 'authorization: Bearer' (default: $EKYC_API_KEY)")
    parser.add_argument("--tls-ca", help="PEM CA that signed the server's certificate: use TLS")
    parser.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--tls-server-name", help="name to check in the server's certificate (default: the host)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    verify = commands.add_parser("verify", help="quality gate + liveness decision for each image")
    verify.add_argument("images", nargs="+", metavar="IMG_OR_DIR",
                        help="image files, folders (walked) or s3://BUCKET/PREFIX (listed; needs the s3 extra)")
    verify.add_argument("--no-quality", action="store_true", help="skip the quality gate")
    verify.add_argument("--stream", action="store_true", help="one VerifyStream for all images (fast batch)")
    verify.add_argument(
        "--connections", type=_positive, default=1, metavar="N",
        help="with --stream: N channels with a stream each, images dealt to whichever has room, so that a load "
             "balancer spreads the batch over its backends; results in the order they arrive (default 1)",
    )
    verify.add_argument("--profile", default="", help="operating point: strict, balanced or lenient (default: server's)")
    verify.add_argument("--reference", metavar="IMG",
                        help="the ID document's portrait (or an earlier selfie): also match each selfie's face to it")
    verify.add_argument("--match-profile", default="",
                        help="match operating point: strict or balanced (default: server's); needs --reference")
    _output_options(verify)
    compare = commands.add_parser("compare", help="whether the faces of two images are one person (no liveness)")
    compare.add_argument("image", metavar="IMG", help="the face to check (e.g. a new selfie)")
    compare.add_argument("reference", metavar="REFERENCE", help="the face to check it against (ID portrait, earlier selfie)")
    compare.add_argument("--profile", default="", help="match operating point: strict or balanced (default: server's)")
    _output_options(compare)
    quality = commands.add_parser("check-quality", help="quality gate only, for each image")
    quality.add_argument("images", nargs="+", metavar="IMG_OR_DIR",
                         help="image files, folders (walked) or s3://BUCKET/PREFIX (listed; needs the s3 extra)")
    _output_options(quality)
    commands.add_parser("health", help="print the server's health status")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line")
    parser.add_argument(
        "--output", metavar="FILE",
        help="write results to FILE: CSV if it ends in .csv, else JSON lines; s3://BUCKET/KEY uploads the file "
             "once the batch has finished (nothing is uploaded if it fails)",
    )
    parser.add_argument(
        "--progress", choices=("auto", "on", "off"), default="auto",
        help="progress bar on stderr (auto: only on a terminal)",
    )


def to_json(message, **extra) -> str:
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps({**extra, **data})


def reason_names(report: pb.QualityReport) -> list[str]:
    return [pb.QualityReason.Name(r).removeprefix("QUALITY_REASON_") for r in report.reasons]


def describe_verify(response: pb.VerifyResponse) -> str:
    if response.status == pb.VERIFY_STATUS_QUALITY_FAILED:
        return f"QUALITY_FAILED ({', '.join(reason_names(response.quality))})"
    if response.decision == pb.LIVENESS_DECISION_UNCERTAIN:
        verdict = "UNCERTAIN (review)"
    else:
        verdict = "LIVE" if response.is_live else "SPOOF"
    return (
        f"{verdict} (spoof score {response.liveness_score:.3f}, threshold {response.threshold:.3f},"
        f" profile {response.profile or '-'}, model {response.model_version})"
    )


def describe_match(match: pb.FaceMatch) -> str:
    if match.status == pb.MATCH_STATUS_REFERENCE_REJECTED:
        return f"REFERENCE_REJECTED ({', '.join(reason_names(match.reference_quality))})"
    if match.status == pb.MATCH_STATUS_PROBE_REJECTED:
        return "NOT_COMPARED (the face to check cannot be matched)"
    decision = pb.MatchDecision.Name(match.decision).removeprefix("MATCH_DECISION_")
    if match.decision == pb.MATCH_DECISION_UNCERTAIN:
        decision = "MATCH_UNCERTAIN (review)"
    return (f"{decision} (similarity {match.similarity:.3f}, threshold {match.threshold:.3f},"
            f" profile {match.profile or '-'}, matcher {match.model_version})")


def describe_compare(response: pb.CompareFacesResponse) -> str:
    if response.match.status == pb.MATCH_STATUS_PROBE_REJECTED:
        return f"IMAGE_REJECTED ({', '.join(reason_names(response.quality))})"
    return describe_match(response.match)


def describe_quality(response: pb.CheckQualityResponse) -> str:
    report = response.quality
    scores = report.scores
    head = "PASSED" if report.passed else f"FAILED ({', '.join(reason_names(report))})"
    return (
        f"{head} brightness {scores.brightness:.0f}, sharpness {scores.sharpness:.0f},"
        f" faces {scores.face_count}, face coverage {scores.face_coverage:.2f}"
    )


def match_outcome(match: pb.FaceMatch) -> str:
    """match, no_match, uncertain, reference_rejected or quality_failed (the probe's)."""
    if match.status == pb.MATCH_STATUS_REFERENCE_REJECTED:
        return "reference_rejected"
    if match.status != pb.MATCH_STATUS_SUCCESS:
        return "quality_failed"
    if match.decision == pb.MATCH_DECISION_UNCERTAIN:
        return "uncertain"
    return "match" if match.is_match else "no_match"


def outcome_of(response) -> str:
    """One image's outcome: live, spoof, no_match, uncertain, quality_failed, reference_rejected,
    match (compare) or passed (check-quality). With a reference, a selfie is "live" only when
    its face matches too; the worst of liveness and match wins, as in exit_code."""
    if isinstance(response, pb.CompareFacesResponse):
        return match_outcome(response.match)
    if isinstance(response, pb.VerifyResponse):
        if response.status == pb.VERIFY_STATUS_QUALITY_FAILED:
            return "quality_failed"
        liveness = "uncertain" if response.decision == pb.LIVENESS_DECISION_UNCERTAIN else (
            "live" if response.is_live else "spoof")
        if liveness == "spoof" or not response.HasField("match"):
            return liveness
        match = match_outcome(response.match)
        if match == "no_match":
            return "no_match"
        if liveness == "uncertain":
            return "uncertain"
        return "live" if match == "match" else match
    return "passed" if response.quality.passed else "quality_failed"


def exit_code(counts: Counter) -> int:
    if counts["error"]:
        return EXIT_ERROR
    if counts["spoof"]:
        return EXIT_SPOOF
    if counts["no_match"]:
        return EXIT_NO_MATCH
    if counts["uncertain"]:
        return EXIT_UNCERTAIN
    if counts["quality_failed"] or counts["reference_rejected"]:
        return EXIT_QUALITY
    return EXIT_OK


class ResultWriter:
    """Writes each result as it arrives (human, JSON lines or CSV), flushing so that an
    interrupted run keeps everything written so far, and tallies the summary: a result is
    counted once it is written, so the summary never counts more than the output holds."""

    def __init__(self, args, total: int | None, output: Output | None = None):
        self.counts: Counter = Counter()
        self.reasons: Counter = Counter()
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._closed = False
        self._csv = None
        self._json = args.json
        if output is not None:
            self._file = open(output.local_path, "w", newline="", encoding="utf-8")
            if output.suffix == ".csv":
                self._csv = csv.DictWriter(self._file, fieldnames=CSV_COLUMNS)
                self._csv.writeheader()
        self._progress = _progress_bar(args.progress, total)

    def result(self, path: str, response, reference: str | None = None) -> None:
        outcome = outcome_of(response)
        report = response.quality
        extra = {"path": path} if reference is None else {"path": path, "reference": reference}
        match = response.match if isinstance(response, pb.CompareFacesResponse) or (
            isinstance(response, pb.VerifyResponse) and response.HasField("match")) else None
        with self._lock:
            if self._closed:
                return
            if self._csv is not None:
                self._csv.writerow(_csv_row(path, response, reference))
            elif self._file is not None:
                self._file.write(to_json(response, **extra) + "\n")
            elif self._json:
                print(to_json(response, **extra), flush=True)
            else:
                if isinstance(response, pb.CompareFacesResponse):
                    line = describe_compare(response)
                elif isinstance(response, pb.VerifyResponse):
                    line = describe_verify(response)
                    if match is not None:
                        line += "; " + describe_match(match)
                else:
                    line = describe_quality(response)
                print(f"{path}: {line}", flush=True)
            self._advance()
            self.counts[outcome] += 1
            self.reasons.update(reason_names(report))
            if match is not None:
                self.reasons.update(f"reference {name}" for name in reason_names(match.reference_quality))

    def error(self, path: str, message: str, code: str = "") -> None:
        with self._lock:
            if self._closed:
                return
            self._write_stderr(f"ekyc-client: {path}: {message}")
            record = {"path": path, "error": {"code": code or "CLIENT_ERROR", "message": message}}
            if self._csv is not None:
                self._csv.writerow({"path": path, "error_code": record["error"]["code"], "error_message": message})
            elif self._file is not None:
                self._file.write(json.dumps(record) + "\n")
            elif self._json:
                print(json.dumps(record), flush=True)
            self._advance()
            self.counts["error"] += 1

    def _advance(self) -> None:
        if self._file is not None:
            self._file.flush()
        if self._progress is not None:
            self._progress.update(1)

    def note(self, message: str) -> None:
        """A line about the batch (not about one image) on stderr."""
        with self._lock:
            self._write_stderr(f"ekyc-client: {message}")

    def _write_stderr(self, line: str) -> None:
        if self._progress is not None:
            self._progress.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def summary(self) -> str:
        names = ("live", "match", "spoof", "no_match", "uncertain", "passed", "quality_failed", "reference_rejected", "error")
        parts = [f"{name} {self.counts[name]}" for name in names if self.counts[name]]
        text = f"summary: {sum(self.counts.values())} images: " + (", ".join(parts) or "none")
        if self.reasons:
            text += "; reasons: " + ", ".join(f"{name} {count}" for name, count in sorted(self.reasons.items()))
        return text

    def close(self) -> None:
        """Finish the output; results arriving later (another thread) are dropped, uncounted."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._progress is not None:
                self._progress.close()
            if self._file is not None:
                self._file.close()


class Interrupts:
    """Ctrl-C during a batch, handled where the program chooses instead of wherever the main
    thread happens to be: SIGINT only sets ``requested``, and a watcher thread closes the
    client's channel, which ends the call in flight at once (CANCELLED). The batch loops see
    ``requested`` and stop with KeyboardInterrupt raised from their own code.

    A KeyboardInterrupt raised asynchronously inside gRPC's Python code can leave one of its
    locks held (a signal between a lock's acquisition and the ``with`` that releases it), after
    which closing the channel waited for ever: the client hung after Ctrl-C under load. And one
    raised between writing a result and counting it made the summary disagree with the file.
    A second Ctrl-C raises KeyboardInterrupt at once, as usual.
    """

    def __init__(self, *clients: LivenessClient):
        self.requested = threading.Event()
        self._clients = list(clients)
        self._done = False
        self._previous = None
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> "Interrupts":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C keeps Python's default behaviour
            return self
        self._watcher = threading.Thread(target=self._watch, name="interrupt-watcher", daemon=True)
        self._watcher.start()
        return self

    def _handle(self, _signum, _frame) -> None:
        if self.requested.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested.set()

    def _watch(self) -> None:
        while not self.requested.wait(0.2):
            if self._done:
                return
        if not self._done:
            for client in self._clients:
                client.close()

    def check(self) -> None:
        """Raise KeyboardInterrupt (from the caller's code) once Ctrl-C was pressed."""
        if self.requested.is_set():
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        if self._watcher is None:
            return
        signal.signal(signal.SIGINT, self._previous)
        self._done = True


def _progress_bar(mode: str, total: int):
    enabled = mode == "on" or (mode == "auto" and sys.stderr.isatty())
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)


def _csv_row(path: str, response, reference: str | None = None) -> dict:
    row = {"path": path, "quality_passed": response.quality.passed, "reasons": ";".join(reason_names(response.quality))}
    match = response.match if isinstance(response, pb.CompareFacesResponse) or (
        isinstance(response, pb.VerifyResponse) and response.HasField("match")) else None
    if match is not None:
        row.update(
            reference=reference or "",
            match_status=pb.MatchStatus.Name(match.status).removeprefix("MATCH_STATUS_"),
            match_decision=pb.MatchDecision.Name(match.decision).removeprefix("MATCH_DECISION_"),
            is_match=match.is_match,
            similarity=f"{match.similarity:.6f}",
            match_threshold=f"{match.threshold:.6f}",
            match_profile=match.profile,
            matcher_version=match.model_version,
            reference_reasons=";".join(reason_names(match.reference_quality)),
        )
    if isinstance(response, pb.CompareFacesResponse):
        row["status"] = match_outcome(match).upper()
    elif isinstance(response, pb.VerifyResponse):
        row.update(
            status=pb.VerifyStatus.Name(response.status).removeprefix("VERIFY_STATUS_"),
            is_live=response.is_live,
            liveness_score=f"{response.liveness_score:.6f}",
            confidence=f"{response.confidence:.6f}",
            threshold=f"{response.threshold:.6f}",
            model_version=response.model_version,
            profile=response.profile,
            decision=pb.LivenessDecision.Name(response.decision).removeprefix("LIVENESS_DECISION_"),
        )
    else:
        row["status"] = "PASSED" if response.quality.passed else "QUALITY_FAILED"
    return row


class _ServerUnavailable(Exception):
    pass


def _read(source: Source, writer: ResultWriter) -> bytes | None:
    try:
        return source.read()
    except OSError as exc:
        writer.error(source.name, f"cannot read file: {exc.strerror or exc}")
        return None


def run_unary(client: LivenessClient, args, sources: Iterator[Source], writer: ResultWriter,
              interrupts: Interrupts | None = None, reference: bytes | None = None) -> None:
    reference_path = getattr(args, "reference", None)
    for source in sources:
        if interrupts is not None:
            interrupts.check()
        image = _read(source, writer)
        if image is None:
            continue
        request_id = Path(source.name).name
        try:
            if args.command == "verify":
                response = client.verify(
                    image, enable_quality_checks=not args.no_quality, request_id=request_id, profile=args.profile,
                    reference_image=reference, match_profile=args.match_profile,
                )
            elif args.command == "compare":
                response = client.compare_faces(image, reference, request_id=request_id, profile=args.profile)
            else:
                response = client.check_quality(image, request_id=request_id)
        except LivenessError as exc:
            if interrupts is not None:
                interrupts.check()  # the call was cancelled by Ctrl-C: not this image's error
            writer.error(source.name, f"{exc.code.name}: {exc.details}", exc.code.name)
            if exc.code in _FATAL_CODES:
                raise _ServerUnavailable() from None
            continue
        writer.result(source.name, response, reference_path)


def _verify_request(args, image: bytes, request_id: str, reference: bytes | None) -> pb.VerifyRequest:
    return pb.VerifyRequest(
        image=image, enable_quality_checks=not args.no_quality, request_id=request_id, profile=args.profile,
        reference_image=reference or b"", match_profile=args.match_profile,
    )


def run_stream(client: LivenessClient, args, sources: Iterator[Source], writer: ResultWriter,
               interrupts: Interrupts | None = None, reference: bytes | None = None) -> None:
    """One VerifyStream; images are read lazily as gRPC pulls requests (in order)."""
    names: dict[str, str] = {}
    failed: list[Exception] = []

    def requests() -> Iterator[pb.VerifyRequest]:
        index = 0
        try:
            for source in sources:
                if interrupts is not None and interrupts.requested.is_set():
                    return
                image = _read(source, writer)
                if image is None:
                    continue
                names[str(index)] = source.name
                yield _verify_request(args, image, str(index), reference)
                index += 1
        except StorageError as error:  # listing S3 failed: raised after the stream, not inside gRPC
            failed.append(error)

    try:
        for response in client.verify_stream(requests()):
            if interrupts is not None:
                interrupts.check()
            name = names.pop(response.request_id)
            if response.HasField("error"):
                code = grpc.StatusCode.__members__.get(_code_name(response.error.code), grpc.StatusCode.UNKNOWN)
                writer.error(name, f"{code.name}: {response.error.message}", code.name)
            else:
                writer.result(name, response.result, args.reference)
    except LivenessError as exc:
        if interrupts is not None:
            interrupts.check()  # the stream was cancelled by Ctrl-C
        writer.error("(stream)", f"{exc.code.name}: {exc.details}", exc.code.name)
        if exc.code in _FATAL_CODES:
            raise _ServerUnavailable() from None
    if failed:
        raise failed[0]


def run_streams(clients: list[LivenessClient], args, sources: Iterator[Source], writer: ResultWriter,
                interrupts: Interrupts | None = None, reference: bytes | None = None) -> None:
    """One VerifyStream per client (``--connections``), images dealt to whichever has room; an
    image whose stream fails (UNAVAILABLE: its backend went away) goes out again on another."""
    items = (Item(index, source.name, source.read) for index, source in enumerate(sources))
    batch = StreamBatch(
        clients, items, lambda item, image, request_id: _verify_request(args, image, request_id, reference),
        on_result=lambda item, response: writer.result(item.name, response, args.reference),
        on_error=lambda item, message, code: writer.error(item.name, message, code),
        stop=interrupts.requested if interrupts is not None else None,
    )
    try:
        batch.run()
        if batch.streams_failed:
            writer.note(f"{batch.streams_failed} of {batch.streams_opened} streams failed and were replaced; "
                        f"{batch.resent} images were sent again")
    except BatchUnavailable as exc:
        if interrupts is not None:
            interrupts.check()
        writer.error("(stream)", f"{exc.code.name}: {exc.details}", exc.code.name)
        raise _ServerUnavailable() from None
    except SourceFailed as exc:
        raise exc.error from None
    if interrupts is not None:
        interrupts.check()


def _code_name(number: int) -> str:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.name
    return "UNKNOWN"


def _sources(locations: list[str]) -> tuple[Iterator[Source], int | None]:
    """The images to send, lazily, and how many (None while an S3 listing is still to come)."""
    if any(is_s3(location) for location in locations):
        return iter_sources(locations), None
    found = list(iter_sources(locations))
    return iter(found), len(found)


def _first(sources: Iterator[Source]) -> Iterator[Source] | None:
    """``sources`` unchanged, or None when it holds nothing (it reads the first one ahead)."""
    for first in sources:
        return itertools.chain([first], sources)
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    connections = getattr(args, "connections", 1)
    if connections > 1 and not args.stream:
        print("ekyc-client: --connections needs --stream", file=sys.stderr)
        return EXIT_ERROR
    try:
        clients = [
            LivenessClient(
                args.server, timeout=args.timeout, api_key=args.api_key, tls_ca=args.tls_ca,
                tls_cert=args.tls_cert, tls_key=args.tls_key, tls_server_name=args.tls_server_name,
                own_connection=connections > 1,  # N connections for a load balancer to place
            )
            for _ in range(connections)
        ]
    except LivenessError as exc:
        print(f"ekyc-client: {exc.details}", file=sys.stderr)
        return EXIT_ERROR
    client = clients[0]
    output: Output | None = None
    try:
        with contextlib.ExitStack() as stack:
            for each in clients:
                stack.enter_context(each)
            if args.command == "health":
                return _health(client)
            if args.command == "verify" and args.match_profile and not args.reference:
                print("ekyc-client: --match-profile needs --reference", file=sys.stderr)
                return EXIT_ERROR
            reference = None
            if getattr(args, "reference", None):
                try:
                    reference = Path(args.reference).read_bytes()
                except OSError as exc:
                    print(f"ekyc-client: cannot read reference {args.reference}: {exc.strerror or exc}", file=sys.stderr)
                    return EXIT_ERROR
            try:
                sources, total = _sources([args.image] if args.command == "compare" else args.images)
                sources = _first(sources)
                if sources is None:
                    print("ekyc-client: no JPEG, PNG or WebP files found", file=sys.stderr)
                    return EXIT_ERROR
                output = Output(args.output) if args.output else None
                writer = ResultWriter(args, total=total, output=output)
            except StorageError as exc:
                print(f"ekyc-client: {exc}", file=sys.stderr)
                return EXIT_ERROR
            except OSError as exc:
                print(f"ekyc-client: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
                return EXIT_ERROR
            batch = args.output is not None or getattr(args, "stream", False)
            try:
                with Interrupts(*clients) as interrupts:
                    if connections > 1:
                        run_streams(clients, args, sources, writer, interrupts, reference)
                    elif getattr(args, "stream", False):
                        run_stream(client, args, sources, writer, interrupts, reference)
                    else:
                        run_unary(client, args, sources, writer, interrupts, reference)
            except _ServerUnavailable:
                writer.close()
                print(f"ekyc-client: stopping: server {args.server} is unavailable", file=sys.stderr)
                return EXIT_ERROR
            except StorageError as exc:
                writer.close()
                print(f"ekyc-client: stopping: {exc}; {writer.summary()}", file=sys.stderr)
                return EXIT_ERROR
            except KeyboardInterrupt:
                writer.close()
                print(f"ekyc-client: interrupted; {writer.summary()}", file=sys.stderr)
                return EXIT_INTERRUPTED
            writer.close()
            if output is not None:
                try:
                    output.commit()
                except StorageError as exc:
                    print(f"ekyc-client: {exc}", file=sys.stderr)
                    return EXIT_ERROR
            if batch:
                print(f"ekyc-client: {writer.summary()}", file=sys.stderr)
            return exit_code(writer.counts)
    except KeyboardInterrupt:
        print("ekyc-client: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if output is not None:
            output.discard()  # an s3:// output not uploaded: no partial object, no temporary file


def _health(client: LivenessClient) -> int:
    try:
        status = client.health()
    except LivenessError as exc:
        print(f"ekyc-client: health check failed: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(status)
    return EXIT_OK if status == "SERVING" else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
