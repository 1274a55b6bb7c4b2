"""Settings of the edges: the public routes (tracking, unsubscribe, webhooks, bounce mail) and the operator's."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.settings.declare import Service, base_url, choice, comma_list, integer, setting

EDGE, WORKER, SINK, CLI, STACK = Service.EDGE, Service.WORKER, Service.SINK, Service.CLI, Service.STACK


@dataclass(frozen=True)
class EdgeSettings:
    edge_host: str = setting("EDGE_HOST", "127.0.0.1", "address the public edge listens on", read_by=(EDGE, STACK))
    edge_port: int = setting("EDGE_PORT", 8080, "port of the public edge", read_by=(EDGE, STACK), parse=integer(1))
    operator_port: int = setting(
        "OPERATOR_PORT",
        8081,
        "port of the operator edge (on MAILPULSE_PRIVATE_HOST)",
        read_by=(EDGE, CLI),
        parse=integer(1),
    )
    click_token_max_age_days: int = setting(
        "CLICK_TOKEN_MAX_AGE_DAYS", 0, "older click links get 410 (0: no limit)", read_by=(EDGE,)
    )
    unsubscribe_token_max_age_days: int = setting(
        "UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS",
        0,
        "older unsubscribe links get 410 (0: no limit; at least 30 days, as CAN-SPAM requires)",
        read_by=(EDGE,),
    )
    keep_full_ip: bool = setting(
        "KEEP_FULL_IP", False, "keep full client IPs on events (else truncated)", read_by=(EDGE,)
    )
    pixel_offload: bool = setting(
        "PIXEL_OFFLOAD",
        True,
        "the pixel only authenticates its token in the request; helper processes decrypt, classify and publish"
        " (one on idle CPU, one for when there is none)",
        read_by=(EDGE,),
    )
    edge_server: str = setting(
        "EDGE_SERVER",
        "granian",
        "the edges' HTTP server: `granian` (Rust, hyper) or `uvicorn` (uvloop + httptools)",
        read_by=(EDGE,),
        parse=choice("granian", "uvicorn"),
    )
    max_head_bytes: int = setting(
        "MAX_HEAD_BYTES",
        32 * 1024,
        "request line and headers limit of the edges (431 above, and at most 100 headers)",
        read_by=(EDGE,),
        parse=integer(4096),
    )
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES",
        64 * 1024,
        "request body limit of the edges (413 above), webhooks apart",
        read_by=(EDGE,),
        parse=integer(1024),
    )
    publish_timeout_seconds: float = setting(
        "PUBLISH_TIMEOUT_SECONDS",
        5.0,
        "how long an unsubscribe (or a CLI publish) waits for Kafka before 503",
        read_by=(EDGE, CLI),
    )
    edge_queue_max_messages: int = setting(
        "EDGE_QUEUE_MAX_MESSAGES",
        100_000,
        "bound of each edge producer's queue to Kafka; past it opens and clicks are shed and counted, unsubscribes "
        "and webhooks answer 503",
        read_by=(EDGE,),
        parse=integer(1),
    )
    edge_delivery_timeout_seconds: float = setting(
        "EDGE_DELIVERY_TIMEOUT_SECONDS",
        300.0,
        "how long the edge's records wait for the broker before they count as lost",
        read_by=(EDGE,),
    )
    bounce_smtp_port: int = setting(
        "BOUNCE_SMTP_PORT", 2526, "port of the edge's bounce-mail SMTP receiver (0: off)", read_by=(EDGE, STACK)
    )
    bounce_domain: str = setting(
        "BOUNCE_DOMAIN",
        "bounces.example.com",
        "domain of the VERP Return-Path (`bounces+<message>.<mac>@DOMAIN`); the receiver takes mail for it only",
        read_by=(EDGE, WORKER),
    )
    bounce_max_bytes: int = setting(
        "BOUNCE_MAX_BYTES",
        10 * 1024 * 1024,
        "largest mail the bounce receiver takes (552 above)",
        read_by=(EDGE,),
        parse=integer(1024),
    )
    bounce_keep_per_hour: int = setting(
        "BOUNCE_KEEP_PER_HOUR", 100, "mail kept for inspection per hour; past it counted and dropped", read_by=(EDGE,)
    )
    bounce_keep_max_mb: int = setting(
        "BOUNCE_KEEP_MAX_MB",
        100,
        "disk the mail kept for inspection may take; past it counted and dropped",
        read_by=(EDGE,),
    )
    sns_topic_arns: tuple[str, ...] = setting(
        "SNS_TOPIC_ARNS",
        (),
        "SNS topics `/webhooks/ses` accepts (none: the route answers 403)",
        read_by=(EDGE,),
        parse=comma_list,
        shown="(off: 403)",
    )
    sendgrid_public_key: str = setting(
        "SENDGRID_PUBLIC_KEY",
        "",
        "SendGrid's Event Webhook verification key, base64 DER",
        read_by=(EDGE,),
        shown="(off: 403)",
    )
    mailgun_signing_key: str = setting(
        "MAILGUN_SIGNING_KEY", "", "Mailgun's webhook signing key", read_by=(EDGE,), shown="(off: 403)"
    )
    postmark_webhook_auth: str = setting(
        "POSTMARK_WEBHOOK_AUTH", "", "`user:password` Postmark sends as basic auth", read_by=(EDGE,), shown="(off: 403)"
    )
    webhook_max_age_seconds: int = setting(
        "WEBHOOK_MAX_AGE_SECONDS",
        600,
        "accepted age of SendGrid and Mailgun timestamps",
        read_by=(EDGE,),
        parse=integer(1),
    )
    worker_url: str = setting(
        "WORKER_URL",
        "",
        "where the operator edge and the commands ask a worker for campaign states, live counts and lookups",
        read_by=(EDGE, CLI),
        parse=base_url,
        derive=lambda values: f"http://127.0.0.1:{values['worker_web_port']}",
        shown="`http://127.0.0.1:WORKER_WEB_PORT`",
    )
    sink_url: str = setting(
        "SINK_URL",
        "",
        "where the edge looks up a message's recipient for a mailto: unsubscribe (the sink's query API)",
        read_by=(EDGE,),
        parse=base_url,
        derive=lambda values: f"http://127.0.0.1:{values['sink_api_port']}",
        shown="`http://127.0.0.1:SINK_API_PORT`",
    )
    from_address: str = setting(
        "FROM_ADDRESS", "Mailpulse Demo <news@example.com>", "From of campaigns that name none", read_by=(EDGE, CLI)
    )
