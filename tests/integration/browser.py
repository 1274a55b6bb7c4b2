"""Headless Chromium (Debian's package) driven over the DevTools protocol, with aiohttp's websocket client."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
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


def render_page(url: str, headers: dict[str, str], screenshot: Path, script: str, port: int = 19222) -> Any:
    """Open ``url`` with extra request headers, save a PNG screenshot, return ``script``'s value."""
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
        page = next(t for t in targets if t.get("type") == "page")
        return asyncio.run(_render(page["webSocketDebuggerUrl"], url, headers, screenshot, script))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
