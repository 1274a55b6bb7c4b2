"""The local stack's operator API key: made by `mailpulse up` when MAILPULSE_API_KEYS is unset, kept with the
stack's data (``$MAILPULSE_VAR_DIR/operator-key``, readable by its owner only) and found there by the
commands, so that `mailpulse report`, `stats`, `sql` and `suppression` work against it as they are.
A stack elsewhere still needs MAILPULSE_API_KEYS."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mailpulse.errors import CliError
from schemas.auth import auth_headers
from schemas.settings import Settings


def key_file(settings: Settings) -> Path:
    return settings.var_dir / "operator-key"


def _stored(settings: Settings) -> str:
    try:
        return key_file(settings).read_text().strip()
    except OSError:
        return ""


def stack_keys(settings: Settings) -> tuple[str, ...]:
    """The keys the local stack's services run with: MAILPULSE_API_KEYS, else the stack's own, made once."""
    if settings.api_keys:
        return settings.api_keys
    key = _stored(settings)
    if not key:
        key = secrets.token_urlsafe(24)
        path = key_file(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(key + "\n")
    return (key,)


def operator_keys(settings: Settings) -> tuple[str, ...]:
    """The keys a command presents: MAILPULSE_API_KEYS, else the local stack's."""
    if settings.api_keys:
        return settings.api_keys
    key = _stored(settings)
    return (key,) if key else ()


def operator_headers(settings: Settings) -> dict[str, str]:
    keys = operator_keys(settings)
    if not keys:
        raise CliError(
            f"no operator API key: set MAILPULSE_API_KEYS, or start the local stack (`make up`), which keeps one "
            f"in {key_file(settings)}",
            status=2,
        )
    return auth_headers(keys)
