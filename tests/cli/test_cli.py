"""The ``deepfer`` command as a user runs it: predict on files, serve failing fast, SIGTERM draining requests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cv2
import pytest

from tests.imaging import DATA
from tests.servers import REPO, deepfer_serve, free_port, wait_ready

SCENES = [DATA / "scenes" / "scene_0000.jpg", DATA / "scenes" / "scene_0002.jpg"]


def deepfer(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepfer.cli", *map(str, args)],
        check=False,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_predict_prints_json_for_every_image() -> None:
    result = deepfer("predict", "--format", "json", *SCENES, DATA / "images" / "no_face.jpg")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [len(answer["faces"]) for answer in answers] == [3, 3, 0]
    assert answers[0]["path"].endswith("scene_0000.jpg")


def test_predict_table_and_annotation(tmp_path: Path) -> None:
    out = tmp_path / "annotated.jpg"
    result = deepfer("predict", SCENES[0], "--annotate", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("scene_0000.jpg") == 3
    annotated = cv2.imread(str(out))
    assert annotated is not None and annotated.shape == (480, 640, 3)


def test_predict_reports_a_bad_file_and_exits_nonzero(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    result = deepfer("predict", text)
    assert result.returncode == 1
    assert "bad_image" in result.stdout


@pytest.mark.parametrize("content", [b"", b"garbage bytes", None])
def test_serve_refuses_a_bad_model_with_one_readable_line(tmp_path: Path, content: bytes | None) -> None:
    model = tmp_path / "emotion.onnx"
    if content is not None:
        model.write_bytes(content)
    result = deepfer("serve", "--port", str(free_port()), env={"DEEPFER_CLASSIFIER_PATH": str(model)})
    assert result.returncode == 2
    assert result.stderr.startswith("deepfer: cannot start:")
    assert str(model) in result.stderr and "Traceback" not in result.stderr


def half_sent_at_sigterm(log: Path, pause_s: float, env: dict[str, str] | None = None) -> tuple[bytes, int]:
    """``deepfer serve``, one raw ``POST /predict`` whose body is half sent when SIGTERM comes and the rest
    ``pause_s`` later: the answer's bytes and the exit status (the server's output goes to ``log``). The request is
    in flight at the signal by construction (waiting for work to show as under way raced a fast host)."""
    port = free_port()
    quiet = {"DEEPFER_ACCESS_LOG": "false", "DEEPFER_LOG_LEVEL": "warning"}
    with deepfer_serve(port, {**quiet, **(env or {})}, log) as server:
        wait_ready(f"http://127.0.0.1:{port}", server)
        image = SCENES[0].read_bytes()
        head = (
            f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(image)}\r\n\r\n"
        ).encode()
        half = len(image) // 2
        with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
            client.sendall(head + image[:half])
            time.sleep(0.3)  # the headers are read and the endpoint awaits the body
            server.send_signal(signal.SIGTERM)
            time.sleep(pause_s)
            with contextlib.suppress(OSError):  # the server may have closed it already: its answer is what counts
                client.sendall(image[half:])
            answer = b""
            while chunk := client.recv(65536):  # the drain closes the connection after the answer
                answer += chunk
        return answer, server.wait(timeout=30)


def split_answer(answer: bytes) -> tuple[bytes, bytes, Any]:
    """A raw HTTP/1.1 answer -> its status line, its headers (lower-cased) and its JSON body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, _, headers = head.partition(b"\r\n")
    return status_line, headers.lower(), json.loads(body)


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    """A request whose upload is still arriving at SIGTERM is read to its end and answered, then the process exits
    0 (service/deepfer/server/connections.py)."""
    answer, returncode = half_sent_at_sigterm(tmp_path / "serve.log", pause_s=0.3)
    status_line, headers, body = split_answer(answer)
    assert status_line == b"HTTP/1.1 200 OK", answer[:500]
    assert b"connection: close" in headers
    assert len(body["faces"]) == 3
    assert returncode == 0, (tmp_path / "serve.log").read_text()


def test_a_request_the_drain_runs_out_of_time_for_gets_a_503_to_retry(tmp_path: Path) -> None:
    """The rest of the body comes after the drain's time (1 s) is up: uvicorn cancels the request, and the client
    gets the envelope's 503 with Retry-After (it wrote a plain-text 500 before), with no traceback logged."""
    log = tmp_path / "serve.log"
    answer, returncode = half_sent_at_sigterm(log, pause_s=1.8, env={"DEEPFER_GRACEFUL_SHUTDOWN_S": "1"})
    status_line, headers, body = split_answer(answer)
    assert status_line == b"HTTP/1.1 503 Service Unavailable", answer[:500]
    assert b"retry-after: 1" in headers
    assert body["error"]["code"] == "shutting_down"
    assert returncode == 0 and "Traceback" not in log.read_text(), log.read_text()


