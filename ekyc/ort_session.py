"""The one way ekyc opens an ONNX Runtime session (detector, face mesh, liveness model)."""

from __future__ import annotations

from pathlib import Path


def cpu_session(model: Path | str | bytes, intra_op_threads: int = 1):
    """A CPU ONNX Runtime session for the compute pool: ``intra_op_threads`` per call (1: the
    server runs one image per core, see server/compute.py), no inter-op threads, only errors
    logged. Raises whatever ONNX Runtime raises; callers turn that into their typed error."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, intra_op_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
