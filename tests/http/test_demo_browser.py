"""The browser demo in a real browser: Debian's Chromium, headless, driven by Playwright, against real uvicorn.

What is compared is what the page actually drew: box elements measured on screen against the API's boxes
scaled to the displayed image, and each bar's filled width against the API's probability. Live mode runs on
Chromium's fake camera fed with a Y4M clip made here from public scenes, over WS /stream: its tracks and smoothed
bars are compared with the stream's last result as the page received it, also across a server restart.
Screenshots land in artifacts/browser/ for a human to look at.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest

from deepfer.contract import LABELS
from deepfer.server.demo import CONTENT_SECURITY_POLICY, demo_content_security_policy
from deepfer.server.docs import REDOC_CONTENT_SECURITY_POLICY
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, sync_api
from tests.imaging import DATA
from tests.servers import run_server, server_settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"

# Committed public scenes with three faces each, so a mix-up between faces would show.
SCENES = DATA / "scenes"
UPLOAD_SCENE = SCENES / "scene_0000.jpg"
CAMERA_SCENES = (SCENES / "scene_0000.jpg", SCENES / "scene_0002.jpg")
API_KEY = "demo-test-key"

# Records the page's WebSockets as it uses them: sockets opened, frames sent, the last result, and the peak of
# frames sent but not yet answered, to prove live mode paces itself by the results.
RECORD_STREAMS = """
(() => {
  const Original = window.WebSocket;
  window.__stream = { opened: 0, sent: 0, answered: 0, peak: 0, last: null };
  window.WebSocket = class extends Original {
    constructor(...args) {
      super(...args);
      window.__stream.opened += 1;
      this.addEventListener("message", (event) => {
        const message = JSON.parse(event.data);
        if (["result", "error", "dropped"].includes(message.type)) window.__stream.answered += 1;
        if (message.type === "result") window.__stream.last = message;
      });
    }
    send(data) {
      if (typeof data !== "string") {
        window.__stream.sent += 1;
        const waiting = window.__stream.sent - window.__stream.answered;
        window.__stream.peak = Math.max(window.__stream.peak, waiting);
      }
      super.send(data);
    }
  };
})();
"""

DRAWN_BOXES = """
() => {
  const image = document.querySelector("#photo").getBoundingClientRect();
  return [...document.querySelectorAll("#overlay .box")].map((box) => {
    const drawn = box.getBoundingClientRect();
    return {
      data: { ...box.dataset },
      label: box.getAttribute("aria-label"),
      left: drawn.left - image.left,
      top: drawn.top - image.top,
      width: drawn.width,
      height: drawn.height,
      scale: image.width / Number(document.querySelector("#overlay").dataset.imageWidth),
    };
  });
}
"""

# Every face card the page drew: its track (NaN in image mode), emotion, heading and bars with their fill.
FACE_CARDS = """
[...document.querySelectorAll("#face-list .face")].map((face) => ({
  trackId: Number(face.dataset.trackId),
  emotion: face.dataset.emotion,
  heading: face.querySelector("h3").textContent,
  bars: [...face.querySelectorAll(".bar")].map((bar) => ({
    emotion: bar.dataset.emotion,
    probability: Number(bar.dataset.probability),
    fill: bar.querySelector(".fill").getBoundingClientRect().width / bar.getBoundingClientRect().width,
  })),
}))
"""
DRAWN_BARS = f"() => {FACE_CARDS}"


def write_y4m(path: Path, images: list[Path], *, fps: int, frames_each: int) -> None:
    """A raw I420 clip Chromium's fake camera can play (it loops it): each image shown for ``frames_each``."""
    first = cv2.imread(str(images[0]))
    height, width = first.shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for image in images:
            bgr = cv2.resize(cv2.imread(str(image)), (width, height))
            planes = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes()
            for _ in range(frames_each):
                out.write(b"FRAME\n" + planes)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Chromium for the module, with a fresh profile and a fake camera playing public scenes."""
    work = tmp_path_factory.mktemp("chromium")
    clip = work / "camera.y4m"
    write_y4m(clip, list(CAMERA_SCENES), fps=10, frames_each=10)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(work / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={clip}"],
            viewport={"width": 1280, "height": 900},
            # Bars animate their width; reduced motion makes what is measured the final state.
            reduced_motion="reduce",
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def console_errors() -> list[str]:
    """Errors the page logged; a test that provokes one on purpose removes it before the check."""
    return []


@pytest.fixture
def page(browser: Any, console_errors: list[str]) -> Iterator[Any]:
    """A fresh tab that fails the test on any console error (a CSP violation, a script error, a 404)."""
    tab = browser.new_page()
    tab.add_init_script(RECORD_STREAMS)
    tab.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: console_errors.append(str(error)))
    yield tab
    tab.close()
    assert not console_errors, f"browser console errors: {console_errors}"


def assert_drawn_like_api(page: Any, answer: dict[str, Any]) -> None:
    """Boxes sit where the API's boxes fall on the displayed image; bars show the API's probabilities."""
    boxes = page.evaluate(DRAWN_BOXES)
    assert len(boxes) == len(answer["faces"]) > 0
    for drawn, face in zip(boxes, answer["faces"], strict=True):
        expected = face["box"]
        assert {key: int(drawn["data"][key]) for key in ("x", "y", "width", "height")} == expected
        assert drawn["data"]["emotion"] == face["emotion"]
        assert face["emotion"] in drawn["label"]
        for key in ("width", "height"):
            assert drawn[key] == pytest.approx(expected[key] * drawn["scale"], abs=1.0)
        assert drawn["left"] == pytest.approx(expected["x"] * drawn["scale"], abs=1.0)
        assert drawn["top"] == pytest.approx(expected["y"] * drawn["scale"], abs=1.0)

    faces = page.evaluate(DRAWN_BARS)
    assert len(faces) == len(answer["faces"])
    for drawn, face in zip(faces, answer["faces"], strict=True):
        assert drawn["emotion"] == face["emotion"]
        assert face["emotion"] in drawn["heading"]
        assert [bar["emotion"] for bar in drawn["bars"]] == list(LABELS)
        for bar in drawn["bars"]:
            probability = face["probabilities"][bar["emotion"]]
            assert bar["probability"] == probability
            assert bar["fill"] == pytest.approx(probability, abs=0.01)


def test_upload_draws_the_apis_boxes_and_bars(page: Any, server_url: str) -> None:
    """Pick a scene with the keyboard; what is drawn matches /predict, on a desktop and a phone-sized screen."""
    scene = UPLOAD_SCENE
    answer = httpx.post(f"{server_url}/predict", files={"file": scene.read_bytes()}, timeout=30).json()
    assert len(answer["faces"]) >= 2, "the scene should show several faces for this test to mean much"

    page.goto(server_url + "/")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Choose an image…").press("Enter")
    chooser.value.set_files(str(scene))
    page.wait_for_selector("#overlay[data-renders='1']")
    assert_drawn_like_api(page, answer)
    assert str(len(answer["faces"])) in page.get_by_role("status").inner_text()
    page.screenshot(path=str(ARTIFACTS / "upload-desktop.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "page scrolls sideways"
    assert_drawn_like_api(page, answer)
    page.screenshot(path=str(ARTIFACTS / "upload-phone.png"), full_page=True)


DROP_FILE = """
async ([name, base64]) => {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
  const target = document.querySelector("#drop-zone");
  target.dispatchEvent(new DragEvent("dragover", { bubbles: true, cancelable: true, dataTransfer: transfer }));
  target.dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: transfer }));
}
"""


def test_dropping_an_image_analyses_it(page: Any, server_url: str) -> None:
    """Drag and drop, the other way in: the dropped scene is drawn as the API answers it."""
    answer = httpx.post(f"{server_url}/predict", files={"file": UPLOAD_SCENE.read_bytes()}, timeout=30).json()
    page.goto(server_url + "/")
    page.evaluate(DROP_FILE, [UPLOAD_SCENE.name, base64.b64encode(UPLOAD_SCENE.read_bytes()).decode()])
    page.wait_for_selector("#overlay[data-renders='1']")
    assert_drawn_like_api(page, answer)


# The drawn tracks and the last result the page received, read in one go (the page renders a result in the same
# task it arrives in, so the two always belong together).
DRAWN_TRACKS = f"""
() => ({{
  result: window.__stream.last,
  boxes: [...document.querySelectorAll("#overlay .box")].map((box) => ({{ ...box.dataset }})),
  faces: {FACE_CARDS},
}})
"""

TRACKED = "() => (window.__stream.last?.faces ?? []).some((face) => face.track_id !== null)"

# A camera that takes 0.8 s to open, as behind a permission prompt, and keeps every stream it hands out, so a
# test can see whether any of them is left running.
SLOW_CAMERA = """
(() => {
  const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  window.__cameras = [];
  window.__asked = 0;
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    window.__asked += 1;
    await new Promise((resolve) => setTimeout(resolve, 800));
    const camera = await open(constraints);
    window.__cameras.push(camera);
    return camera;
  };
})();
"""
# GET /model answered 0.8 s late once `window.__slowModel` is set: live mode asks it whether a key is needed before
# each connection, so a stop and a new start can land while that question is in flight.
SLOW_MODEL = """
(() => {
  const fetchNow = window.fetch.bind(window);
  window.__slowModel = false;
  window.__modelAsked = 0;
  window.fetch = async (resource, options) => {
    if (window.__slowModel && String(resource).endsWith("model")) {
      window.__modelAsked += 1;
      await new Promise((resolve) => setTimeout(resolve, 800));
    }
    return fetchNow(resource, options);
  };
})();
"""
REFUSED_CAMERA = """
navigator.mediaDevices.getUserMedia = async () => {
  throw new DOMException("Permission denied", "NotAllowedError");
};
"""
LIVE_TRACKS = """
() => window.__cameras.flatMap((camera) => camera.getTracks()).filter((track) => track.readyState === "live").length
"""


def start_live(page: Any, url: str, *, rate: str = "5") -> Any:
    """Open the page, go to the Live tab with the keyboard, pick ``rate`` and start; returns the page's response."""
    response = page.goto(url + "/")
    page.get_by_role("tab", name="Image").focus()
    page.keyboard.press("ArrowRight")
    assert page.get_by_role("tab", name="Live").get_attribute("aria-selected") == "true"
    page.get_by_label("Target frames per second").select_option(rate)
    page.get_by_role("button", name="Start camera").press("Enter")
    return response


