"""Errors of the face library: an image the caller sent cannot be used (gRPC INVALID_ARGUMENT)."""

from ekyc.errors import EkycError


class InvalidImageError(EkycError):
    """The request's image cannot be used (the caller must send another)."""


class ImageDecodeError(InvalidImageError):
    """The bytes are not a decodable JPEG, PNG or WebP image."""


class ImageTooLargeError(InvalidImageError):
    """The image exceeds a configured size limit."""
