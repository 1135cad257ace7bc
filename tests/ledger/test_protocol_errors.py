"""``ledger.protocol.errors``: the ``{"code", "message"}`` body of a refusal."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.protocol.errors import ErrorBody
from ledger.records import RecordFormatError


def test_an_error_body_parses_and_ignores_extra_fields() -> None:
    body = {"code": "quote_mismatch", "message": "m", "field": "amount"}
    assert ErrorBody.from_dict(body) == ErrorBody("quote_mismatch", "m")
    assert ErrorBody("c", "m").to_dict() == {"code": "c", "message": "m"}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        pytest.param("oops", "", id="not-an-object"),
        pytest.param({"message": "m"}, "code", id="missing-code"),
        pytest.param({"code": "c", "message": 5}, "message", id="message-not-text"),
        pytest.param({"detail": "Not Found"}, "code", id="another-framework"),
    ],
)
def test_anything_else_is_refused_naming_the_field(body: Any, path: str) -> None:
    with pytest.raises(RecordFormatError) as refused:
        ErrorBody.from_dict(body)
    assert refused.value.path == path