def wait_for_results(page: Any, count: int) -> None:
    """``count`` more results from now, at least one of them with a tracked face."""
    page.wait_for_function(
        "n => window.__stream.answered >= n", arg=page.evaluate("window.__stream.answered") + count, timeout=30_000
    )
    page.wait_for_function(TRACKED, timeout=30_000)


def assert_tracks_drawn_like_the_stream(page: Any) -> None:
    """One box per face of the last result, labelled with its track and smoothed emotion; one bar set per
    tracked face, ordered by track id, showing its smoothed probabilities."""
    page.wait_for_function(TRACKED, timeout=30_000)
    drawn = page.evaluate(DRAWN_TRACKS)
    faces = drawn["result"]["faces"]
    tracked = sorted((face for face in faces if face["track_id"] is not None), key=lambda face: face["track_id"])
    assert len(drawn["boxes"]) == len(faces) > 0
    assert sorted(int(box["trackId"]) for box in drawn["boxes"] if "trackId" in box) == [
        face["track_id"] for face in tracked
    ]
    for box in drawn["boxes"]:
        if "trackId" in box:
            face = next(face for face in faces if face["track_id"] == int(box["trackId"]))
            assert {key: int(box[key]) for key in ("x", "y", "width", "height")} == face["box"]
            assert box["emotion"] == face["smoothed_emotion"]
    assert [face["trackId"] for face in drawn["faces"]] == [face["track_id"] for face in tracked]
    for shown, face in zip(drawn["faces"], tracked, strict=True):
        assert shown["emotion"] == face["smoothed_emotion"]
        assert shown["heading"].startswith(f"Track {face['track_id']}: {face['smoothed_emotion']}")
        assert [bar["emotion"] for bar in shown["bars"]] == list(LABELS)
        for bar in shown["bars"]:
            assert bar["probability"] == face["smoothed"][bar["emotion"]]
            assert bar["fill"] == pytest.approx(bar["probability"], abs=0.01)


