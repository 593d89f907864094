"""Which files are images, and walking folders for them (stdlib only: the client uses it).

The suffixes are those of the formats the server decodes (``ekyc.quality.decode``:
JPEG, PNG and WebP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})


def is_image_file(path: Path) -> bool:
    """A regular file whose suffix is an image format's."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def expand_paths(arguments: Iterable[str | Path]) -> Iterator[str]:
    """Files as given (whatever their suffix: the caller reports what it cannot read);
    folders walked recursively, sorted, for image files."""
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if is_image_file(child):
                    yield str(child)
        else:
            yield str(argument)
