"""HTTP ``Range`` (RFC 9110 §14) for ciphertext downloads: one byte range."""

from __future__ import annotations

import re
from typing import Final

from exchange.content.errors import RangeNotSatisfiableError

__all__ = ["content_range", "parse_range"]

_RANGE: Final = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The half-open byte range ``[start, end)`` a ``Range`` header asks for.

    ``None`` means "send the whole representation (200)": no header, a
    header that is not one well-formed ``bytes=`` range (RFC 9110 lets a
    server ignore those, multi-range included). Forms: ``bytes=a-b``
    (inclusive ``b``, clipped to the size), ``bytes=a-``, ``bytes=-n`` (the
    last ``n`` bytes). Raises :class:`RangeNotSatisfiableError` (416) when
    ``a`` is at or past the end, or for ``bytes=-0``.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiableError("empty suffix range", size)
        return max(0, size - suffix), size
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        return None  # last < first: syntactically invalid, ignored
    if start >= size:
        raise RangeNotSatisfiableError(f"range starts at {start}, the size is {size}", size)
    return start, min(end, size)


def content_range(start: int, end: int, size: int) -> str:
    """The ``Content-Range`` value of a 206 response for ``[start, end)``."""
    return f"bytes {start}-{end - 1}/{size}"