def test_live_mode_streams_the_fake_camera_and_shows_tracks(page: Any, server_url: str) -> None:
    """Live mode on Chromium's fake camera over WS /stream: tracks with smoothed bars, at the chosen rate, with
    never more than one frame waiting for its answer, under the page's Content-Security-Policy (a violation would
    be a console error)."""
    response = start_live(page, server_url)
    host = server_url.removeprefix("http://")
    assert response.headers["content-security-policy"] == demo_content_security_policy(host)
    wait_for_results(page, 12)
    sync_api.expect(page.locator("#live-state")).to_have_text("live")
    assert_tracks_drawn_like_the_stream(page)
    fps = float(page.locator("#fps").get_attribute("data-value") or 0)
    stream = page.evaluate("window.__stream")
    page.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)
    page.get_by_role("button", name="Stop camera").click()

    assert stream["opened"] == 1 and stream["peak"] == 1, f"frames piled up: {stream}"
    # Steady at the chosen 5 frames/s: not flooding the server, and not starving on a loaded 2-core machine.
    assert 2.0 <= fps <= 5.75, f"measured {fps} frames/s at a target of 5"
    assert page.get_by_role("button", name="Start camera").get_attribute("aria-pressed") == "false"
    sync_api.expect(page.locator("#live-state")).to_have_text("stopped")


