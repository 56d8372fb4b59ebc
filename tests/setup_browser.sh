#!/bin/sh
# Installs Debian's chromium + chromium-driver for tests/test_report_browser.py when they are
# missing and apt-get can be used (root, or passwordless sudo). Idempotent; never fails the
# build: without the browser that test module is skipped and says why.
set -u
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser: no apt-get here; the browser test will be skipped" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "setup_browser: not root and no passwordless sudo; the browser test will be skipped" >&2
    exit 0
fi
echo "setup_browser: installing chromium and chromium-driver (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
    $SUDO apt-get update >/dev/null 2>&1 || true
    $SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
        || echo "setup_browser: apt-get could not install chromium; the browser test will be skipped" >&2
fi
exit 0
