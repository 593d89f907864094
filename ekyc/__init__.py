"""ekyc: a gRPC service that gates selfie quality and detects spoofs (print, replay) on a CPU.

Sub-packages: ``ekyc.v1`` (generated messages and stubs), ``ekyc.client``, ``ekyc.quality``
(the face library), ``ekyc.models`` (model wrappers), ``ekyc.server``, ``ekyc.training``.
The modules of this folder are the shared kernel every layer may use: ``errors``, ``paths``,
``imagefiles``, ``argparsing``, ``settings``, ``ort_session``, ``model_store``
(docs/architecture.md).
"""

__version__ = "0.1.0"
