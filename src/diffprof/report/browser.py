"""Open report pages in headless Chromium and check what a reader would see, or take screenshots.

One browser serves every page (:class:`Browser` is a context manager): it speaks the Chrome
DevTools Protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, no port to open or
race for), resolves no host name (``--host-resolver-rules``) and starts from a fresh profile. For
each page and window width, :meth:`Browser.check` reports:

- the page's scroll width against the window (no horizontal overflow),
- pairs of ``<text>`` elements of one SVG figure whose boxes overlap, as laid out by the browser,
  with every ``<details>`` opened so folded figures are measured too,
- console errors, uncaught exceptions and log errors (a CSP violation is one),
- every network request other than the page itself and ``data:`` URLs,
- images that did not decode.

The tests run it on every report format that has a page (run and comparison reports); the
screenshot script (``scripts/report_screenshots.py``) uses :meth:`Browser.screenshot`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
)

_MEASURE = """
(() => {
  const root = document.documentElement;
  const widths = {viewport: root.clientWidth, scroll: root.scrollWidth};
  const overlaps = [];
  const svgs = document.querySelectorAll("svg");
  svgs.forEach((svg, k) => {
    const fig = svg.closest("figure");
    const name = (fig && fig.getAttribute("data-plot")) || ("svg " + k);
    const boxes = [];
    svg.querySelectorAll("text").forEach((t) => {
      const r = t.getBoundingClientRect();
      if (r.width > 0 && r.height > 0 && t.textContent.trim()) boxes.push([t.textContent, r]);
    });
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i][1], b = boxes[j][1];
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1) overlaps.push(name + ": '" + boxes[i][0] + "' overlaps '" + boxes[j][0] + "'");
      }
    }
  });
  const broken = [];
  for (const img of document.images) if (!img.complete || img.naturalWidth === 0) broken.push(img.alt || img.src.slice(0, 40));
  return {widths, overlaps, broken, svgs: svgs.length, texts: document.querySelectorAll("svg text").length};
})()
"""


@dataclass
class PageCheck:
    """What one page showed at one window width."""

    url: str
    width: int
    scroll_width: int = 0
    viewport_width: int = 0
    overlaps: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    svgs: int = 0
    texts: int = 0

    @property
    def problems(self) -> list[str]:
        out = []
        if self.scroll_width > self.viewport_width:
            out.append(f"page is {self.scroll_width} px wide in a {self.viewport_width} px window")
        out += [f"overlap: {o}" for o in self.overlaps]
        out += [f"console: {c}" for c in self.console]
        out += [f"request: {r}" for r in self.requests]
        out += [f"image did not load: {b}" for b in self.broken_images]
        return out


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Browser:
    """A headless Chromium driven over the DevTools pipe; ``with Browser() as b: b.check(path)``."""

    def __init__(self, executable: str | None = None, timeout_s: float = 60.0) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
        self.timeout_s = timeout_s
        self._ids = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Condition()
        self._profile = tempfile.mkdtemp(prefix="diffprof-chromium-")

    # ------------------------------------------------------------------ process
    def __enter__(self) -> Browser:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:
            # In the child: the pipe ends become fds 3 (commands in) and 4 (replies out), copied out
            # of the way of 3 and 4 first. No close_fds: it would close them again, and pass_fds needs
            # them open in the parent; Python's own descriptors are not inherited anyway.
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        cmd = [self.executable, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile}", "about:blank"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      preexec_fn=fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._reader = threading.Thread(target=self._read, name="chromium-pipe", daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call("Browser.close")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self._replies[-1] = {"error": "chromium closed the pipe"}
                    self._lock.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        self._replies[message["id"]] = message
                        self._lock.notify_all()
                else:
                    self._events.put(message)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its reply (raises on a protocol error)."""
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        with self._lock:
            while self._ids not in self._replies and -1 not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"chromium did not answer {method} in {self.timeout_s:.0f} s")
                self._lock.wait(left)
            reply = self._replies.pop(self._ids, None) or self._replies[-1]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    # -------------------------------------------------------------------- pages
    def open(self, path: str | Path, width: int, height: int = 900) -> tuple[str, list[dict[str, Any]]]:
        """Load ``path`` at ``width`` px; returns its URL and the events seen while it loaded."""
        url = Path(path).resolve().as_uri()
        self._drain()
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", session=True, url=url)
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.timeout_s
        while not any(e.get("method") == "Page.loadEventFired" for e in events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{url} did not load in {self.timeout_s:.0f} s")
            try:
                events.append(self._events.get(timeout=left))
            except queue.Empty:
                continue
        time.sleep(0.2)  # late console messages
        return url, events + self._drain()

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def check(self, path: str | Path, width: int) -> PageCheck:
        """Load ``path`` at ``width`` px, open every ``<details>``, and measure (:class:`PageCheck`)."""
        url, events = self.open(path, width)
        self.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; }); 0")
        measured = self.evaluate(_MEASURE)
        check = PageCheck(url, width, measured["widths"]["scroll"], measured["widths"]["viewport"], measured["overlaps"],
                          broken_images=measured["broken"], svgs=measured["svgs"], texts=measured["texts"])
        for e in events + self._drain():
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                check.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                check.console.append(params.get("exceptionDetails", {}).get("text", "exception"))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                check.console.append(params["entry"].get("text", ""))
            elif method == "Network.requestWillBeSent":
                requested = params.get("request", {}).get("url", "")
                if requested != url and not requested.startswith("data:"):
                    check.requests.append(requested)
        return check

    def screenshot(self, path: str | Path, out: str | Path, width: int, max_height: int = 3000) -> Path:
        """A PNG of the top of the page as it opens (folded parts folded), at most ``max_height`` px."""
        self.open(path, width)
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": width, "height": min(max_height, int(size["height"])), "scale": 1}
        shot = self.call("Page.captureScreenshot", session=True, format="png", clip=clip, captureBeyondViewport=True)
        out = Path(out)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out
