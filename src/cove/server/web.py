"""The browser chat's routes: the page, its static files, Markdown rendering and the model catalog."""

from __future__ import annotations

import mimetypes

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..engine import fitting
from ..store.catalog import CATALOG
from ..web import MAX_RENDER_CHARS, render, static_root
from .bodies import parse
from .schemas import Strict
from .state import state_of

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


class RenderBody(Strict):
    text: str = Field(max_length=MAX_RENDER_CHARS)


def wants_html(request: Request) -> bool:
    """Browsers ask for text/html; Ollama clients probing `/` get the plain answer they expect."""
    return "text/html" in request.headers.get("accept", "").lower()


def _file(name: str) -> Response | None:
    """A file directly in the static folder, looked up by exact name: no path ever leaves it."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        return None
    entries = {entry.name: entry for entry in static_root().iterdir() if entry.is_file()}
    entry = entries.get(name)
    if entry is None:
        return None
    suffix = "." + name.rpartition(".")[2]
    kind = TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(entry.read_bytes(), media_type=kind, headers=SECURITY_HEADERS)


async def index(request: Request) -> Response:
    if not wants_html(request):
        return PlainTextResponse("cove is running")
    page = _file("index.html")
    assert page is not None, "the package is missing its web page"
    return page


async def static(request: Request) -> Response:
    found = _file(request.path_params["name"])
    if found is None:
        return PlainTextResponse("not found", status_code=404, headers=SECURITY_HEADERS)
    return found


async def render_markdown(request: Request) -> Response:
    body = await parse(request, RenderBody)
    html = await run_in_threadpool(render, body.text)  # not the engine pool: answers stream there
    return JSONResponse({"html": html}, headers={"cache-control": "no-store"})


async def catalog(request: Request) -> Response:
    """The catalog ranked for this machine, each entry with its fit and predicted speed; the
    plain catalog if this machine cannot be described (the page still lists and pulls)."""
    home = state_of(request).cove.settings.home
    try:
        models = await run_in_threadpool(fitting.catalog_for, home)
    except Exception:  # a fit column is never worth an unusable Models page
        models = [entry.to_dict() for entry in CATALOG]
    return JSONResponse({"models": models})


routes = [
    Route("/", index, methods=["GET", "HEAD"]),
    Route("/static/{name:path}", static, methods=["GET", "HEAD"]),
    Route("/api/cove/render", render_markdown, methods=["POST"]),
    Route("/api/cove/catalog", catalog, methods=["GET"]),
]