def test_live_mode_reconnects_after_the_server_restarts(page: Any) -> None:
    """The server stops under a live stream and a new one starts on the same port: the page says it is
    reconnecting, reconnects by itself, and results with tracks resume on the new stream."""
    settings = server_settings()
    with run_server(settings) as url:
        start_live(page, url)
        wait_for_results(page, 3)
        assert_tracks_drawn_like_the_stream(page)
    sync_api.expect(page.locator("#live-state")).to_have_text("reconnecting", timeout=10_000)
    sync_api.expect(page.locator("#status")).to_contain_text("reconnecting in")
    with run_server(settings) as again:
        assert again == url
        sync_api.expect(page.locator("#live-state")).to_have_text("live", timeout=30_000)
        wait_for_results(page, 5)
        assert page.evaluate("window.__stream.opened") >= 2
        assert_tracks_drawn_like_the_stream(page)
        page.screenshot(path=str(ARTIFACTS / "live-reconnected.png"), full_page=True)
        page.get_by_role("button", name="Stop camera").click()


def test_live_mode_with_a_wrong_key_says_so_and_stops(
    page: Any, live_server: Callable[..., Any], console_errors: list[str]
) -> None:
    """A wrong key closes the stream with 4401: the page shows it, stops the camera and does not retry."""
    with live_server(api_keys=[API_KEY]) as url:
        page.goto(url + "/")
        page.get_by_label("API key").fill("not-the-key")
        page.keyboard.press("Tab")
        start_live(page, url)
        status = page.locator("#status")
        sync_api.expect(status).to_contain_text("4401")
        sync_api.expect(status).to_contain_text("refused the API key")
        sync_api.expect(page.locator("#live-state")).to_have_text("error")
        assert page.evaluate("document.activeElement.id") == "api-key"
        assert page.get_by_role("button", name="Start camera").get_attribute("aria-pressed") == "false"
        page.screenshot(path=str(ARTIFACTS / "live-wrong-key.png"))
        page.wait_for_timeout(3000)  # longer than the first reconnect delays
        assert page.evaluate("window.__stream.opened") == 1, "a refused key was retried"

        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Tab")
        page.get_by_role("button", name="Start camera").click()
        wait_for_results(page, 3)
        assert_tracks_drawn_like_the_stream(page)
        page.get_by_role("button", name="Stop camera").click()
    console_errors[:] = [error for error in console_errors if "401" not in error]


@pytest.mark.parametrize("second_action", ["the camera button again", "the Image tab"])
def test_stopping_while_the_camera_opens_leaves_no_camera_running(
    page: Any, server_url: str, second_action: str
) -> None:
    """Live mode stopped while the browser is still opening the camera (a second click during a permission
    prompt, or the Image tab) ends stopped: the camera granted afterwards is closed at once, no stream opens, and
    a new start still works. (The page used to open a second camera for the second click, and start the camera
    behind the Image tab, leaving a camera running that no button stopped.)"""
    page.add_init_script(SLOW_CAMERA)
    start_live(page, server_url)
    toggle = page.locator("#live-toggle")
    page.wait_for_function("() => window.__asked === 1")
    if second_action == "the Image tab":
        page.get_by_role("tab", name="Image").click()
    else:
        toggle.click()
    page.wait_for_function("() => window.__cameras.length >= 1", timeout=10_000)
    page.wait_for_timeout(1000)  # past a second camera's opening, had one been asked for

    assert page.evaluate(LIVE_TRACKS) == 0, f"{page.evaluate('window.__cameras.length')} camera(s) opened"
    assert page.evaluate("window.__stream.opened") == 0
    sync_api.expect(page.locator("#live-state")).to_have_text("stopped")
    sync_api.expect(toggle).to_have_attribute("aria-pressed", "false")

    page.get_by_role("tab", name="Live").click()
    toggle.click()
    wait_for_results(page, 3)
    assert page.evaluate(LIVE_TRACKS) == 1
    toggle.click()
    assert page.evaluate(LIVE_TRACKS) == 0


