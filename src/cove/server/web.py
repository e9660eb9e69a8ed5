"""The browser chat's routes: the page, its static files, Markdown rendering and the model catalog."""

from __future__ import annotations

import gzip
import mimetypes
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..engine import fitting
from ..errors import BadRequest
from ..history.measurements import Measurements
from ..knowledge import parsers
from ..knowledge.documents import ParsedDocument
from ..knowledge.errors import DocumentRefused
from ..store.catalog import CATALOG
from ..web import MAX_RENDER_CHARS, render, static_root
from .bodies import parse
from .schemas import Strict
from .state import state_of

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
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
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
FONTS = "fonts"  # the one folder under static: KaTeX's fonts
#: The most texts one /api/cove/render-many renders (a page of a long conversation).
MAX_RENDER_MANY = 200
#: An attachment's largest size: what a chat can hold is far less; the parsers cap higher.
MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024  # under the server's 16 MiB request cap


class RenderBody(Strict):
    text: str = Field(max_length=MAX_RENDER_CHARS)


class RenderManyBody(Strict):
    texts: list[str] = Field(max_length=MAX_RENDER_MANY)


def wants_html(request: Request) -> bool:
    """Browsers ask for text/html; Ollama clients probing `/` get the plain answer they expect."""
    return "text/html" in request.headers.get("accept", "").lower()


def _file(name: str, gzip_ok: bool = False) -> Response | None:
    """A file directly in the static folder (or its fonts folder), looked up by exact name: no
    path ever leaves it."""
    folder = static_root()
    if name.startswith(FONTS + "/"):
        folder, name = folder / FONTS, name[len(FONTS) + 1 :]
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        return None
    entries = {entry.name: entry for entry in folder.iterdir() if entry.is_file()}
    entry = entries.get(name)
    if entry is None:
        return None
    suffix = "." + name.rpartition(".")[2]
    kind = TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    data = entry.read_bytes()
    headers = {**SECURITY_HEADERS, "vary": "accept-encoding"}
    if gzip_ok and kind.startswith(COMPRESSIBLE):
        data = _gzipped(data)
        headers["content-encoding"] = "gzip"
    return Response(data, media_type=kind, headers=headers)


COMPRESSIBLE = ("text/", "image/svg")


@lru_cache(maxsize=64)
def _gzipped(data: bytes) -> bytes:
    """The page's text assets, compressed once each (a few hundred KB in all, so kept)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


async def index(request: Request) -> Response:
    if not wants_html(request):
        return PlainTextResponse("cove is running")
    page = _file("index.html", _accepts_gzip(request))
    assert page is not None, "the package is missing its web page"
    return page


async def static(request: Request) -> Response:
    found = _file(request.path_params["name"], _accepts_gzip(request))
    if found is None:
        return PlainTextResponse("not found", status_code=404, headers=SECURITY_HEADERS)
    return found


async def render_markdown(request: Request) -> Response:
    body = await parse(request, RenderBody)
    html = await run_in_threadpool(render, body.text)  # not the engine pool: answers stream there
    return JSONResponse({"html": html}, headers={"cache-control": "no-store"})


async def render_many(request: Request) -> Response:
    """Several texts in one request: opening a long conversation renders a page of it at once."""
    body = await parse(request, RenderManyBody)
    if any(len(text) > MAX_RENDER_CHARS for text in body.texts):
        raise BadRequest(f"each text is at most {MAX_RENDER_CHARS} characters")
    html = await run_in_threadpool(lambda: [render(text) for text in body.texts])
    return JSONResponse({"html": html}, headers={"cache-control": "no-store"})


async def attachment(request: Request) -> Response:
    """A file dropped on the composer, read to text by the knowledge base's parsers (the same
    types, limits and reasons); the page puts the text into the conversation. Nothing is kept."""
    name = Path(request.query_params.get("name", "").strip()).name
    suffix = Path(name).suffix.lower()
    if not name or suffix not in parsers.SUFFIXES:
        kinds = ", ".join(sorted(parsers.SUFFIXES))
        raise BadRequest(f"{name or 'this file'}: cove reads only these types of file: {kinds}")
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise BadRequest(f"{name} is larger than {MAX_ATTACHMENT_BYTES // 2**20} MB")
    document = await run_in_threadpool(_parse_attachment, name, suffix, bytes(data))
    text = "\n\n".join(section.text for section in document.sections)
    if not text.strip():
        raise BadRequest(f"{name} holds no text cove can read")
    return JSONResponse(
        {
            "name": name,
            "text": text,
            "chars": len(text),
            "pages": document.pages,
            "problems": document.problems,
        }
    )


def _parse_attachment(name: str, suffix: str, data: bytes) -> ParsedDocument:
    with tempfile.TemporaryDirectory(prefix="cove-attach-") as folder:
        path = Path(folder) / f"attachment{suffix}"
        path.write_bytes(data)
        try:
            return parsers.parse(path)
        except DocumentRefused as exc:
            raise DocumentRefused(f"{name} {exc}") from None


async def measured(request: Request) -> Response:
    """What a stored model measured on this machine (median tokens/s of its recent answers)."""
    name = request.query_params.get("model", "").strip()
    if not name:
        raise BadRequest("model: the stored model's name is required")
    cove = state_of(request).cove
    found = await run_in_threadpool(_measured, cove.settings.home, cove.store.get(name).digest)
    return JSONResponse({"model": name, "measured": found})


def _measured(home: Path, digest: str) -> dict[str, Any] | None:
    measurements = Measurements.if_any(home)
    if measurements is None:
        return None
    with measurements:
        found = measurements.of(digest)
    return found.to_dict() if found else None


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
    Route("/api/cove/render-many", render_many, methods=["POST"]),
    Route("/api/cove/attachments", attachment, methods=["POST"]),
    Route("/api/cove/measured", measured, methods=["GET"]),
    Route("/api/cove/catalog", catalog, methods=["GET"]),
]
