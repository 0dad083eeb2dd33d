"""Headless Chromium for tests: render a local HTML file, take a screenshot, return the DOM after scripts.

Each call starts Chromium with a fresh profile directory and the flags that keep it off the network and
working as root in a container. Chromium is started in its own process group so that on a timeout the
browser and all its helper processes (renderer, GPU, zygote) are killed together, by that group's id
while the browser is not yet reaped (so the id cannot belong to anyone else).

CI: ``apt-get update && apt-get install -y chromium`` (Debian 12) provides ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# --no-sandbox: tests run as root in containers, where Chromium's sandbox cannot start.
# The rest stop Chromium phoning home (no network here) and keep each run independent.
_BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
    # WebGL through the software rasteriser: plotly's 3-D scatter needs WebGL and there is no GPU.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
)

# Virtual time lets page scripts (onload counters, plotly's promise chain) finish before the dump or
# screenshot, without a real-time sleep.
VIRTUAL_TIME_BUDGET_MS = 5000


def chromium_path() -> str | None:
    """Path of a Chromium/Chrome executable, or None if there is none on this machine."""
    for name in _CANDIDATES:
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
        if found:
            return found
    return None


def _run_chromium(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run Chromium with a throw-away profile; kill its whole process group if it overruns."""
    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("no Chromium found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="vec-chromium-") as profile:
        command = [executable, *_BASE_FLAGS, f"--user-data-dir={profile}", *args]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TimeoutError(f"Chromium did not finish within {timeout:.0f} s: {' '.join(args)}") from None
    if process.returncode != 0:
        raise RuntimeError(f"Chromium exited with {process.returncode}: {stderr[-2000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def screenshot(
    html_path: Path, screenshot_png: Path, width: int = 1280, height: int = 900, timeout: float = 60.0
) -> Path:
    """PNG of the page's first ``width`` x ``height`` pixels."""
    screenshot_png = Path(screenshot_png).resolve()
    screenshot_png.unlink(missing_ok=True)
    _run_chromium(
        [
            f"--screenshot={screenshot_png}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            Path(html_path).resolve().as_uri(),
        ],
        timeout,
    )
    if not screenshot_png.exists():
        raise RuntimeError(f"Chromium finished but wrote no screenshot at {screenshot_png}")
    return screenshot_png


def dump_dom(html_path: Path, width: int = 1280, height: int = 900, timeout: float = 60.0) -> str:
    """The serialised DOM after the page's scripts ran (attributes set by onload handlers included)."""
    result = _run_chromium(
        [
            "--dump-dom",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            Path(html_path).resolve().as_uri(),
        ],
        timeout,
    )
    return result.stdout


def render(
    html_path: Path, screenshot_png: Path, width: int = 1280, height: int = 900, timeout: float = 60.0
) -> str:
    """Screenshot the page into ``screenshot_png`` and return its DOM after scripts.

    One launch does both on current Chromium (a 5 MB plotly page costs ~4 s per launch on a busy 2-core
    machine); older headless modes honour only one of --screenshot / --dump-dom, so when the single run
    leaves either missing, they are run separately.
    """
    screenshot_png = Path(screenshot_png).resolve()
    screenshot_png.unlink(missing_ok=True)  # a stale file must not pass for this run's screenshot
    result = _run_chromium(
        [
            f"--screenshot={screenshot_png}",
            "--dump-dom",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            Path(html_path).resolve().as_uri(),
        ],
        timeout,
    )
    dom = result.stdout
    if not screenshot_png.exists():
        screenshot(html_path, screenshot_png, width, height, timeout)
    if "<body" not in dom:
        dom = dump_dom(html_path, width, height, timeout)
    return dom
