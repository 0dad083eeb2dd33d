"""A tiny Chrome DevTools Protocol client: drive headless Chromium like a person (navigate, click, type),
read the DOM with JavaScript, take screenshots. For the ``vec serve`` browser tests.

Chromium is started with ``--remote-debugging-port=0`` (it picks a free port and writes it to
``DevToolsActivePort`` in the profile directory), its page target is found at ``/json/list``, and one
websocket to that page carries every command (``websocket-client``, a dev dependency). Clicks are real
mouse events (``Input.dispatchMouseEvent``) at the element's centre, so the page's own handlers — links,
form buttons, plotly's click on a point — run as they would for a person. Chromium runs in its own process
group, killed as a whole on close (see tests/browser.py for the flags and why).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

from tests.browser import _BASE_FLAGS, chromium_path


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page. Use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 30.0):
        self.width, self.height, self.timeout = width, height, timeout
        self._profile = tempfile.TemporaryDirectory(prefix="vec-cdp-")
        executable = chromium_path()
        if executable is None:
            raise FileNotFoundError("no Chromium found (apt-get install -y chromium)")
        self.process = subprocess.Popen(
            [
                executable,
                *_BASE_FLAGS,
                f"--user-data-dir={self._profile.name}",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port = self._devtools_port()
            self.ws = websocket.create_connection(self._page_url(port), timeout=timeout, suppress_origin=True)
            self._next_id = 0
            self._events: list[dict] = []
            self.send("Page.enable")
            self.send("Runtime.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing
    def _devtools_port(self) -> int:
        marker = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CDPError(f"Chromium exited with {self.process.returncode} before it listened")
            text = marker.read_text() if marker.exists() else ""
            if text.strip():
                return int(text.splitlines()[0])
            time.sleep(0.05)
        raise CDPError(f"Chromium wrote no DevToolsActivePort within {self.timeout:.0f} s")

    def _page_url(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                targets = json.loads(response.read())
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise CDPError("Chromium shows no page target")

    def send(self, method: str, params: dict | None = None) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        wanted = self._next_id
        self.ws.send(json.dumps({"id": wanted, "method": method, "params": params or {}}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == wanted:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)
        raise CDPError(f"{method}: no answer within {self.timeout:.0f} s")

    def wait_event(self, method: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method:
                    return self._events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"no {method} within {timeout or self.timeout:.0f} s")
            self.ws.settimeout(left)
            try:
                message = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            finally:
                self.ws.settimeout(self.timeout)
            if "method" in message:
                self._events.append(message)

    # ------------------------------------------------------------------ what a person does
    def goto(self, url: str) -> None:
        """Open ``url`` and wait until it has loaded (images included)."""
        self._events = [e for e in self._events if e["method"] != "Page.loadEventFired"]
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None):
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise CDPError(f"still false after {timeout or self.timeout:.0f} s: {expression}")

    def click_at(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {
                    "type": kind,
                    "x": x,
                    "y": y,
                    "button": "left" if kind != "mouseMoved" else "none",
                    "clickCount": 1,
                },
            )

    def centre_of(self, selector: str) -> tuple[float, float]:
        box = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); if (!el) return null;"
            " el.scrollIntoView({block: 'center', inline: 'center'}); const r = el.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if box is None:
            raise CDPError(f"no element matches {selector!r}")
        return box[0], box[1]

    def click(self, selector: str, *, navigates: bool = True) -> None:
        """A real mouse click at the centre of the element; waits for the next page when it navigates."""
        self._events = [e for e in self._events if e["method"] != "Page.loadEventFired"]
        self.click_at(*self.centre_of(selector))
        if navigates:
            self.wait_event("Page.loadEventFired")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the field, clear it, and type ``text`` as key input."""
        self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.focus();"
            " el.select && el.select(); })()"
        )
        self.send("Input.insertText", {"text": text})

    def url(self) -> str:
        return self.evaluate("window.location.href")

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """PNG of the viewport, or of the whole page (``full_page``)."""
        params: dict = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params |= {
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            }
        data = self.send("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            with contextlib.suppress(OSError):
                ws.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
