"""``deepfer video --annotated`` played by a real browser (Debian's Chromium through Playwright, as the demo's
tests drive it): the H.264 and VP9 copies load and report the clip's length, the old ``mp4v`` file does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2

from deepfer.cli import main
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, sync_api
from tests.imaging import DATA

FRAMES, FPS = 20, 10


def test_annotated_copies_play_in_chromium_and_mp4v_does_not(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"  # mp4v, what --annotated wrote before
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (640, 480))
    image = cv2.imread(str(DATA / "scenes" / "scene_0000.jpg"))
    for _ in range(FRAMES):
        writer.write(image)
    writer.release()
    for suffix in (".mp4", ".webm"):
        argv = ["video", str(source), "--every", "5", "--out", str(tmp_path / "r.csv"), "--no-progress"]
        assert main([*argv, "--annotated", str(tmp_path / f"annotated{suffix}")]) == 0
    players = {"h264": "annotated.mp4", "vp9": "annotated.webm", "mp4v": "source.mp4"}
    page_file = tmp_path / "page.html"
    page_file.write_text("".join(f'<video id="{name}" src="{src}" muted></video>' for name, src in players.items()))

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            state: dict[str, Any] = {}
            for name in players:
                script = (
                    f"(() => {{ const v = document.getElementById('{name}'); return v.readyState >= 1 || v.error; }})"
                )
                page.wait_for_function(f"{script}()", timeout=15_000)
                state[name] = page.evaluate(
                    f"(() => {{ const v = document.getElementById('{name}');"
                    " return {error: v.error && v.error.code, duration: v.duration, width: v.videoWidth}; })()"
                )
        finally:
            browser.close()
    for name in ("h264", "vp9"):
        assert state[name]["error"] is None, state
        assert abs(state[name]["duration"] - FRAMES / FPS) < 0.15 and state[name]["width"] == 640, state
    assert state["mp4v"]["error"] == 4, state  # MEDIA_ERR_SRC_NOT_SUPPORTED
