"""The ``sm2-sm3`` HTTP signature algorithm and SM3 ``Content-Digest`` as the
server's authentication uses them: the one definition is
:mod:`ledger.http_signatures`, shared with the SDK. See ``docs/api-auth.md``.
"""

from __future__ import annotations

from typing import Final

from ledger.http_signatures import (
    ALGORITHM_ID,
    COVERED_COMPONENTS,
    DIGESTS,
    SM2_SM3,
    BodyDigest,
    DigestFormatError,
    content_digest,
    digest_matches,
    parse_content_digest,
)

__all__ = [
    "ALGORITHM_ID",
    "DIGESTS",
    "REQUIRED_COMPONENTS",
    "SM2_SM3",
    "BodyDigest",
    "DigestFormatError",
    "content_digest",
    "digest_matches",
    "parse_content_digest",
]

REQUIRED_COMPONENTS: Final = COVERED_COMPONENTS
"""What a request's signature must cover: what the SDK signs."""