def test_version_flag_prints_the_package_version() -> None:
    result = deepfer("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"deepfer {version('deepfer')}"


def test_a_closed_pipe_ends_quietly() -> None:
    """`deepfer predict photo.jpg | head` must not end in a BrokenPipeError traceback: the reader is gone
    before the answer is written."""
    command = [sys.executable, "-m", "deepfer.cli", "predict", str(SCENES[0])]
    reader = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()
    with reader.stderr:
        stderr = reader.stderr.read().decode()
    reader.wait(timeout=60)
    assert "Traceback" not in stderr, stderr


def test_predict_through_a_server_matches_the_local_pipeline(server_url: str) -> None:
    """--url sends the files to a running service; its answers are the local pipeline's, file by file."""
    remote = deepfer("predict", "--url", server_url, "--format", "json", *SCENES)
    local = deepfer("predict", "--format", "json", *SCENES)
    assert remote.returncode == 0 == local.returncode, remote.stderr + local.stderr
    for there, here in zip(json.loads(remote.stdout), json.loads(local.stdout), strict=True):
        assert there["path"] == here["path"]
        assert [face["box"] for face in there["faces"]] == [face["box"] for face in here["faces"]]
        assert [face["emotion"] for face in there["faces"]] == [face["emotion"] for face in here["faces"]]


def test_predict_through_a_server_reports_a_refused_file(server_url: str, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    result = deepfer("predict", "--url", server_url, "--format", "json", SCENES[0], text)
    assert result.returncode == 1
    answers = json.loads(result.stdout)
    assert len(answers[0]["faces"]) == 3 and answers[1]["error"]["code"] == "bad_image"


def test_a_dead_url_is_named_in_one_line() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = deepfer("predict", "--url", dead, SCENES[0])
    assert result.returncode == 2
    assert dead in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_annotate_several_images_into_a_folder(tmp_path: Path) -> None:
    """Several inputs need a folder: one drawing per image, named after it; nothing else is written."""
    folder = tmp_path / "annotated"
    result = deepfer("predict", *SCENES, "--annotate", f"{folder}/")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in folder.iterdir()) == ["scene_0000.jpg", "scene_0002.jpg"]
    for scene in SCENES:
        drawn, plain = cv2.imread(str(folder / scene.name)), cv2.imread(str(scene))
        assert drawn is not None and drawn.shape == plain.shape
        assert (cv2.absdiff(drawn, plain) > 60).any(), "no box drawn"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["annotated"]


def test_annotate_one_file_name_for_several_images_is_refused(tmp_path: Path) -> None:
    result = deepfer("predict", *SCENES, "--annotate", tmp_path / "out.jpg")
    assert result.returncode == 2
    assert "names one file, but 2 images were given" in result.stderr and "--annotate" in result.stderr
    assert list(tmp_path.iterdir()) == [] and result.stdout == ""  # refused before any work


def test_annotate_never_overwrites_an_input(tmp_path: Path) -> None:
    source = tmp_path / "scene.jpg"
    source.write_bytes(SCENES[0].read_bytes())
    result = deepfer("predict", source, "--annotate", source)
    assert result.returncode == 2 and "overwrite the input" in result.stderr
    assert source.read_bytes() == SCENES[0].read_bytes()


def test_table_columns_line_up_under_their_headers(tmp_path: Path) -> None:
    """Every value starts (left-aligned columns) or ends (right-aligned ones) where its header does, even with a
    file name longer than any fixed width."""
    long_name = tmp_path / ("a-rather-long-file-name-from-a-camera-export-" + SCENES[0].name)
    long_name.write_bytes(SCENES[0].read_bytes())
    result = deepfer("predict", long_name, SCENES[1])
    assert result.returncode == 0, result.stderr
    header, rule, *rows = result.stdout.splitlines()
    assert len(rows) == 6
    spans = [(match.start(), match.end()) for match in re.finditer(r"-+", rule)]
    titles = ["image", "face", "box (x,y,w,h)", "score", "emotion", "p"]
    right = {"face", "score", "p"}
    for (start, end), title in zip(spans, titles, strict=True):
        cell = header[start:end]
        assert cell.strip() == title, (title, cell)
        for row in rows:
            value = row[start:end]
            assert value.strip(), (title, row)
            assert (value[-1] != " ") if title in right else (value[0] != " "), (title, row)


def test_min_score_and_sharpness_options_locally_and_through_a_server(server_url: str) -> None:
    """--min-score keeps the faces scored at least that, the same locally and with --url; each face has quality."""
    for where in ((), ("--url", server_url)):
        result = deepfer("predict", *where, "--format", "json", "--min-score", "0.9", SCENES[0])
        assert result.returncode == 0, result.stderr
        kept = json.loads(result.stdout)[0]["faces"]
        assert 0 < len(kept) < 3
        assert all(face["detection_score"] >= 0.9 and face["quality"]["sharpness"] > 0 for face in kept)
    refused = deepfer("predict", "--min-score", "1.5", SCENES[0])
    assert refused.returncode == 2 and "--min-score" in refused.stderr and "between 0 and 1" in refused.stderr
