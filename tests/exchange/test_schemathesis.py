"""Property-based API test: schemathesis generates requests from the exchange's own
``/openapi.json`` for every operation (bounded examples, derandomized, positive and
negative data) against a real uvicorn, and fails on any 5xx, an undocumented
status code, a wrong content type or a response that does not match its
documented schema.

Requests are unsigned, so most authenticated operations answer 401: that still
exercises path, query, header and body parsing, the error handlers and the body
size limit on every route. (schemathesis' pytest plugin, ``from_fixture``, does
not work with this pytest, so the test drives hypothesis per operation itself.)"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from exchange.app import create_app
from exchange.settings import Settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}


def _exercise(
    operation: schemathesis.APIOperation[Any, Any, Any, Any], mode: GenerationMode
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=CHECKS, timeout=30)

    run()


def test_api_conforms_to_its_openapi(tmp_path: Path, live_server: Any) -> None:
    app = create_app(Settings(data_dir=tmp_path, sequencer_enabled=False))
    failures: list[str] = []
    operations = 0
    started = time.monotonic()
    with live_server(app) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result  # the schema itself is valid
            operation = result.ok()
            operations += 1
            for mode in EXAMPLES:
                try:
                    _exercise(operation, mode)
                except Unsatisfiable:  # nothing to negate: no parameters and no body
                    assert mode is GenerationMode.NEGATIVE, operation.label
                except (Exception, BaseExceptionGroup) as exc:  # collect all, then fail
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
    assert time.monotonic() - started < 300
