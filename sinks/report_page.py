"""The campaign report page (pure): HTML with inline SVG charts, no scripts, no external assets."""

from __future__ import annotations

import html
from typing import Any

from schemas.report import BREAKDOWN_KEYS

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.1rem;margin-top:2rem}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:.8rem}
.kpi{border:1px solid #d9dde6;border-radius:8px;padding:.7rem}
.kpi b{display:block;font-size:1.5rem} .kpi span{color:#5b6475;font-size:.85rem}
table{border-collapse:collapse;width:100%} td,th{padding:.3rem .5rem;border-bottom:1px solid #eceff4;text-align:right}
td:first-child,th:first-child{text-align:left} .muted{color:#5b6475}
"""


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _bar_chart(rows: list[dict[str, Any]], series: list[tuple[str, str, str]], title: str) -> str:
    width, height, pad = 900, 220, 30
    if not rows:
        return f'<p class="muted" data-chart="{html.escape(title)}">No data yet.</p>'
    peak = max(1, *(int(r.get(key, 0)) for r in rows for key, _, _ in series))
    slot = (width - 2 * pad) / len(rows)
    bar = max(2.0, slot / (len(series) + 1))
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" data-chart="{html.escape(title)}" '
        f'viewBox="0 0 {width} {height + 40}" width="100%">'
    ]
    for i, row in enumerate(rows):
        for j, (key, label, color) in enumerate(series):
            value = int(row.get(key, 0))
            h = (height - pad) * value / peak
            x = pad + i * slot + j * bar
            parts.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{html.escape(label)}: {value}</title></rect>'
            )
        label = str(row.get("hour", ""))[11:16]
        parts.append(f'<text x="{pad + i * slot:.1f}" y="{height + 15}" font-size="11">{label}</text>')
    for j, (_, label, color) in enumerate(series):
        parts.append(
            f'<rect x="{pad + j * 120}" y="{height + 25}" width="10" height="10" fill="{color}"/>'
            f'<text x="{pad + j * 120 + 14}" y="{height + 34}" font-size="12">{html.escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _funnel(report: dict[str, Any]) -> str:
    steps = [
        ("Sent", report["sent"]),
        ("Delivered", report["delivered"]),
        ("Opened (human)", report["opens_unique_human"]),
        ("Clicked", report["clicks_unique"]),
    ]
    top = max(1, int(steps[0][1]))
    rows = []
    for i, (label, value) in enumerate(steps):
        w = 700 * int(value) / top
        rows.append(
            f'<rect x="150" y="{i * 34}" width="{w:.1f}" height="26" fill="#3b6fd8"/>'
            f'<text x="0" y="{i * 34 + 18}" font-size="13">{label}</text>'
            f'<text x="{150 + w + 6:.1f}" y="{i * 34 + 18}" font-size="13" data-step="{label}">{value}</text>'
        )
    return (
        f'<svg role="img" aria-label="funnel" data-chart="funnel" viewBox="0 0 900 140" width="100%">'
        f"{''.join(rows)}</svg>"
    )


def render_report_page(campaign: str, report: dict[str, Any], hours: list[dict[str, Any]]) -> str:
    name = html.escape(campaign)
    kpis = [
        ("sent", str(report["sent"]), "Sent"),
        ("open_rate", _pct(report["open_rate"]), "Open rate (unique human)"),
        ("click_rate", _pct(report["click_rate"]), "Click rate"),
        ("bounce_rate", _pct(report["bounce_rate"]), "Bounce rate"),
        ("block_rate", _pct(report["block_rate"]), "Blocked (sender-side refusals)"),
        ("complaint_rate", _pct(report["complaint_rate"]), "Complaint rate"),
        ("unsubscribes", str(report["unsubscribes"]), "Unsubscribes"),
        ("opens_unique_human", str(report["opens_unique_human"]), "Human openers"),
        ("opens_machine", str(report["opens_machine"]), "Machine opens (proxies, scanners)"),
    ]
    cards = "".join(
        f'<div class="kpi" data-kpi="{key}"><b>{value}</b><span>{label}</span></div>' for key, value, label in kpis
    )
    table = "".join(
        f'<tr><td>{html.escape(k)}</td><td data-key="{html.escape(k)}">{html.escape(str(v))}</td></tr>'
        for k, v in report.items()
        if k not in BREAKDOWN_KEYS
    )
    reasons = "".join(
        f'<tr><td>{html.escape(r)}</td><td data-reason="{html.escape(r)}">{n}</td></tr>'
        for r, n in report.get("bounces_by_reason", {}).items()
    )
    providers = "".join(
        f"<tr><td>{html.escape(p)}</td>"
        + "".join(f"<td>{cells.get(c, 0)}</td>" for c in ("hard", "soft", "block"))
        + "</tr>"
        for p, cells in report.get("bounces_by_provider", {}).items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Campaign {name} | mailpulse</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body>
<h1>Campaign <span id="campaign">{name}</span></h1>
<p class="muted">From the ClickHouse events store; counts are distinct, replays never change them.</p>
<section class="kpis">{cards}</section>
<h2>Opens per hour</h2>
{
        _bar_chart(
            hours,
            [("opens_unique_human", "human openers", "#3b6fd8"), ("opens_machine", "machine opens", "#b0b7c6")],
            "opens per hour",
        )
    }
<h2>Clicks per hour</h2>
{
        _bar_chart(
            hours,
            [("clicks_total", "clicks", "#1f9d6b"), ("clicks_unique", "unique clickers", "#86d0b0")],
            "clicks per hour",
        )
    }
<h2>Funnel</h2>
{_funnel(report)}
<h2>Bounced and blocked messages by reason</h2>
<table data-table="reasons"><tbody>{reasons or '<tr><td class="muted">none</td></tr>'}</tbody></table>
<h2>By mailbox provider</h2>
<table data-table="providers"><thead><tr><th></th><th>hard</th><th>soft</th><th>block</th></tr></thead>
<tbody>{providers or '<tr><td class="muted">none</td></tr>'}</tbody></table>
<h2>All figures</h2>
<table><tbody>{table}</tbody></table>
</body></html>
"""
