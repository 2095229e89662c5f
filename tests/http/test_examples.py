"""The examples people read (the OpenAPI example in /docs, the README's sample answer) are real answers.

``service/deepfer/examples/predict.json`` is what the live service answers for a committed scene, rounded so that
harmless float noise does not fail the test; when the model changes, regenerate it with
``DEEPFER_UPDATE_EXAMPLES=1 pytest tests/http/test_examples.py`` and paste its first face into the README.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import httpx

from deepfer.wire import PREDICT_EXAMPLE
from tests.imaging import DATA

REPO = DATA.parents[1]
SCENE = DATA / "scenes" / "scene_0000.jpg"


def rounded(answer: dict[str, Any]) -> dict[str, Any]:
    """Probabilities to 3 decimals and landmarks to 0.1 px: what a reader needs, and stable across runs."""
    for face in answer["faces"]:
        face["probabilities"] = {name: round(value, 3) for name, value in face["probabilities"].items()}
        face["landmarks"] = {
            name: {axis: round(value, 1) for axis, value in point.items()} for name, point in face["landmarks"].items()
        }
    return answer


def readme_sample() -> dict[str, Any]:
    """The README's JSON block under "The answer for ``scene_0000.jpg``"."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"The answer for\s.*?```json\n(.*?)```", text, re.DOTALL)
    assert found, "the README's sample answer is missing"
    sample: dict[str, Any] = json.loads(found.group(1))
    return sample


def test_openapi_example_is_the_live_answer(client: httpx.Client) -> None:
    answer = client.post("/predict", files={"file": SCENE.read_bytes()})
    assert answer.status_code == 200, answer.text
    live = rounded(answer.json())
    if os.environ.get("DEEPFER_UPDATE_EXAMPLES"):
        PREDICT_EXAMPLE.write_text(json.dumps(live, indent=2) + "\n", encoding="utf-8")
    assert json.loads(PREDICT_EXAMPLE.read_text(encoding="utf-8")) == live
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["PredictResponse"]["examples"] == [live]


def test_readme_sample_is_the_example() -> None:
    example = json.loads(PREDICT_EXAMPLE.read_text(encoding="utf-8"))
    assert readme_sample() == {**example, "faces": example["faces"][:1]}