def test_a_stop_and_start_during_the_key_check_opens_one_stream(page: Any, server_url: str) -> None:
    """Stopped and started again while the first start still waits for GET /model (asked before every connection):
    the first start's connection is dropped, so one stream opens, not two with only one of them stopped."""
    page.add_init_script(SLOW_MODEL)
    page.goto(server_url + "/")
    page.evaluate("window.__slowModel = true")
    page.get_by_role("tab", name="Live").click()
    toggle = page.locator("#live-toggle")
    toggle.click()
    page.wait_for_function("() => window.__modelAsked === 1", timeout=10_000)
    toggle.click()
    toggle.click()
    wait_for_results(page, 3)
    page.wait_for_timeout(1000)  # past the first start's delayed answer, had it gone on to connect
    assert page.evaluate("window.__stream.opened") == 1
    toggle.click()
    sync_api.expect(page.locator("#live-state")).to_have_text("stopped")


def test_a_refused_camera_says_so_and_leaves_live_mode_off(page: Any, server_url: str) -> None:
    """The browser refuses the camera (the user said no): the page says why and the button starts again."""
    page.add_init_script(REFUSED_CAMERA)
    start_live(page, server_url)
    sync_api.expect(page.locator("#status")).to_have_text("The camera could not be opened: Permission denied")
    sync_api.expect(page.locator("#live-state")).to_have_text("error")
    sync_api.expect(page.locator("#live-toggle")).to_have_attribute("aria-pressed", "false")
    assert page.evaluate("window.__stream.opened") == 0


def test_api_key_field_unlocks_a_protected_service(
    page: Any, live_server: Callable[..., Any], console_errors: list[str]
) -> None:
    """Without a key the page says why and moves focus to the key field; with the key typed in it works."""
    with live_server(api_keys=[API_KEY]) as url:
        page.goto(url + "/")
        page.locator("#file-input").set_input_files(str(UPLOAD_SCENE))
        status = page.locator("#status")
        sync_api.expect(status).to_contain_text("API key")
        assert page.evaluate("document.activeElement.id") == "api-key"
        page.screenshot(path=str(ARTIFACTS / "api-key-missing.png"))

        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Tab")  # leaving the field commits it, as a person would
        page.locator("#file-input").set_input_files(str(UPLOAD_SCENE))
        page.wait_for_selector("#overlay[data-renders='1']")
        assert int(page.locator("#overlay").get_attribute("data-faces") or 0) > 0
        sync_api.expect(page.locator("#model-info")).to_contain_text("Model:")
    # The refused requests were the point of the first half; anything else logged still fails the test.
    console_errors[:] = [error for error in console_errors if "401" not in error]


def test_api_docs_render_with_the_network_closed(page: Any, server_url: str, console_errors: list[str]) -> None:
    """/docs (Swagger UI) and /redoc draw every operation while every request off this origin is refused, under
    the demo's Content-Security-Policy (/redoc: plus inline styles and a blob: worker; any violation is a
    console error, which fails the test, except the one ReDoc provokes: its logo from its vendor's CDN)."""
    refused: list[str] = []

    def this_origin_only(route: Any) -> None:
        if route.request.url.startswith(server_url + "/"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", this_origin_only)
    paths = httpx.get(f"{server_url}/openapi.json").json()["paths"]
    operations = [operation for methods in paths.values() for operation in methods.values()]

    response = page.goto(server_url + "/docs")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() == len(operations)
    sync_api.expect(page.locator(".info .title")).to_contain_text("DeepFER")
    page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=True)

    assert not console_errors, f"/docs: {console_errors}"
    response = page.goto(server_url + "/redoc")
    assert response.headers["content-security-policy"] == REDOC_CONTENT_SECURITY_POLICY
    # ReDoc draws the operations in stages; each gets a section "operation/<operation id>" (and a tag/... alias).
    drawn = """[...document.querySelectorAll('[data-section-id^="operation/"]')]"""
    page.wait_for_function(f"n => {drawn}.length === n", arg=len(operations))
    ids = page.evaluate(f"() => {drawn}.map((s) => s.dataset.sectionId.slice('operation/'.length))")
    assert sorted(ids) == sorted(op["operationId"] for op in operations)
    page.screenshot(path=str(ARTIFACTS / "redoc.png"))
    assert refused == [], f"the docs reached for other hosts: {refused}"
    vendor_logo = [error for error in console_errors if "cdn.redoc.ly" in error and "blocked" in error]
    assert len(vendor_logo) == 1, "ReDoc's logo should be refused by the policy"
    console_errors.remove(vendor_logo[0])
