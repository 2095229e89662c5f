"""Debian's Chromium driven by Playwright, for the tests that check what a real browser shows or plays
(``tests/http/test_demo_browser.py``, ``tests/cli/test_video_browser.py``).

Importing this module skips the importing test module, with the command to run, when Chromium or Playwright is
missing; Playwright never downloads a browser of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("DEEPFER_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium not found at {CHROMIUM}: run tests/ci-browser-deps.sh (or set DEEPFER_CHROMIUM)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")

# Flags this machine needs: no sandbox as root, no GPU, and no background traffic to Google's hosts, which the
# closed network refuses. The fake-media flags give getUserMedia a camera without a prompt (the demo's live-mode tests
# add --use-file-for-fake-video-capture so it plays their clip).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
