"""Registration takes only a strictly formed public key PEM (ledger.sm2's strict
parser): one block, nothing around it but whitespace, canonical base64 and DER."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_auth_support import error, running_exchange

from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey


def _registration(key: SM2PrivateKey, pem: str) -> dict[str, Any]:
    payload = {"display_name": "渝数", "role": "buyer", "public_key": pem}
    return {"record": sign_record(key, "participant.registered", payload).to_dict()}


@pytest.mark.parametrize(
    ("junk", "complaint"),
    [
        pytest.param(lambda pem: pem + "junk", "not one PEM block", id="trailing junk"),
        pytest.param(lambda pem: "hello\n" + pem, "not one PEM block", id="leading junk"),
        pytest.param(
            lambda pem: pem + SM2PrivateKey.generate().public_key().to_pem().decode(),
            "not base64",
            id="a second key after it",
        ),
    ],
)
def test_a_public_key_with_junk_around_it_is_refused_and_nothing_is_logged(
    live_server: Any, tmp_path: Path, junk: Any, complaint: str
) -> None:
    key = SM2PrivateKey.generate()
    pem = key.public_key().to_pem().decode()
    with running_exchange(live_server, tmp_path) as ex:
        http = ex.http()
        message = error(
            http.post("/participants", json=_registration(key, junk(pem))), 422, "invalid_payload"
        )
        assert message.startswith("payload.public_key: ") and complaint in message
        assert ex.log_size() == 0
        error(http.get(f"/participants/{key.key_id()}"), 404, "participant_not_found")
        # the same key, well formed (surrounding whitespace is fine), registers
        response = http.post("/participants", json=_registration(key, "\n" + pem + "\n"))
        assert response.status_code == 201, response.text
        assert ex.log_size() == 1
