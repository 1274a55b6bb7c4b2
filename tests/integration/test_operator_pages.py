"""The operator's pages, used in headless Chromium as a person uses them, and refused to anyone else."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

import httpx

from schemas.settings import Settings
from tests.integration.browser import chromium, open_page
from tests.integration.helpers import operator, post_campaign, stats, unique, wait_until


def test_sign_in_open_the_list_and_pause_a_campaign_with_its_button(stack: Settings) -> None:
    campaign = unique("page")
    # A campaign that cannot finish meanwhile: its recipients' domain takes 4 messages a second.
    assert post_campaign(stack, campaign, [f"r{i}@ratelimited.example" for i in range(200)]).status_code == 202
    wait_until(lambda: stats(stack, campaign)["sent"] > 0, what="the campaign sending")
    base = operator(stack)

    async def as_a_person() -> dict[str, str]:
        with chromium(19223) as ws_url:
            async with open_page(ws_url) as page:
                await page.goto(f"{base}/ui/campaigns")  # not signed in: sent to the sign-in form
                assert await page.wait_for("location.pathname === '/login' && !!document.querySelector('#key')")
                await page.type("#key", stack.api_keys[0])
                await page.click("button[type=submit]")
                row = f'tr[data-campaign="{campaign}"]'
                await page.wait_for(f"!!document.querySelector('{row}')", timeout=15)
                before = await page.evaluate(f"document.querySelector('{row} .state').textContent")
                await page.click(f'{row} button[data-action="pause"]')
                await page.wait_for(f"document.querySelector('{row} .state')?.textContent === 'paused'", timeout=15)
                note = await page.evaluate("document.querySelector('.note')?.textContent")
                cookie = await page.call("Network.getCookies", urls=[base])
                await page.screenshot(stack.var_dir / "campaign-list.png")
                return {"before": before, "note": note, "cookie": json.dumps(cookie["cookies"])}

    seen = asyncio.run(as_a_person())
    assert seen["before"] == "active" and seen["note"] == f"{campaign}: pause applied"
    [cookie] = json.loads(seen["cookie"])
    assert cookie["name"] == "mailpulse_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    state = httpx.get(f"{base}/campaigns/{campaign}", headers={"X-API-Key": stack.api_keys[0]}).json()
    assert state["state"] == "paused" and state["source"] == "operator"


def test_pages_are_refused_without_a_session_with_a_forged_cookie_and_without_the_form_token(stack: Settings) -> None:
    base = operator(stack)
    for cookies in ({}, {"mailpulse_session": "eyJvcGVyYXRvciI6ICJ4In0=.forged.signature"}):
        answer = httpx.get(f"{base}/ui/campaigns", cookies=cookies, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), cookies
        assert "Campaigns" not in answer.text
    # A wrong key at the form opens nothing.
    with httpx.Client(base_url=base, follow_redirects=False) as browser:
        assert browser.post("/login", data={"key": "not-a-key", "next": "/ui/campaigns"}).status_code == 401
        assert browser.get("/ui/campaigns").status_code == 303
        # Signed in, a form posted without this session's token (from another site, say) is refused.
        assert browser.post("/login", data={"key": stack.api_keys[0], "next": "/ui/campaigns"}).status_code == 303
        assert browser.get("/ui/campaigns").status_code == 200
        campaign = unique("csrf")
        refused = browser.post(f"/ui/campaigns/{campaign}/pause", data={"csrf": "guessed"})
        assert refused.status_code == 403
    # The JSON routes still want the key itself.
    assert httpx.get(f"{base}/campaigns").status_code == 401


def test_report_open_prints_a_short_lived_link_that_signs_the_browser_in(stack: Settings) -> None:
    campaign = unique("open")
    done = subprocess.run(
        [sys.executable, "-m", "mailpulse", "report", "--campaign", campaign, "--open"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    assert re.fullmatch(rf"{re.escape(operator(stack))}/open\?link=\S+", link), link
    with httpx.Client(follow_redirects=False) as browser:
        opened = browser.get(link)
        assert opened.status_code == 303 and opened.headers["location"] == f"/ui/campaigns/{campaign}/report"
        assert browser.get(f"{operator(stack)}/ui/campaigns").status_code == 200  # the session it opened
        forged = browser.get(link[:-3] + "abc")
        assert (forged.status_code in (401, 303) and forged.status_code != 200) or "forged" in forged.text
