"""Content upload and delivery: providers upload a listing version's bytes
(streamed, SM3-checked, SM4-GCM at rest in :mod:`exchange.content`), buyers of
an order receive an envelope (the content key SM2-encrypted to them, logged as
``delivery.issued`` by the exchange) and download the ciphertext with HTTP
Range. See ``docs/custody.md``.

:mod:`exchange.delivery.upload` (upload checks and streaming),
:mod:`exchange.delivery.service` (envelopes, downloads),
The app's content store is opened by :mod:`exchange.api.deps`.
"""
