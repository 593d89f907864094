"""Where the repository keeps what ships beside the code (stdlib only).

``PROJECT_ROOT`` is the folder that holds ``ekyc/``, ``server/``, ``models/`` ...: the
repository in a checkout or an editable install. An installed wheel has no ``models/`` of its
own: its configuration names the model files instead (docker/Dockerfile sets the
``EKYC_*_PATH`` variables).
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODELS = PROJECT_ROOT / "models"
DEFAULT_MODEL = BUNDLED_MODELS / "liveness.onnx"
# MediaPipe's face detector and face mesh models, converted to ONNX (models/mediapipe/README.md).
MEDIAPIPE_MODELS = BUNDLED_MODELS / "mediapipe"
DEFAULT_DETECTOR = MEDIAPIPE_MODELS / "face_detector.onnx"
# The face matcher: SFace converted for ONNX Runtime, its metadata beside it (models/face-match.md).
DEFAULT_MATCHER = BUNDLED_MODELS / "face-match" / "sface.onnx"
# Caches, runs and reports of training and benchmarks (ignored by git).
DEFAULT_CACHE = PROJECT_ROOT / ".cache"
