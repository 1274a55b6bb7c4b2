"""Typed settings, parsed once from ``MAILPULSE_*`` environment variables.

Each setting is declared once, in the module of the service that owns it (:mod:`.common`, :mod:`.edge`,
:mod:`.worker`, :mod:`.sink`, :mod:`.stack`), with its variable, default, parser, readers and doc
(:func:`schemas.settings.declare.setting`). :meth:`Settings.from_env` and docs/settings.md
(``python -m mailpulse settings --markdown``) are made from those declarations. Every part receives a
:class:`Settings` instance from its entry point; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.settings.common import DEV_SECRET_KEY, CommonSettings, min_insync_replicas
from schemas.settings.declare import Declared, Service, SettingsError
from schemas.settings.edge import EdgeSettings
from schemas.settings.sink import SinkSettings
from schemas.settings.stack import LocalStackSettings
from schemas.settings.worker import WorkerSettings

MIN_UNSUBSCRIBE_DAYS = 30
# Each group's settings in the order the docs list them: every service's first, then the edge's, ...
GROUPS: tuple[tuple[str, type], ...] = (
    ("Every service", CommonSettings),
    ("Edge", EdgeSettings),
    ("Worker", WorkerSettings),
    ("Sink", SinkSettings),
    ("Local stack", LocalStackSettings),
)


@dataclass(frozen=True)
class Settings(LocalStackSettings, SinkSettings, WorkerSettings, EdgeSettings, CommonSettings):
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        derived: list[tuple[str, Declared]] = []
        for field, declared in declarations(cls):
            raw = env.get(declared.env, "")
            if raw.strip():
                values[field.name] = declared.parse(declared.env, raw)
            elif declared.derive is not None:
                derived.append((field.name, declared))
            else:
                values[field.name] = field.default
        for name, declared in derived:
            assert declared.derive is not None
            values[name] = declared.derive(values)
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        """What no single setting can judge alone."""
        dkim = (self.dkim_selector, self.dkim_domain, self.dkim_private_key_file)
        if any(dkim) and not all(dkim):
            raise SettingsError(
                "DKIM needs all of MAILPULSE_DKIM_SELECTOR, MAILPULSE_DKIM_DOMAIN and MAILPULSE_DKIM_PRIVATE_KEY_FILE"
            )
        if self.sinks > 1 and self.uses_embedded_clickhouse:
            raise SettingsError(
                f"MAILPULSE_SINKS={self.sinks} needs a ClickHouse server (MAILPULSE_CLICKHOUSE_URL=http://...): "
                "the embedded store belongs to one process"
            )
        if 0 < self.unsubscribe_token_max_age_days < MIN_UNSUBSCRIBE_DAYS:
            # CAN-SPAM: an unsubscribe link must work for at least 30 days after the message was sent.
            raise SettingsError(
                f"MAILPULSE_UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS must be 0 (no limit) or >= {MIN_UNSUBSCRIBE_DAYS}"
            )

    @property
    def uses_local_kafka(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        return ",".join(f"127.0.0.1:{self.local_kafka_port + 2 * n}" for n in range(self.local_kafka_brokers))

    @property
    def min_insync_replicas(self) -> int:
        return min_insync_replicas(self.replication_factor)

    @property
    def uses_embedded_clickhouse(self) -> bool:
        return self.clickhouse_url.startswith("chdb:")

    @property
    def uses_dev_secret(self) -> bool:
        return DEV_SECRET_KEY in self.secret_keys

    def refuse_development_secret(self) -> None:
        """SettingsError unless the secrets are the operator's own, or this is a development stack.

        With the published development key anyone can mint unsubscribe and click tokens.
        """
        if self.uses_dev_secret and self.environment != "development":
            raise SettingsError(
                "MAILPULSE_SECRET_KEYS is unset or holds the published development key, so anyone "
                "could forge unsubscribe and click links; set your own secret (or MAILPULSE_ENV=development "
                "for a local stack)"
            )


def declarations(group: type = Settings) -> Iterator[tuple[dataclasses.Field[Any], Declared]]:
    """Every setting of ``group`` (a Settings class, or one of its service groups), in declaration order."""
    for field in dataclasses.fields(group):
        yield field, field.metadata["setting"]


__all__ = ["DEV_SECRET_KEY", "GROUPS", "MIN_UNSUBSCRIBE_DAYS", "Service", "Settings", "SettingsError", "declarations"]
