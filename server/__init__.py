"""The gRPC server: configuration, the pipeline, the servicer and the ekyc-server entry point."""
