"""docs/settings.md, and the effective settings, made from the settings' declarations (schemas/settings/)."""

from __future__ import annotations

from typing import Any

from schemas.settings import GROUPS, Settings, declarations

HEADER = """# Settings

Every setting is a `MAILPULSE_*` environment variable, parsed once at start-up into
`schemas.settings.Settings`; a bad value stops the command with a one-line message and exit status 2.
An empty variable means the default. *Read by* names the processes that use it (`cli`: the `mailpulse`
command; `stack`: `mailpulse up`, which also passes every variable on to the services it starts).

This page is generated from the declarations in `schemas/settings/` (`make docs`); a test fails when it
is stale. `mailpulse settings` prints the values in effect, secrets masked.
"""

SECRET = ("SECRET_KEYS", "API_KEYS", "SENDGRID_PUBLIC_KEY", "MAILGUN_SIGNING_KEY", "POSTMARK_WEBHOOK_AUTH")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_markdown() -> str:
    lines = [HEADER]
    for title, group in GROUPS:
        lines += [f"## {title}", "", "| variable | default | read by | what it does |", "| --- | --- | --- | --- |"]
        for _, declared in declarations(group):
            readers = ", ".join(str(service) for service in declared.services)
            lines.append(f"| `{declared.env}` | {_cell(declared.shown)} | {readers} | {_cell(declared.doc)} |")
        lines.append("")
    return "\n".join(lines)


def effective(settings: Settings) -> dict[str, Any]:
    """Every setting's value in effect, by variable; secrets shown only as set or not."""
    out: dict[str, Any] = {}
    for field, declared in declarations():
        value = getattr(settings, field.name)
        if declared.env.removeprefix("MAILPULSE_") in SECRET:
            value = "(none)" if not value else "(the development key)" if value == field.default else "(set)"
        elif isinstance(value, tuple):
            value = ",".join(f"{v[0]}={v[1]:g}" if isinstance(v, tuple) else str(v) for v in value)
        out[declared.env] = str(value)
    return out
