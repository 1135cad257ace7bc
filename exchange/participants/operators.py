"""The exchange's operators: SM2 keys configured in settings, never registered.

They sign requests and records like participants, with the ``operator`` role;
authentication (:mod:`exchange.auth.verifier`) and participant state changes
(:mod:`exchange.participants.service`) both look them up here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from exchange.participants.models import ParticipantStatus, Principal, Role
from exchange.settings import Settings
from ledger.errors import KeyFormatError
from ledger.sm2 import SM2PublicKey

__all__ = ["Operators", "load_operator_keys", "operator_pems"]


class Operators(Mapping[str, SM2PublicKey]):
    """Key id → public key of each configured operator."""

    def __init__(self, keys: Mapping[str, SM2PublicKey]) -> None:
        self._keys = dict(keys)

    def __getitem__(self, key_id: str) -> SM2PublicKey:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def principal(self, key_id: str) -> Principal:
        """The operator ``key_id`` as an authenticated principal (``KeyError`` if unknown)."""
        key = self._keys[key_id]
        return Principal(
            key_id=key_id,
            role=Role.OPERATOR,
            status=ParticipantStatus.ACTIVE,
            display_name="operator",
            public_key_pem=key.to_pem().decode("ascii"),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Operators:
        """``operator_public_keys`` and the keys in ``operator_keys_file``."""
        return cls(load_operator_keys(operator_pems(settings)))


def operator_pems(settings: Settings) -> list[str]:
    pems = list(settings.operator_public_keys)
    if settings.operator_keys_file is not None:
        pems.append(settings.operator_keys_file.read_text(encoding="ascii"))
    return pems


def load_operator_keys(pems: Iterable[str]) -> dict[str, SM2PublicKey]:
    """Key id → key of the configured operators; each text may hold several PEM
    blocks. Raises :class:`ValueError` naming a block that is not an SM2 key."""
    keys: dict[str, SM2PublicKey] = {}
    for text in pems:
        blocks = re.findall(
            r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", text, flags=re.DOTALL
        )
        if not blocks:
            raise ValueError("an operator key entry holds no PUBLIC KEY PEM block")
        for block in blocks:
            try:
                key = SM2PublicKey.from_pem(block)
            except KeyFormatError as exc:
                raise ValueError(f"operator key is not an SM2 public key: {exc}") from None
            keys[key.key_id()] = key
    return keys
