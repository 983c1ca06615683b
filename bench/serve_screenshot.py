"""The cockpit in a browser: start `gpt-cockpit serve`, take a screenshot with headless Chromium.

Checks by eye (and, in tests/test_serve.py, by pixels) that textual-serve serves the app
and a browser draws it. Needs the `serve` extra (textual-serve) and a Chromium:

    apt-get install -y chromium        # Debian; or any chromium / google-chrome on PATH
    python bench/serve_screenshot.py [--out serve.png] [--port 8765] [--runs-dir DIR]

Prints the PNG's path; exits 1 (with why) when the server or the browser fails. The browser is
driven through the DevTools protocol (aiohttp, which textual-serve needs anyway), so the
screenshot waits real seconds for the app to start and draw.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

POLL_S = 0.5  # between screenshots while waiting for the app to draw (browser_capture's `ready`)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def browser_capture(
    browser: str, url: str, wait_s: float, ready: Callable[[bytes], bool] | None = None
) -> bytes:
    """PNG bytes of `url` in headless Chromium after `wait_s` real seconds (the app starts in its
    own process and then draws over a websocket, which a virtual-time budget would not wait for).
    With `ready`, sooner: the first of a screenshot every POLL_S that `ready` accepts and that
    is the same as the one before it (the app has drawn and stopped drawing); `wait_s` is then
    the most it waits. Driven through the DevTools protocol with aiohttp (a dependency of
    textual-serve)."""
    import asyncio
    import base64
    import json

    import aiohttp

    debug_port = free_port()
    profile = tempfile.mkdtemp(prefix="cockpit-chromium-")
    chrome = subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={debug_port}",
            "--window-size=1280,800",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    async def capture() -> bytes:
        base = f"http://127.0.0.1:{debug_port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(150):  # the browser's debugging endpoint, up to 30 s
                try:
                    async with http.get(f"{base}/json/list") as resp:
                        pages = [p for p in await resp.json() if p.get("type") == "page"]
                    if pages:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError("chromium's debugging endpoint never answered")
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1000))

                async def call(method: str, **params: object) -> dict:
                    n = next(ids)
                    await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
                    async for msg in ws:
                        data = json.loads(msg.data)
                        if data.get("id") == n:
                            return data.get("result", {})
                    raise RuntimeError(f"chromium closed the connection during {method}")

                async def shot() -> bytes:
                    data = await call("Page.captureScreenshot", format="png")
                    return base64.b64decode(data["data"])

                await call("Page.navigate", url=url)
                if ready is None:
                    await asyncio.sleep(wait_s)
                    return await shot()
                deadline, previous = time.monotonic() + wait_s, b""
                while True:
                    await asyncio.sleep(POLL_S)
                    png = await shot()
                    if (png == previous and ready(png)) or time.monotonic() > deadline:
                        return png
                    previous = png

    try:
        return asyncio.run(capture())
    finally:
        os.killpg(chrome.pid, 15)
        try:
            chrome.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(chrome.pid, 9)
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(
    out: Path,
    port: int | None = None,
    runs_dir: str | None = None,
    wait_ms: int = 15000,
    ready: Callable[[bytes], bool] | None = None,
) -> Path:
    """Serve the app, load it in headless Chromium, save the page as `out` (RuntimeError if not).

    `ready` (PNG bytes -> bool) ends the wait as soon as the drawn page passes it and holds
    still; `wait_ms` is then the most it waits (browser_capture)."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError("no Chromium on PATH (apt-get install -y chromium)")
    port = port or free_port()
    cmd = [sys.executable, "-m", "cockpit"]
    if runs_dir:
        cmd += ["--runs-dir", runs_dir]
    cmd += ["serve", "--host", "localhost", "--port", str(port)]
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_for_port(port, 30):
            log.seek(0)
            raise RuntimeError(f"the server did not listen on {port}: {log.read()[-500:]!r}")
        out.parent.mkdir(parents=True, exist_ok=True)
        url = f"http://localhost:{port}"
        out.write_bytes(browser_capture(browser, url, wait_ms / 1000, ready))
        return out
    finally:
        os.killpg(server.pid, 15)  # the server and the app processes it started
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("serve.png"))
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--runs-dir", default=None)
    parser.add_argument(
        "--wait-ms", type=int, default=15000, help="browser time to let the app draw"
    )
    args = parser.parse_args()
    try:
        print(screenshot(args.out, args.port, args.runs_dir, args.wait_ms))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"serve_screenshot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
