"""Request authentication (RFC 9421 HTTP Message Signatures, ``sm2-sm3``) and
authorisation (roles, suspension). See ``docs/api-auth.md``.

:mod:`exchange.auth.verifier` (the signature checks and the nonce store),
:mod:`exchange.auth.authorisation` (suspension and roles). The FastAPI
dependencies that apply them to a request are in :mod:`exchange.api.deps`.
"""
