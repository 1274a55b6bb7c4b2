"""Headless Chromium (Debian's package) driven over the DevTools protocol, with aiohttp's websocket client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1200,1400",
]


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise RuntimeError("chromium is not installed: run `make browser-deps` (Debian package chromium)")
    return binary


async def _render(ws_url: str, url: str, headers: dict[str, str], screenshot: Path, script: str) -> Any:
    counter = itertools.count(1)
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:

        async def call(method: str, **params: Any) -> Any:
            call_id = next(counter)
            await ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
            async for message in ws:
                data = json.loads(message.data)
                if data.get("id") == call_id:
                    if "error" in data:
                        raise RuntimeError(f"{method}: {data['error']}")
                    return data.get("result", {})
            raise RuntimeError("DevTools connection closed")

        await call("Network.enable")
        await call("Network.setExtraHTTPHeaders", headers=headers)
        await call("Page.enable")
        await call("Page.navigate", url=url)
        for _ in range(100):
            state = await call("Runtime.evaluate", expression="document.readyState", returnByValue=True)
            if state["result"].get("value") == "complete":
                break
            await asyncio.sleep(0.1)
        shot = await call("Page.captureScreenshot", format="png")
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        result = await call("Runtime.evaluate", expression=script, returnByValue=True)
        return result["result"].get("value")


@contextlib.contextmanager
def chromium(port: int) -> Iterator[str]:
    """A headless Chromium with a new profile; yields the DevTools websocket URL of its page."""
    profile = tempfile.mkdtemp(prefix="mailpulse-chromium-")
    proc = subprocess.Popen(
        [
            chromium_binary(),
            *CHROMIUM_FLAGS,
            f"--remote-debugging-port={port}",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=1).json()
                if any(t.get("type") == "page" for t in targets):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield next(t for t in targets if t.get("type") == "page")["webSocketDebuggerUrl"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def render_page(url: str, headers: dict[str, str], screenshot: Path, script: str, port: int = 19222) -> Any:
    """Open ``url`` with extra request headers, save a PNG screenshot, return ``script``'s value."""
    with chromium(port) as ws_url:
        return asyncio.run(_render(ws_url, url, headers, screenshot, script))


class Page:
    """One tab driven as a person uses it: open a URL, type into a field, click a button, read what shows.
    No header is injected: what the site needs it must set itself (cookies)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws, self._ids = ws, itertools.count(1)

    async def call(self, method: str, **params: Any) -> Any:
        call_id = next(self._ids)
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        async for message in self._ws:
            data = json.loads(message.data)
            if data.get("id") == call_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
        raise RuntimeError("DevTools connection closed")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """``expression``'s value once it is truthy (the page may be loading a new document meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await self.evaluate(expression)
            except RuntimeError:
                value = None  # the context was replaced by a navigation
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            await asyncio.sleep(0.1)

    async def goto(self, url: str) -> None:
        """Open ``url`` (and whatever it redirects to), returning once the new document has loaded."""
        await self.evaluate("window.__left = true")  # gone with the document the navigation replaces
        await self.call("Page.navigate", url=url)
        await self.wait_for("!window.__left && document.readyState === 'complete'")

    async def type(self, selector: str, text: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.call("Input.insertText", text=text)

    async def click(self, selector: str) -> None:
        """Click the element like a mouse does, in the middle of where it is shown."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def open_page(ws_url: str) -> AsyncIterator[Page]:
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        page = Page(ws)
        await page.call("Page.enable")
        yield page
