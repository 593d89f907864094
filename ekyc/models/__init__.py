"""Model wrappers shared by the server and training: each an ONNX Runtime session plus the
metadata that describes its input, output and operating points. ``liveness``: the
print/replay spoof classifier. A new model (e.g. a face embedder) gets its own module here."""
