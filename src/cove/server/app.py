"""Builds the ASGI app (routes, error shapes, guard, metrics) and runs it on uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import ERROR_TYPE_HEADER, Busy, CoveError
from ..knowledge.watch import watching
from ..library.local import Cove
from . import (
    embeddings,
    history_api,
    kb_api,
    ollama_api,
    openai_api,
    privacy_api,
    rerank,
    responses_api,
    tools_api,
    web,
)
from .failures import CatchAll
from .generation import Generator
from .guard import BodyTooLarge, Guard, Policy, Receive, Scope, Send, error_body
from .metrics import Metrics
from .state import ServerState, state_of

log = logging.getLogger("cove.server")
access = logging.getLogger("cove.access")
ROUTES = (
    *ollama_api.routes,
    *openai_api.routes,
    *responses_api.routes,
    *embeddings.routes,
    *rerank.routes,
)
ROUTE_LABELS = {r.path for r in ROUTES} | {
    "/",
    "/metrics",
}


async def metrics(request: Request) -> Response:
    body = state_of(request).metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def build_app(cove: Cove, policy: Policy) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    routes = [
        *web.routes,
        Route("/metrics", metrics, methods=["GET"]),
        *ollama_api.routes,
        *openai_api.routes,
        *responses_api.routes,
        *embeddings.routes,
        *rerank.routes,
        *history_api.routes,
        *tools_api.routes,
        *privacy_api.routes,
        *kb_api.routes,
    ]
    handlers: dict[Any, Any] = {
        HTTPException: on_http_error,
        CoveError: on_error,
        BodyTooLarge: on_too_large,
    }
    # CatchAll answers what no handler did, inside Starlette's own last resort, which would re-raise
    # after its 500 and so make uvicorn drop the kept-open connection.
    app = Starlette(
        routes=routes,
        exception_handlers=handlers,
        middleware=[Middleware(CatchAll)],
        lifespan=lambda _: watching(cove),  # collections with watched folders kept in sync
    )
    observer = Metrics(cove.scheduler)
    generator = Generator(cove.conversations, observer)
    app.state.cove = ServerState(cove, observer, generator, policy)
    return Guard(count_requests(app, observer), policy)


def count_requests(app: Any, observer: Metrics) -> Callable[[Scope, Receive, Send], Any]:
    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        path = scope["path"]
        label = (
            path
            if path in ROUTE_LABELS
            else "/api/blobs"
            if path.startswith("/api/blobs/")
            else "/v1/models/{model}"
            if path.startswith("/v1/models/")
            else "other"
        )
        status = [500]

        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await app(scope, receive, watch)
        finally:
            observer.requests.labels(label, str(status[0])).inc()
            access.info("%s %s %d", scope["method"], escaped(path), status[0])

    return counted


def escaped(text: str, limit: int = 200) -> str:
    """Logged values cannot forge log lines or move the terminal cursor."""
    return text[:limit].encode("unicode_escape").decode("ascii")


def json_error(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = error_body(request.url.path, status, state_of(request).scrub(message))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CoveError)
    headers = {ERROR_TYPE_HEADER: type(exc).__name__}
    if isinstance(exc, Busy):
        headers["retry-after"] = "2"
    return json_error(request, exc.status, str(exc), headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and methods answer in the API's own error shape too, not plain text."""
    assert isinstance(exc, HTTPException)
    message = {404: f"no such endpoint: {escaped(request.url.path, 100)}", 405: "method not allowed here"}
    headers = dict(exc.headers) if exc.headers else None
    return json_error(request, exc.status_code, message.get(exc.status_code, str(exc.detail)), headers)


async def on_too_large(request: Request, exc: Exception) -> Response:
    return json_error(request, 413, str(exc))
