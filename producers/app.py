"""App factories: the public edge (tracking, unsubscribe) and the operator edge (intake).

They are separate apps on separate ports: nothing public shares a router with
an operator route, and every operator route refuses requests without a valid
API key (401).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers import campaign_routes, operator_pages, operator_routes, tracking_routes, webhook_routes
from producers.context import EdgeContext
from producers.metrics import EdgeMetrics
from producers.openapi import operator_spec, public_spec
from producers.operator_session import SESSION_COOKIE, SESSION_SECONDS, OperatorAuth, session_secret
from producers.pixel_offload import PixelOffload
from producers.publisher import KafkaPublisher, Publisher
from schemas.settings import Settings
from schemas.tokens import token_codec
from schemas.topics import Topics


class BodyLimitMiddleware:
    """413 for bodies over the route's limit (``limits`` by path, else ``max_bytes``), declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int, limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default_bytes = max_bytes
        self.limits = dict(limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # GET and HEAD handlers never read a body, so there is nothing to bound (and the pixel stays lean).
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        max_bytes = self.limits.get(scope["path"], self.default_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            await PlainTextResponse("request body too large\n", status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await PlainTextResponse("request body too large\n", status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: EdgeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            endpoint = scope.get("endpoint")
            name = getattr(endpoint, "__name__", None) or "unmatched"
            self.metrics.observe_request(name, status, time.perf_counter() - started)


class PublicEdge(Starlette):
    """The public app; the open pixel is answered ahead of its middleware and router.

    Pixels are most of the public traffic, and each layer of Starlette's stack (error and exception
    middleware, metrics, body limit, the router's matching) costs microseconds per request there. The
    pixel needs none of them: it reads no body, raises nothing it does not answer itself, and records
    the same request and latency metrics here. Everything else, and the pixel when the helper process
    is off, goes through the full stack.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            ctx: EdgeContext = self.state.edge
            token = tracking_routes.pixel_token(scope["path"])
            if token is not None and ctx.pixels is not None:
                started = time.perf_counter()
                status = await tracking_routes.OpenPixel.serve(ctx, token, scope, receive, send)
                ctx.metrics.observe_request("open_pixel", status, time.perf_counter() - started)
                return
        await super().__call__(scope, receive, send)


def _ops_routes(spec: dict[str, Any], with_metrics: bool) -> list[BaseRoute]:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        ctx: EdgeContext = request.app.state.edge
        publisher = ctx.publisher
        if publisher is None or not publisher.is_ready(1.0):
            return PlainTextResponse("broker unreachable\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def metrics(request: Request) -> Response:
        ctx: EdgeContext = request.app.state.edge
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    routes: list[BaseRoute] = [
        Route("/openapi.json", openapi, name="openapi"),
        Route("/healthz", healthz, name="healthz"),
        Route("/readyz", readyz, name="readyz"),
    ]
    if with_metrics:
        routes.append(Route("/metrics", metrics, name="metrics"))
    return routes


PublisherFactory = Callable[[Settings, EdgeMetrics], Publisher]


def _kafka_publisher(settings: Settings, metrics: EdgeMetrics) -> Publisher:
    def on_delivery(ok: bool) -> None:
        if not ok:
            metrics.publish_failures.inc()

    return KafkaPublisher(settings, on_delivery, on_shed=metrics.shed.inc, shed_when_full=True)


def _build(
    settings: Settings,
    routes: list[BaseRoute],
    middleware: list[Middleware],
    publisher_factory: PublisherFactory,
    spec: dict[str, Any],
    offload_pixels: bool = False,
    body_limits: Mapping[str, int] | None = None,
    metrics: EdgeMetrics | None = None,
    serve_metrics: bool = False,
) -> Starlette:
    metrics = metrics or EdgeMetrics.create()
    ctx = EdgeContext(
        settings=settings,
        tokens=token_codec(settings),
        topics=Topics.for_prefix(settings.topic_prefix),
        metrics=metrics,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if offload_pixels and settings.pixel_offload:
            ctx.pixels = PixelOffload(settings)
            await ctx.pixels.start()
            metrics.watch_pixels(ctx.pixels.counts)
        ctx.publisher = publisher_factory(settings, metrics)
        try:
            yield
        finally:
            if ctx.pixels is not None:
                await ctx.pixels.stop(timeout=settings.publish_timeout_seconds * 6)
                ctx.pixels = None
            # Events already answered for (pixels, clicks) get this long to reach the broker.
            ctx.publisher.close(timeout=settings.publish_timeout_seconds * 6)
            ctx.publisher = None

    app = (PublicEdge if offload_pixels else Starlette)(
        routes=routes + _ops_routes(spec, with_metrics=serve_metrics),
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, limits=body_limits),
            *middleware,
        ],
        lifespan=lifespan,
    )
    app.state.edge = ctx
    return app


def create_public_app(
    settings: Settings,
    publisher_factory: PublisherFactory = _kafka_publisher,
    sns_certificates: Callable[[str], bytes] | None = None,
    sns_confirm: Callable[[str], None] | None = None,
    metrics: EdgeMetrics | None = None,
) -> Starlette:
    """The public edge; its metrics are served by the operator edge (pass both apps the same ``metrics``)."""
    app = _build(
        settings,
        [*tracking_routes.routes, *webhook_routes.routes],
        [],
        publisher_factory,
        public_spec(),
        offload_pixels=True,
        body_limits=webhook_routes.BODY_LIMITS,
        metrics=metrics,
    )
    ctx: EdgeContext = app.state.edge
    ctx.sns_certificates = functools.lru_cache(maxsize=32)(sns_certificates or webhook_routes.fetch_sns_certificate)
    ctx.sns_confirm = sns_confirm or webhook_routes.confirm_sns_subscription
    return app


def create_operator_app(
    settings: Settings, publisher_factory: PublisherFactory = _kafka_publisher, metrics: EdgeMetrics | None = None
) -> Starlette:
    """The operator edge, API key required (or a signed-in session on its pages); ``/metrics`` covers the public
    edge too when given its ``metrics``."""
    open_paths = frozenset({"/healthz", "/readyz", "/openapi.json", "/login", "/logout", "/open"})
    session = Middleware(
        SessionMiddleware,
        secret_key=session_secret(settings.secret_keys),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_SECONDS,
        same_site="strict",
    )
    return _build(
        settings,
        [*operator_routes.routes, *campaign_routes.routes, *operator_pages.routes],
        [session, Middleware(OperatorAuth, keys=settings.api_keys, open_paths=open_paths)],
        publisher_factory,
        operator_spec(),
        metrics=metrics,
        serve_metrics=True,
    )
