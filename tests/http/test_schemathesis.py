"""Schemathesis against the service's own ``/openapi.json``: whatever the schema lets a caller send, and whatever
it forbids, the server answers without a 5xx and with a status, content type, headers and body its schema
declares.

The schema is read from the live server (conftest's ``server_url``), not from ``create_app`` in-process, so the
test sees exactly what a client generator would. Each operation is fuzzed with schema-valid ("positive") and
schema-breaking ("negative") requests, 25 examples each, no deadline and no example database, so the whole file
runs in well under a minute on a loaded 2-core machine.

Why not ``@schema.parametrize()`` with ``schemathesis.pytest.from_fixture``: its lazy loader reads
``Function._nodeid``, which pytest 9.2 no longer has. Driving hypothesis from ``APIOperation.as_strategy`` is
the same generation and the same checks, with no dependency on pytest internals.

The checks are chosen, not the defaults: ``positive_data_acceptance`` would demand a 2xx for any bytes the
schema calls a ``binary`` file, but random bytes are not an image and 400 ``bad_image`` is the documented
answer; the API-key checks need ``DEEPFER_API_KEYS``, which this server does not set.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Negative examples need something to break: only the two image routes take a body and query parameters.
TAKES_INPUT = [("POST", "/predict"), ("POST", "/predict/batch")]
OPERATIONS = [
    *TAKES_INPUT,
    ("GET", "/model"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/admin/reload"),
]
CASES = [
    *[pytest.param(method, path, GenerationMode.POSITIVE, id=f"{method} {path}") for method, path in OPERATIONS],
    *[
        pytest.param(method, path, GenerationMode.NEGATIVE, id=f"{method} {path} negative")
        for method, path in TAKES_INPUT
    ],
]
EXAMPLES_PER_MODE = 25


@pytest.fixture(scope="module")
def api_schema(server_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server_url}/openapi.json")


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One keep-alive connection pool for all examples: a fresh TCP connection each would dominate the run."""
    with requests.Session() as http:
        yield http


def test_the_fuzzed_operations_are_all_the_schema_has(api_schema: schemathesis.BaseSchema) -> None:
    """Guards the test below: a route added to the service but not to OPERATIONS would escape the fuzzing."""
    found = {(result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_every_operation_conforms_to_its_schema(
    api_schema: schemathesis.BaseSchema,
    session: requests.Session,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(session=session, checks=CHECKS, timeout=30)

    conforms()
