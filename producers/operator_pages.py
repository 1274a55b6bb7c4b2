"""The operator's pages on the operator edge: sign in, the campaign list with its buttons, each report.

``/login`` takes an API key and opens a session (:mod:`producers.operator_session`); ``/open`` does the same
from a short-lived signed link. ``/ui/campaigns`` lists every campaign with its state, progress and rates,
and pause, resume and cancel buttons (forms carrying the session's CSRF token; a button returns once the
worker applied the change). ``/ui/campaigns/{id}/report`` is the sink's report page.
"""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from producers.campaign_routes import apply_action, worker_client
from producers.campaign_status import WorkerUnavailable
from producers.context import EdgeContext
from producers.operator_session import PAGES, csrf_ok, open_session, read_link
from schemas.auth import auth_headers, key_is_valid
from schemas.campaigns import CampaignAction, Verdict, judge

# How long a button waits for the worker to apply its change before showing the list anyway.
APPLY_WAIT_SECONDS = 3.0
LIST = "/ui/campaigns"

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1d2330; }
h1 { font-size: 1.4rem; } table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #e3e6ec; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.state { font-weight: 600; } .paused { color: #b26b00; } .cancelled { color: #a0252d; } .active { color: #1f7a3a; }
form.inline { display: inline; } button { margin-right: .3rem; } .note { background: #eef6ee; padding: .5rem; }
.error { background: #fbeaea; padding: .5rem; } label { display: block; margin: 1rem 0 .3rem; }
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'"}
    return HTMLResponse(document, status_code=status, headers=headers)


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith(PAGES) and "//" not in target else LIST


def _login_form(target: str, error: str = "") -> str:
    problem = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return (
        f"<h1>mailpulse: sign in</h1>{problem}"
        f'<form method="post" action="/login"><input type="hidden" name="next" value="{html.escape(target)}">'
        '<label for="key">Operator API key</label>'
        '<input id="key" name="key" type="password" autocomplete="current-password" required size="40">'
        ' <button type="submit">Sign in</button></form>'
    )


async def login_page(request: Request) -> Response:
    return _page("Sign in", _login_form(_safe_next(request.query_params.get("next"))))


async def login(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.edge
    form = await request.form()
    key, target = str(form.get("key", "")), _safe_next(str(form.get("next", "")))
    if not key_is_valid(key, ctx.settings.api_keys):
        return _page("Sign in", _login_form(target, "That is not an operator key."), status=401)
    open_session(request.session, key)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def open_link(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.edge
    opened = read_link(request.query_params.get("link", ""), ctx.settings.api_keys)
    if opened is None:
        return _page("Sign in", _login_form(LIST, "That link is forged or has expired: sign in."), status=401)
    key, path = opened
    open_session(request.session, key)
    return RedirectResponse(path, status_code=303)


def _buttons(campaign: str, state: str, csrf: str) -> str:
    forms = []
    for action in CampaignAction:
        if judge(action, state)[0] is Verdict.CHANGE:
            forms.append(
                f'<form class="inline" method="post" action="{LIST}/{quote(campaign, safe="")}/{action}">'
                f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
                f'<button type="submit" data-action="{action}">{action.capitalize()}</button></form>'
            )
    return "".join(forms)


def _row(status: dict[str, Any], csrf: str) -> str:
    campaign, state = status["campaign"], status["state"]
    progress = f"{status['progress'] * 100:.1f}%" if status["progress"] is not None else "-"
    rates = "".join(f'<td class="n">{status[k] * 100:.2f}%</td>' for k in ("open_rate", "click_rate", "bounce_rate"))
    report = f"{LIST}/{quote(campaign, safe='')}/report"
    return (
        f'<tr data-campaign="{html.escape(campaign)}"><td><a href="{report}">{html.escape(campaign)}</a></td>'
        f'<td class="state {state}">{state}</td><td class="n">{progress}</td><td class="n">{status["sent"]}</td>'
        f'{rates}<td class="n">{status["complaint_rate"] * 100:.3f}%</td>'
        f"<td>{_buttons(campaign, state, csrf)}</td></tr>"
    )


async def campaign_list(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.edge
    try:
        statuses = await worker_client(ctx).statuses()
    except WorkerUnavailable as exc:
        return _page("Campaigns", f'<h1>Campaigns</h1><p class="error">{html.escape(str(exc))}</p>', status=503)
    done = request.query_params.get("done", "")
    note = f'<p class="note">{html.escape(done)}</p>' if done else ""
    head = "".join(
        f"<th>{h}</th>"
        for h in ("campaign", "state", "progress", "sent", "opens", "clicks", "bounces", "complaints", "")
    )
    rows = "".join(_row(status, request.session.get("csrf", "")) for status in statuses)
    signout = '<form class="inline" method="post" action="/logout"><button>Sign out</button></form>'
    body = f"<h1>Campaigns</h1>{note}<table><tr>{head}</tr>{rows}</table><p>{signout}</p>"
    return _page("Campaigns", body)


async def change_campaign(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.edge
    form = await request.form()
    if not csrf_ok(request.session, str(form.get("csrf", "")) or None):
        return _page("Refused", '<p class="error">This form is not from this session: reload the list.</p>', 403)
    try:
        action = CampaignAction(request.path_params["action"])
    except ValueError:
        return _page("Refused", '<p class="error">No such action.</p>', 404)
    campaign = request.path_params["campaign"]
    status, answer = await apply_action(ctx, campaign, action, reason="from the operator's page")
    if status == 202:
        await _applied(ctx, campaign, answer["event_id"])
    outcome = {202: f"{campaign}: {action} applied", 200: f"{campaign}: {answer.get('note', '')}"}.get(
        status, f"{campaign}: {action} refused ({answer.get('error', '')})"
    )
    return RedirectResponse(f"{LIST}?done={quote(outcome)}", status_code=303)


async def _applied(ctx: EdgeContext, campaign: str, event_id: str) -> None:
    deadline = time.monotonic() + APPLY_WAIT_SECONDS
    client = worker_client(ctx)
    while time.monotonic() < deadline:
        try:
            state = await client.state(campaign)
        except WorkerUnavailable:
            return
        if state is not None and state.get("changed_by") == event_id:
            return
        await asyncio.sleep(0.05)


async def report_page(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.edge
    campaign = quote(request.path_params["campaign"], safe="")
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                f"{ctx.settings.sink_url}/reports/{campaign}/page",
                headers=auth_headers(ctx.settings.api_keys),
                timeout=60,
            )
    except httpx.HTTPError as exc:
        return _page("Report", f'<p class="error">the sink did not answer: {html.escape(str(exc))}</p>', status=503)
    return HTMLResponse(answer.text, status_code=answer.status_code, headers={"Cache-Control": "no-store"})


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/open", open_link, methods=["GET"]),
    Route(LIST, campaign_list, methods=["GET"]),
    Route(LIST + "/{campaign}/report", report_page, methods=["GET"]),
    Route(LIST + "/{campaign}/{action}", change_campaign, methods=["POST"]),
]
