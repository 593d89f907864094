"""Domain errors of the quality package; the server maps them to gRPC status codes."""


class EkycError(Exception):
    """Base class of every error the service reports to a caller."""


class InvalidImageError(EkycError):
    """The request's image cannot be used (the caller must send another)."""


class ImageDecodeError(InvalidImageError):
    """The bytes are not a decodable JPEG, PNG or WebP image."""


class ImageTooLargeError(InvalidImageError):
    """The image exceeds a configured size limit."""
