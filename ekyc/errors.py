"""The project's base errors, shared by every layer (stdlib only).

``EkycError`` is the base of every error the service reports to a caller: the server maps
each subclass to a gRPC status code in one place (``ekyc.server.errors.status_for``); any
other exception is an internal error. ``ModelLoadError`` is an operator's problem (a bad
model file, metadata or S3 location) and never reaches a caller.
"""


class EkycError(Exception):
    """Base class of every error the service reports to a caller."""


class ModelLoadError(Exception):
    """The model or its metadata is missing, unreadable or of the wrong shape."""
