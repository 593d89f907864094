"""Training, export and evaluation of the liveness (print/replay spoof) model.

The pipeline is ``split -> crops -> train -> export -> evaluate`` (``ekyc-train all``).
Every stage shares the server's preprocessing: ``ekyc.quality.decode_image``, the
MediaPipe ``FaceDetector`` and ``crop_face`` with the ``CropRule`` stored in the model
metadata; normalisation lives inside the exported ONNX graph.

``data``, ``metrics``, ``crops`` and ``evaluate`` need no torch; ``model``, ``train`` and
``export`` need the ``train`` extra (torch, torchvision, onnx).
"""
