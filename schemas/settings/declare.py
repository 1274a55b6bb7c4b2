"""How a setting is declared: its variable, default, parser, the services that read it and one line of doc.

A setting is a field of :class:`schemas.settings.Settings` whose default is made by :func:`setting`; the
declaration rides on the field's metadata, and everything else (``Settings.from_env``, the generated
docs/settings.md) is read from it. An empty variable means the default, as an unset one does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")
# (variable name, raw value) -> value, or SettingsError with a message naming the variable.
Parser = Callable[[str, str], Any]
# The values parsed so far -> this setting's default, for defaults made of other settings.
Derive = Callable[[Mapping[str, Any]], Any]


class SettingsError(ValueError):
    """A MAILPULSE_* variable holds a value that cannot be used."""


class Service(enum.StrEnum):
    """Who reads a setting: the processes of the stack, and the command line."""

    EDGE = "edge"
    WORKER = "worker"
    SINK = "sink"
    CLI = "cli"
    STACK = "stack"  # the local stack's supervisor (`mailpulse up`, `make demo`)


ALL = (Service.EDGE, Service.WORKER, Service.SINK, Service.CLI, Service.STACK)


@dataclass(frozen=True)
class Declared:
    env: str
    parse: Parser
    services: tuple[Service, ...]
    doc: str
    shown: str  # the default as the docs show it
    derive: Derive | None = None


def setting(
    env: str,
    default: T,
    doc: str,
    *,
    read_by: tuple[Service, ...],
    parse: Parser | None = None,
    shown: str | None = None,
    derive: Derive | None = None,
) -> T:
    """A field of Settings read from ``MAILPULSE_<env>``."""
    declared = Declared(
        f"MAILPULSE_{env}", parse or _parser_for(default), read_by, doc, shown or _shown(default), derive
    )
    return cast(T, field(default=default, metadata={"setting": declared}))


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if default in ("", ()):
        return "(none)"
    if isinstance(default, tuple):
        return f"`{','.join(default)}`"
    return f"`{default}`"


def _parser_for(default: Any) -> Parser:
    if isinstance(default, bool):
        return boolean
    if isinstance(default, int):
        return integer()
    if isinstance(default, float):
        return number()
    if isinstance(default, tuple):
        return comma_list
    if isinstance(default, Path):
        return path
    return text


def integer(minimum: int = 0) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


def number(above: float | None = None) -> Parser:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if above is not None and not value > above:
            raise SettingsError(f"{name} must be above {above:g}, got {raw}")
        return value

    return parse


def boolean(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def text(name: str, raw: str) -> str:
    return raw.strip()


def base_url(name: str, raw: str) -> str:
    return raw.strip().rstrip("/")


def upper(name: str, raw: str) -> str:
    return raw.strip().upper()


def path(name: str, raw: str) -> Path:
    return Path(raw).resolve()


def comma_list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def choice(*allowed: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise SettingsError(f"{name} must be {' or '.join(allowed)}, got {raw!r}")
        return value

    return parse


def rates(name: str, raw: str) -> tuple[tuple[str, float], ...]:
    """``gmail.com=50,yahoo.com=20,*=100``: messages per second per recipient domain, ``*`` for the rest."""
    parsed = []
    for part in comma_list(name, raw):
        domain, sep, value = part.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = 0.0
        if not sep or not domain.strip() or rate <= 0:
            raise SettingsError(f"{name} takes domain=messages_per_second pairs (and *=rate), got {part!r}")
        parsed.append((domain.strip().lower(), rate))
    return tuple(parsed)
