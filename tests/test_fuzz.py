"""Fuzz the decode + quality entry point: any bytes give a result or an InvalidImageError, nothing else.

CI runs a bounded number of examples; run longer with
    EKYC_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz.py -q
Every input that ever crashed the gate is kept in tests/fuzz_regressions/ (one file each,
as found) and replayed below.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import encode
from ekyc.quality.errors import InvalidImageError
from ekyc.quality.gate import QualityGate
from ekyc.server.config import load_config

EXAMPLES = int(os.environ.get("EKYC_FUZZ_EXAMPLES", "120"))
REGRESSIONS = Path(__file__).with_name("fuzz_regressions")


@pytest.fixture(scope="module")
def gate():
    with QualityGate(load_config(environ={}).quality) as gate:
        yield gate


def check(gate: QualityGate, data: bytes) -> None:
    try:
        rgb = gate.decode(data)
    except InvalidImageError as error:
        assert str(error)
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
    result = gate.assess(rgb)
    assert result.passed == (not result.reasons)


@pytest.fixture(scope="module")
def seeds(face_rgb) -> list[bytes]:
    small = face_rgb[::3, ::3].copy()
    return [encode(small, "JPEG"), encode(small, "PNG"), encode(small[:, :, 0].copy(), "PNG")]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_random_bytes(gate, data):
    check(gate, data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 2),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.floats(0.05, 1.0),
)
def test_mutated_real_images(gate, seeds, which, edits, cut):
    """Byte flips and truncation of real JPEG/PNG files: the hard cases for a decoder."""
    data = bytearray(seeds[which])
    for position, value in edits:
        data[int(position * (len(data) - 1))] = value
    check(gate, bytes(data[: max(1, int(len(data) * cut))]))


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.bin")), ids=lambda p: p.name)
def test_regressions(gate, path):
    check(gate, path.read_bytes())
