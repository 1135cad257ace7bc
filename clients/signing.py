"""Signing HTTP requests for the exchange: RFC 9421 HTTP Message Signatures with
the ``sm2-sm3`` algorithm, and RFC 9530 ``Content-Digest`` with SM3, both
defined once in :mod:`ledger.http_signatures` (re-exported here).

:class:`SM2RequestSigner` is an :class:`httpx.Auth`: pass it as ``auth=`` to a
``httpx.Client``/``AsyncClient`` (or per request). It signs the exact bytes
httpx sends. A streamed body (an iterator or file) cannot be hashed before it
is sent without reading it twice, so for those set ``Content-Digest`` yourself
and the signer covers that header as given (it never recomputes it, nor reads
the body): :func:`content_digest_of_file` streams a file through SM3, and
:func:`content_digest_of_sm3` formats a digest already computed (the SDK's
upload hashes the file once and sends that digest, which the exchange checks
while it receives the bytes). A streamed request without a Content-Digest is
refused with :class:`SigningError` rather than sent unsigned.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Generator
from typing import Any

import httpx

from ledger.http_signatures import (
    ALGORITHM_ID,
    COVERED_COMPONENTS,
    SIGNATURE_LABEL,
    SM2_SM3,
    OneKeyResolver,
    SM3MessageSigner,
    content_digest,
    content_digest_of_file,
    content_digest_of_sm3,
    der_to_raw,
    raw_to_der,
)
from ledger.sm2 import SM2PrivateKey

__all__ = [
    "ALGORITHM_ID",
    "COVERED_COMPONENTS",
    "SIGNATURE_LABEL",
    "SM2_SM3",
    "SM2RequestSigner",
    "SigningError",
    "content_digest",
    "content_digest_of_file",
    "content_digest_of_sm3",
    "der_to_raw",
    "raw_to_der",
]


class SigningError(Exception):
    """A request cannot be signed (e.g. a streamed body without a Content-Digest)."""


class SM2RequestSigner(httpx.Auth):
    """Signs each request with ``key`` (RFC 9421, ``sm2-sm3``; see the module docstring).

    ``clock`` (seconds since the epoch) and ``nonce`` (a factory) exist for
    tests; by default the current time and 128 random bits are used.
    """

    requires_request_body = False  # streamed bodies stay streamed; see sign()

    def __init__(
        self,
        key: SM2PrivateKey,
        *,
        clock: Any = None,
        nonce: Any = None,
    ) -> None:
        self.key = key
        self.key_id = key.key_id()
        self._clock = clock or time.time
        self._nonce = nonce or (lambda: secrets.token_urlsafe(16))
        self._signer = SM3MessageSigner(
            signature_algorithm=SM2_SM3, key_resolver=OneKeyResolver(key)
        )

    def sign(self, request: httpx.Request) -> None:
        """Add ``Content-Digest`` (unless present), ``Signature-Input`` and ``Signature``.

        A ``Content-Digest`` already on the request is covered as given: the body
        is not read or hashed again (the precomputed path for streamed uploads;
        the server checks the digest against the bytes it receives)."""
        if "content-digest" not in request.headers:
            try:
                body = request.content
            except httpx.RequestNotRead:
                raise SigningError(
                    "a streamed request body cannot be signed: set its Content-Digest header "
                    "first (clients.signing.content_digest_of_file)"
                ) from None
            request.headers["Content-Digest"] = content_digest(body)
        created = int(self._clock())
        self._signer.sign(
            request,
            key_id=self.key_id,
            created=_utc(created),
            nonce=str(self._nonce()),
            label=SIGNATURE_LABEL,
            include_alg=True,
            covered_component_ids=COVERED_COMPONENTS,
            use_existing_digest=True,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request


def _utc(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
