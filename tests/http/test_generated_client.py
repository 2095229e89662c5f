"""A client generated from the live /openapi.json by openapi-python-client works against the live server.

This is what an integrator does first with the schema, so it tests what schemathesis cannot: operation IDs that
become readable function names, tags that become modules, the emotion enum, the multipart and JSON bodies, and
bearer authentication, all through code nobody here wrote.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from deepfer.contract import LABELS
from tests.imaging import DATA

SCENE = DATA / "scenes" / "scene_0000.jpg"
PACKAGE = "deepfer_generated_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="module")
def generated(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], ModuleType]]:
    """The generated package on sys.path; yields ``load("api.prediction.predict")`` for its modules."""
    work = tmp_path_factory.mktemp("openapi-client")
    schema = work / "openapi.json"
    schema.write_text(json.dumps(httpx.get(f"{server_url}/openapi.json").json()), encoding="utf-8")
    # The generator formats its output with ruff, which it finds on PATH (this venv's bin).
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(GENERATOR), "generate", "--path", str(schema), "--output-path", str(work / PACKAGE)]
    done = subprocess.run(
        [*command, "--meta", "none"], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and "Warning" not in done.stdout, done.stdout + done.stderr
    sys.path.insert(0, str(work))
    try:
        yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    finally:
        sys.path.remove(str(work))
        for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
            del sys.modules[name]


def test_generated_client_predicts_like_the_api(generated: Callable[[str], ModuleType], server_url: str) -> None:
    client_module = generated("client")
    with client_module.Client(base_url=server_url, timeout=httpx.Timeout(30)) as client:
        check_predict_and_model(client, server_url, generated)


def check_predict_and_model(client: Any, server_url: str, generated: Callable[[str], ModuleType]) -> None:
    types, models = generated("types"), generated("models")
    predict, get_model = generated("api.prediction.predict"), generated("api.model.get_model")
    upload = types.File(payload=io.BytesIO(SCENE.read_bytes()), file_name=SCENE.name, mime_type="image/jpeg")
    answer = predict.sync(client=client, body=models.PredictFilesBody(file=upload), max_faces=2)
    expected = httpx.post(f"{server_url}/predict?max_faces=2", files={"file": SCENE.read_bytes()}, timeout=30).json()
    assert isinstance(answer, models.PredictResponse)
    assert answer.to_dict() == expected
    assert sorted(member.value for member in models.Emotion) == sorted(LABELS)  # the generator sorts them
    assert all(isinstance(face.emotion, models.Emotion) for face in answer.faces)

    described = get_model.sync(client=client)
    assert described.version == answer.model.version and described.labels == list(LABELS)


def test_generated_client_sends_a_bearer_key(
    generated: Callable[[str], ModuleType], live_server: Callable[..., Any]
) -> None:
    client_module, models = generated("client"), generated("models")
    predict = generated("api.prediction.predict")
    body = models.PredictJsonPredictJSONRequest
    with live_server(api_keys=["generated-key"]) as url:
        image = body(image=base64.b64encode(SCENE.read_bytes()).decode())
        with client_module.Client(base_url=url) as anonymous:
            refused = predict.sync_detailed(client=anonymous, body=image)
        # Generated from the keyless session server's schema, which declares no 401 (nothing there checks a key):
        # the client hands the body back unparsed, in the one envelope.
        assert refused.status_code == 401
        assert json.loads(refused.content)["error"]["code"] == "unauthorized"
        keyed = client_module.AuthenticatedClient(base_url=url, token="generated-key", timeout=httpx.Timeout(30))
        with keyed:
            answer = predict.sync(client=keyed, body=image)
        assert isinstance(answer, models.PredictResponse) and len(answer.faces) == 3
