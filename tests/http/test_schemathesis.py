"""Schemathesis against the service's own ``/openapi.json``: whatever the schema lets a caller send, and whatever
it forbids, the server answers without a 5xx and with a status, content type, headers and body its schema
declares.

The schema is read from the live server (conftest's ``server_url``), not from ``create_app`` in-process, so the
test sees exactly what a client generator would. Each operation is fuzzed with schema-valid ("positive") and
schema-breaking ("negative") requests, 25 examples each, no deadline and no example database, so the whole file
runs in well under a minute on a loaded 2-core machine.

The examples are the same on every run unless ``DEEPFER_FUZZ_EXPLORE=1`` (``tests/conftest.py``'s Hypothesis
profiles). A failure prints a ``curl`` command that reproduces it; a case worth keeping belongs in
``tests/http/test_bad_input.py``'s corpus.

Why not ``@schema.parametrize()`` with ``schemathesis.pytest.from_fixture``: its lazy loader reads
``Function._nodeid``, which pytest 9.2 no longer has. Driving hypothesis from ``APIOperation.as_strategy`` is
the same generation and the same checks, with no dependency on pytest internals.

Every check Schemathesis has runs (``checks=None``), against a server without keys and one with
``DEEPFER_API_KEYS`` and ``DEEPFER_ADMIN_TOKEN`` (where ``ignored_auth`` also sends each request without its key).
One check is configured, not dropped: ``positive_data_acceptance`` accepts 400, 413 and 415 besides 2xx, because the
schema can say "a binary file" but not "a JPEG, PNG, WebP or BMP within the limits": random bytes get the documented
400 ``bad_image``, a generated GIF 415 ``unsupported_format``, a huge declared canvas 413. ``negative_data_rejection``
also counts 413 as a rejection (too many form fields).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

API_KEY_FOR_TESTS = "schemathesis-client-key"
ADMIN_TOKEN_FOR_TESTS = "schemathesis-admin-token"
CHECKS_CONFIG = {
    "positive_data_acceptance": {"expected-statuses": ["2XX", "400", "413", "415"]},
    # Schemathesis' own list, with 413: a body of more form fields than max_form_fields is refused as too large.
    "negative_data_rejection": {
        "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
    },
}
CONFIG = SchemathesisConfig.from_dict({"checks": CHECKS_CONFIG})
# What a keyed client holds, by the schema's security scheme names.
KEYED_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": CHECKS_CONFIG,
        "auth": {
            "openapi": {
                "HTTPBearer": {"bearer": API_KEY_FOR_TESTS},
                "APIKeyHeader": {"api_key": API_KEY_FOR_TESTS},
                "AdminToken": {"bearer": ADMIN_TOKEN_FOR_TESTS},
            }
        },
    }
)
# Negative examples need something to break: only the two image routes take a body and query parameters.
TAKES_INPUT = [("POST", "/predict"), ("POST", "/predict/batch")]
OPERATIONS = [
    *TAKES_INPUT,
    ("GET", "/model"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]
# The admin route exists in the schema only where an admin token turns it on.
KEYED_OPERATIONS = [*OPERATIONS, ("POST", "/admin/reload")]


def cases(operations: list[tuple[str, str]]) -> list[Any]:
    return [
        *[pytest.param(method, path, GenerationMode.POSITIVE, id=f"{method} {path}") for method, path in operations],
        *[
            pytest.param(method, path, GenerationMode.NEGATIVE, id=f"{method} {path} negative")
            for method, path in TAKES_INPUT
        ],
    ]


EXAMPLES_PER_MODE = 25
FUZZ = settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def api_schema(server_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server_url}/openapi.json", config=CONFIG)


@pytest.fixture(scope="module")
def keyed(live_server: Any) -> Iterator[schemathesis.BaseSchema]:
    """A server with API keys and an admin token (docs opened on purpose), its schema with a keyed client's auth."""
    settings = {"api_keys": [API_KEY_FOR_TESTS], "admin_token": ADMIN_TOKEN_FOR_TESTS, "api_docs": True}
    with live_server(**settings) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json", config=KEYED_CONFIG)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One keep-alive connection pool for all examples: a fresh TCP connection each would dominate the run."""
    with requests.Session() as http:
        yield http


def test_the_fuzzed_operations_are_all_the_schema_has(api_schema: schemathesis.BaseSchema) -> None:
    """Guards the test below: a route added to the service but not to OPERATIONS would escape the fuzzing."""
    found = {(result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


def test_the_keyed_server_fuzzes_every_operation_too(keyed: schemathesis.BaseSchema) -> None:
    found = {(result.ok().method.upper(), result.ok().path) for result in keyed.get_all_operations()}
    assert found == set(KEYED_OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), cases(OPERATIONS))
def test_every_operation_conforms_to_its_schema(
    api_schema: schemathesis.BaseSchema,
    session: requests.Session,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(session=session, timeout=30)

    conforms()


@pytest.mark.parametrize(("method", "path", "mode"), cases(KEYED_OPERATIONS))
def test_every_operation_conforms_with_keys(
    keyed: schemathesis.BaseSchema,
    session: requests.Session,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    """As above, on the keyed server: the keyed routes declare their security, and enforce it."""
    operation = keyed[path][method]
    # Few examples: a reload swaps the models (a second each), and each keyed example costs a probe without a key.
    examples = 5 if path.startswith("/admin/") else EXAMPLES_PER_MODE

    @settings(FUZZ, max_examples=examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(session=session, timeout=30)

    conforms()


def test_the_schema_declares_only_the_security_the_service_enforces(
    api_schema: schemathesis.BaseSchema, keyed: schemathesis.BaseSchema
) -> None:
    open_paths = api_schema.raw_schema["paths"]
    assert not any("security" in op for ops in open_paths.values() for op in ops.values())
    assert "securitySchemes" not in api_schema.raw_schema.get("components", {})
    keyed_paths = keyed.raw_schema["paths"]
    assert keyed_paths["/predict"]["post"]["security"] and keyed_paths["/admin/reload"]["post"]["security"]
