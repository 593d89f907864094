"""ekyc: a gRPC service that gates selfie quality and detects spoofs (print, replay) on a CPU.

Sub-packages: ``ekyc.v1`` (generated messages and stubs), ``ekyc.client``,
``ekyc.quality``, ``ekyc.server``, ``ekyc.training``.
"""

__version__ = "0.1.0"
