"""What routes receive through ``Depends``: the typed state, the keys checked, the query options parsed.

``async`` although none of them awaits: FastAPI runs a plain ``def`` dependency on a worker thread, and that hop
per request cost more CPU than the whole dependency (profiled under load).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from deepfer.engine.pipeline import Options
from deepfer.errors import BadRequest, Forbidden, Unauthorized
from deepfer.server.state import ServiceState, service_state

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")
# Its own scheme in the schema: the admin token is another credential than the API keys sent the same way.
_admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminToken", description="Authorization: Bearer <DEEPFER_ADMIN_TOKEN>"
)


async def state(request: Request) -> ServiceState:
    return service_state(request.app)


State = Annotated[ServiceState, Depends(state)]


async def require_api_key(
    request: Request,
    service: State,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """Accept any configured key, compared in constant time against every key (no early exit to time).

    Every credential sent must be valid: a wrong or malformed ``Authorization`` beside a right ``X-API-Key`` is
    refused, so a client never learns that one of its credentials is ignored (Schemathesis' ``ignored_auth``).
    """
    keys = service.settings.api_keys
    if not keys:
        return
    sent = [api_key] if api_key is not None else []
    if "authorization" in request.headers:
        if bearer is None:
            raise Unauthorized("the Authorization header must be 'Bearer <key>'")
        sent.append(bearer.credentials)
    if not sent:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if not all(key_matches(given, keys) for given in sent):
        raise Unauthorized("invalid API key")


def key_matches(given: str, keys: list[SecretStr]) -> bool:
    """``given`` is one of ``keys``, compared in constant time against every key (no early exit to time); also
    WS /stream's check of the key in its first message."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given.encode(), key.get_secret_value().encode())
    return matched


async def require_admin_token(
    service: State, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)]
) -> None:
    """Admin routes take only the admin token, never an API key: a client that may predict may not reload."""
    token = service.settings.admin_token
    if token is None:
        raise Forbidden("admin routes are off: set DEEPFER_ADMIN_TOKEN to use them")
    given = bearer.credentials if bearer else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Unauthorized("admin routes need 'Authorization: Bearer <admin token>'")


#: The query parameters of the prediction routes, as ``predict_options`` declares them.
PREDICT_PARAMETERS = ("detect", "max_faces", "min_face_size", "min_score", "min_sharpness")


async def predict_options(
    request: Request,
    service: State,
    *,
    detect: Annotated[bool, Query(description="false: the whole image is one FER-framed face, as in FER2013")] = True,
    max_faces: Annotated[int | None, Query(ge=1, description="at most this many faces, largest first")] = None,
    min_face_size: Annotated[int, Query(ge=0, description="ignore faces whose box is smaller (pixels)")] = 0,
    min_score: Annotated[
        float | None,
        Query(
            ge=0,
            le=1,
            description="ignore faces the detector scored lower (detection_score, 0..1); the detector's own "
            "threshold, DEEPFER_DETECTION_SCORE_THRESHOLD, is the default and the floor",
        ),
    ] = None,
    min_sharpness: Annotated[
        float | None,
        Query(
            ge=0,
            description="ignore faces less sharp (quality.sharpness); default DEEPFER_MIN_FACE_SHARPNESS, "
            "0 keeps blurred faces",
        ),
    ] = None,
) -> Options:
    """The options, or 400 naming an unknown parameter: a typo (``?min_scor=0.5``) must not pass without a word."""
    if unknown := sorted(set(request.query_params) - set(PREDICT_PARAMETERS)):
        raise BadRequest(f"unknown query parameter(s) {', '.join(unknown)}; accepted: {', '.join(PREDICT_PARAMETERS)}")
    limit = service.settings.max_faces
    return Options(
        detect=detect,
        max_faces=min(max_faces or limit, limit),
        min_face_size=min_face_size,
        min_score=min_score or 0.0,
        min_sharpness=min_sharpness,
    )
