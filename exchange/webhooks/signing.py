"""Signing webhook deliveries: the exchange signs each POST with its log key, as
an RFC 9421 HTTP message signature with the ``sm2-sm3`` algorithm — the same
algorithm and label participants sign their requests with (ledger.http_signatures)::

    Content-Digest: sm3=:<base64 SM3 of the body>:
    Shancheng-Event-Id: 42
    Signature-Input: shancheng=("@method" "@target-uri" "content-digest"
        "shancheng-event-id");created=<unix s>;nonce="<random>";keyid="<log key id>";
        alg="sm2-sm3"
    Signature: shancheng=:<base64 r||s>:

The receiver checks it with the log key published at
``/.well-known/shancheng/log-key`` (``clients.sdk.verify_webhook`` does every check).
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Callable
from typing import Final

import httpx

from ledger.http_signatures import (
    SIGNATURE_LABEL,
    SM2_SM3,
    OneKeyResolver,
    SM3MessageSigner,
    content_digest,
)
from ledger.sm2 import SM2PrivateKey

__all__ = ["EVENT_ID_HEADER", "WEBHOOK_COMPONENTS", "WebhookSigner"]

EVENT_ID_HEADER: Final = "Shancheng-Event-Id"
WEBHOOK_COMPONENTS: Final = ("@method", "@target-uri", "content-digest", "shancheng-event-id")
"""What a delivery's signature covers."""


class WebhookSigner:
    """Signs delivery requests with the log key (see the module docstring)."""

    def __init__(self, key: SM2PrivateKey, *, clock: Callable[[], float] = time.time) -> None:
        self.key_id = key.key_id()
        self._clock = clock
        self._signer = SM3MessageSigner(
            signature_algorithm=SM2_SM3, key_resolver=OneKeyResolver(key)
        )

    def sign(self, request: httpx.Request) -> None:
        """Add ``Content-Digest``, ``Signature-Input`` and ``Signature`` to ``request``
        (which carries its body and its ``Shancheng-Event-Id``)."""
        request.headers["Content-Digest"] = content_digest(request.content)
        self._signer.sign(
            request,
            key_id=self.key_id,
            created=datetime.datetime.fromtimestamp(int(self._clock()), tz=datetime.UTC),
            nonce=secrets.token_urlsafe(16),
            label=SIGNATURE_LABEL,
            include_alg=True,
            covered_component_ids=WEBHOOK_COMPONENTS,
            use_existing_digest=True,
        )
