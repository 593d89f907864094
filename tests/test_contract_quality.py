"""The gate's reasons and scores and the proto agree name for name."""

from __future__ import annotations

import dataclasses

from ekyc.quality.gate import QualityReason, QualityScores
from ekyc.v1 import liveness_pb2 as pb


def test_every_score_the_gate_measures_has_a_proto_field():
    proto_fields = set(pb.QualityScores.DESCRIPTOR.fields_by_name)
    gate_fields = {f.name for f in dataclasses.fields(QualityScores)}
    assert gate_fields <= proto_fields, gate_fields - proto_fields


def test_every_gate_reason_has_a_proto_value():
    for reason in QualityReason:
        assert pb.QualityReason.Value(f"QUALITY_REASON_{reason.value}") > 0
