"""LivenessClient and the ekyc-client command line; needs only grpcio and protobuf."""

from ekyc.client.client import DEFAULT_TARGET, LivenessClient, LivenessError

__all__ = ["DEFAULT_TARGET", "LivenessClient", "LivenessError"]
