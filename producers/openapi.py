"""OpenAPI 3.1 descriptions of the public and the operator edge (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

_TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 4096},
    "description": "opaque signed link token",
}
_TEXT_ERROR = {"content": {"text/plain": {"schema": {"type": "string"}}}}
_JSON_ERROR = {
    "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
}
_WEBHOOK_RESPONSES = {
    "200": {
        "description": "verified; every event acknowledged by Kafka",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    "400": {"description": "not the provider's payload", **_JSON_ERROR},
    "401": {"description": "missing or bad signature, stale timestamp or replay", **_JSON_ERROR},
    "403": {"description": "provider not configured or topic not allowed", **_JSON_ERROR},
    "413": {"description": "body too large", **_TEXT_ERROR},
    "503": {"description": "Kafka did not acknowledge; retry", **_JSON_ERROR},
}
_OPS = {
    "/healthz": {"get": {"summary": "liveness", "responses": {"200": {"description": "alive", **_TEXT_ERROR}}}},
    "/readyz": {
        "get": {
            "summary": "broker reachable",
            "responses": {
                "200": {"description": "ready", **_TEXT_ERROR},
                "503": {"description": "broker unreachable", **_TEXT_ERROR},
            },
        }
    },
}
# Only on the operator edge, behind its key: counts of tokens refused and events published say too
# much to the public.
_METRICS = {
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics of both edges",
            "responses": {"200": {"description": "metrics", **_TEXT_ERROR}},
        }
    },
}


def _webhook(summary: str, media: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {media: {"schema": {}}}},
            "responses": _WEBHOOK_RESPONSES,
        }
    }


def public_spec() -> dict[str, Any]:
    form = {
        "type": "object",
        "properties": {
            "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]},
            "confirm": {"type": "string", "enum": ["yes"]},
            "scope": {"type": "string", "enum": ["list", "all"]},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mailpulse public edge", "version": "1"},
        "paths": {
            "/o/{token}.gif": {
                "get": {
                    "summary": "open pixel",
                    "parameters": [_TOKEN],
                    "responses": {
                        "200": {
                            "description": "1x1 transparent GIF",
                            "content": {"image/gif": {"schema": {"type": "string"}}},
                        },
                        "404": {"description": "invalid token", **_TEXT_ERROR},
                    },
                }
            },
            "/c/{token}": {
                "get": {
                    "summary": "click redirect",
                    "parameters": [_TOKEN],
                    "responses": {
                        "302": {"description": "redirect to the URL sealed in the token"},
                        "404": {"description": "invalid token", **_TEXT_ERROR},
                    },
                }
            },
            "/u/{token}": {
                "get": {
                    "summary": "unsubscribe page (changes nothing)",
                    "parameters": [_TOKEN],
                    "responses": {
                        "200": {
                            "description": "confirmation page",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        },
                        "404": {"description": "invalid token", **_TEXT_ERROR},
                    },
                },
                "post": {
                    "summary": "RFC 8058 one-click or the page's form",
                    "parameters": [_TOKEN],
                    "requestBody": {
                        "content": {
                            "application/x-www-form-urlencoded": {"schema": form},
                            "multipart/form-data": {"schema": form},
                        }
                    },
                    "responses": {
                        "200": {"description": "unsubscribed (acknowledged by Kafka)", **_TEXT_ERROR},
                        "400": {"description": "neither one-click nor confirmation", **_TEXT_ERROR},
                        "404": {"description": "invalid token", **_TEXT_ERROR},
                        "413": {"description": "body too large", **_TEXT_ERROR},
                        "415": {"description": "unsupported content type", **_TEXT_ERROR},
                        "503": {"description": "Kafka did not acknowledge; Retry-After", **_TEXT_ERROR},
                    },
                },
            },
            "/webhooks/ses": _webhook("Amazon SES via SNS (signature v1/v2)", "text/plain"),
            "/webhooks/sendgrid": _webhook("SendGrid Event Webhook (ECDSA)", "application/json"),
            "/webhooks/mailgun": _webhook("Mailgun (HMAC, timestamp window, replay guard)", "application/json"),
            "/webhooks/postmark": _webhook("Postmark (basic auth)", "application/json"),
            **_OPS,
        },
    }


_CAMPAIGN = {"name": "campaign", "in": "path", "required": True, "schema": {"type": "string"}}


def operator_spec() -> dict[str, Any]:
    campaign = {
        "type": "object",
        "required": ["campaign_id", "subject", "recipients"],
        "properties": {
            "campaign_id": {"type": "string"},
            "subject": {"type": "string"},
            "html": {"type": "string"},
            "text": {"type": "string"},
            "list_id": {"type": "string"},
            "tracking": {"type": "string", "enum": ["full", "aggregate", "off"]},
            "recipients": {
                "type": "array",
                "items": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}},
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mailpulse operator edge", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/campaigns": {
                "post": {
                    "summary": "enqueue a campaign",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": campaign}}},
                    "responses": {
                        "202": {
                            "description": "queued",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": {"description": "not JSON", **_JSON_ERROR},
                        "401": {"description": "no key", **_JSON_ERROR},
                        "422": {"description": "unusable campaign", **_JSON_ERROR},
                        "503": {"description": "Kafka did not acknowledge", **_JSON_ERROR},
                    },
                },
                "get": {
                    "summary": "every campaign's state and progress",
                    "responses": {
                        "200": {"description": "campaigns"},
                        "503": {"description": "no worker", **_JSON_ERROR},
                    },
                },
            },
            "/campaigns/{campaign}": {
                "get": {
                    "summary": "a campaign's state (active, paused, cancelled) and progress",
                    "parameters": [_CAMPAIGN],
                    "responses": {"200": {"description": "status"}, "503": {"description": "no worker", **_JSON_ERROR}},
                }
            },
            "/campaigns/{campaign}/{action}": {
                "post": {
                    "summary": "pause, resume or cancel a campaign (the worker's gate applies it within moments)",
                    "parameters": [
                        _CAMPAIGN,
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": ["pause", "resume", "cancel"]},
                        },
                    ],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"reason": {"type": "string"}}}
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "already in that state"},
                        "202": {"description": "published, acknowledged by Kafka"},
                        "404": {"description": "no such action", **_JSON_ERROR},
                        "409": {"description": "refused by the campaign's state (a cancel is final)", **_JSON_ERROR},
                        "503": {"description": "Kafka did not acknowledge", **_JSON_ERROR},
                    },
                }
            },
            **_OPS,
            **_METRICS,
        },
    }
