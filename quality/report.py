"""The gate's result as the contract's QualityReport: the one mapping, used by the server's
replies and by ``ekyc-quality check --json`` (which prints what ``ekyc-client`` prints)."""

from __future__ import annotations

import dataclasses

from ekyc.quality.rules import QualityResult
from ekyc.v1 import liveness_pb2 as pb


def quality_report(result: QualityResult) -> pb.QualityReport:
    """The proto QualityReport; every QualityScores field maps to the proto field of its name."""
    report = pb.QualityReport(
        passed=result.passed,
        reasons=[pb.QualityReason.Value(f"QUALITY_REASON_{reason.value}") for reason in result.reasons],
        scores=pb.QualityScores(**dataclasses.asdict(result.scores)),
        image_width=result.image_width,
        image_height=result.image_height,
    )
    if result.face is not None:
        face = result.face
        report.face_box.CopyFrom(pb.FaceBox(x=face.x, y=face.y, width=face.width, height=face.height))
    return report
