#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the browser tests (tests/http/test_demo_browser.py).
# Idempotent and quiet: does nothing when /usr/bin/chromium is already there. The tests never download a
# browser of their own; Playwright (the `test` extra) drives this one through executable_path.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq >/dev/null
$sudo_cmd apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
