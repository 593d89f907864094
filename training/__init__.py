"""Training, calibration, evaluation and publishing of the liveness (print/replay spoof) model.

``ekyc-train`` (``training/cli.py``, the steps in ``training/steps.py``) runs the pipeline one step at a time:
``split -> crops -> train -> export (+ calibrate) -> evaluate -> publish`` (``ekyc-train all``
does the first five). Every stage shares the server's preprocessing: ``ekyc.quality.decode_image``,
the server's face search and main-face crop (``ekyc.quality.face_search``: ``FaceFinder`` and
``crop_main_face``) with the ``CropRule`` stored in the model metadata; normalisation lives inside the exported ONNX graph; evaluation scores through
``ekyc.models.liveness.LivenessModel`` (ONNX Runtime).

Modules: ``data`` (loaders for the shared manifest, CelebA-Spoof and live/spoof folders;
subject-disjoint splits), ``crops`` (the crop cache), ``augment`` (augmentations and print/replay
synthesis), ``model``/``train`` (torchvision backbones, the training loop), ``metrics``
(ISO/IEC 30107-3 metrics and intervals), ``calibrate`` (operating points and review band),
``baselines`` (trivial single-feature scores), ``evaluate``/``plots`` (reports), ``export``
(ONNX + metadata) and ``publish`` (S3).

``data``, ``metrics``, ``calibrate``, ``crops``, ``baselines`` and ``evaluate`` need no torch;
``model``, ``train`` and ``export`` need the ``train`` extra (torch, torchvision, onnx);
``publish`` needs boto3.
"""
