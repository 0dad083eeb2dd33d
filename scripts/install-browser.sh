#!/usr/bin/env bash
# Headless Chromium for the browser tests (they render vec's HTML pages and count the images shown).
# Debian's package; needs root. Without it the browser tests are skipped with a reason, nothing fails.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium not installed and cannot install it here (need root and apt-get): browser tests will skip" >&2
    exit 0
fi
echo "installing Debian's chromium for the browser tests (about a minute)..." >&2
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
    >/dev/null 2>&1 || echo "chromium install failed: browser tests will skip" >&2
exit 0
