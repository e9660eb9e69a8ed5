"""A document's original file, for a citation's link and the Knowledge page:
GET /api/cove/kb/{name}/documents/{id}/file, and /api/cove/kb/{name}/file?file=NAME (the name a
citation gives). Only a file that is a document of that collection is served: it is looked up in
the index (a deleted document is a 404), never joined from what the request says, and opened
without following a link. Its type cannot run script in cove's origin: a PDF opens in the
browser's viewer, the office formats download, everything else (HTML and SVG too) is text."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import BadRequest, CoveError
from ..knowledge.errors import DocumentNotFound
from ..knowledge.index import DocumentRow
from ..knowledge.service import KnowledgeBase
from .state import state_of

#: Served inline with their own type: the browser's viewer shows them and runs nothing of ours.
INLINE = {".pdf": "application/pdf"}
#: Downloaded, not shown: the browser has no viewer for them.
DOWNLOADED = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".epub": "application/epub+zip",
}
#: Every other indexed format is text; HTML, SVG and XML among them are shown as their source.
TEXT = "text/plain; charset=utf-8"
_PLAIN = re.compile(r"[^A-Za-z0-9._ -]")
BLOCK = 1 << 16


class AmbiguousDocument(CoveError):
    """Two documents of a collection share the name a citation gives (from different folders)."""

    status = 409


def _kb(request: Request) -> KnowledgeBase:
    return state_of(request).cove.knowledge


def find(kb: KnowledgeBase, name: str, *, doc_id: int | None = None, file: str | None = None) -> DocumentRow:
    """The collection's document with this id, or the one document with this cited name."""
    documents = kb.documents(name)  # CollectionNotFound for a collection that is not there
    if doc_id is not None:
        found = [d for d in documents if d.id == doc_id]
        if not found:
            raise DocumentNotFound(f"collection '{name}' has no document {doc_id} (see `cove kb ls {name}`)")
        return found[0]
    found = [d for d in documents if d.file == file]
    if not found:
        raise DocumentNotFound(
            f"collection '{name}' has no document named {file!r} (see `cove kb ls {name}`)"
        )
    if len(found) > 1:
        raise AmbiguousDocument(
            f"{len(found)} documents in '{name}' are named {file!r}; open one from the Knowledge page"
        )
    return found[0]


def opened(kb: KnowledgeBase, name: str, doc: DocumentRow) -> tuple[int, int]:
    """The document's file opened for reading (fd, size): a regular file at the very path the
    sync found, inside one of the collection's folders, reached through no symbolic link."""
    path = Path(doc.path)
    roots = [Path(r.path) for r in kb.index.collection(name).roots]
    inside = any(path == root or root in path.parents for root in roots)
    gone = DocumentNotFound(
        f"{doc.file} is no longer where it was indexed; `cove kb sync {name}` brings the collection "
        "up to date"
    )
    if not inside or os.path.realpath(path) != str(path):
        raise gone
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise gone from exc
    except OSError as exc:  # a link put in its place (ELOOP), no permission
        raise DocumentNotFound(f"{doc.file} cannot be opened: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise gone
    return fd, info.st_size


def headers_for(file: str) -> dict[str, str]:
    """What the browser is told about the file: a type that cannot be script, never sniffed."""
    suffix = Path(file).suffix.lower()
    kind, how = (INLINE[suffix], "inline") if suffix in INLINE else (TEXT, "inline")
    if suffix in DOWNLOADED:
        kind, how = DOWNLOADED[suffix], "attachment"
    plain = _PLAIN.sub("_", Path(file).name) or "document"
    encoded = quote(Path(file).name, safe="")
    headers = {
        "content-type": kind,
        "content-disposition": f"{how}; filename=\"{plain}\"; filename*=UTF-8''{encoded}",
        "x-content-type-options": "nosniff",
        "cache-control": "no-store",  # a private document is not kept in the browser's cache
        "referrer-policy": "no-referrer",
        "cross-origin-resource-policy": "same-origin",
    }
    if kind != INLINE.get(suffix):
        # Not the PDF viewer's: a page of its own origin that can run nothing and load nothing.
        headers["content-security-policy"] = "sandbox; default-src 'none'"
    return headers


def _blocks(fd: int) -> Iterator[bytes]:
    with os.fdopen(fd, "rb") as handle:
        while block := handle.read(BLOCK):
            yield block


async def _served(request: Request, doc_id: int | None, file: str | None) -> Response:
    kb, name = _kb(request), request.path_params["name"]

    def open_it() -> tuple[DocumentRow, int, int]:
        doc = find(kb, name, doc_id=doc_id, file=file)
        return (doc, *opened(kb, name, doc))

    doc, fd, size = await state_of(request).blocking(open_it)
    headers = {**headers_for(doc.file), "content-length": str(size)}
    if request.method == "HEAD":
        os.close(fd)
        return Response(headers=headers)
    return StreamingResponse(_blocks(fd), headers=headers)


async def by_id(request: Request) -> Response:
    return await _served(request, int(request.path_params["id"]), None)


async def by_name(request: Request) -> Response:
    file = request.query_params.get("file", "")
    if not file:
        raise BadRequest("name the document: ?file=NAME, as its citation gives it")
    return await _served(request, None, file)


routes = [
    Route("/api/cove/kb/{name}/documents/{id:int}/file", by_id, methods=["GET"]),
    Route("/api/cove/kb/{name}/file", by_name, methods=["GET"]),
]
