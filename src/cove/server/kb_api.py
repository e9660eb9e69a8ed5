"""cove's knowledge base routes under /api/cove/kb: collections, folders, uploads, sync (its
progress streamed as NDJSON), documents and search. Index work runs off the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from pydantic import Field, StrictBool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import BadRequest, CoveError
from ..knowledge.service import Found, KnowledgeBase, document_json, passage_json, upload_name
from ..knowledge.sync import SyncProgress
from . import kb_files
from .bodies import parse
from .schemas import Strict
from .state import state_of

#: Syncs get threads of their own: a long ingest must not hold the threads chat answers use.
_SYNCS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cove-kb-sync")
MAX_UPLOAD_FILES = 100


class CreateBody(Strict):
    name: str = Field(min_length=1, max_length=64)
    model: str | None = Field(None, max_length=300)
    #: A reranking model's name, "off", or "auto" (a reranker in the store); null: auto.
    rerank: str | None = Field(None, max_length=300)


class RerankBody(Strict):
    rerank: str = Field(min_length=1, max_length=300)


class PathsBody(Strict):
    paths: list[str] = Field(min_length=1, max_length=1000)
    include: list[str] = Field(default_factory=list, max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=100)


class SyncBody(Strict):
    ocr: StrictBool = False
    model: str | None = Field(None, max_length=300)
    stream: StrictBool = True


class RemoveBody(Strict):
    paths: list[str] = Field(default_factory=list, max_length=10_000)
    all: StrictBool = False


class SearchBody(Strict):
    collections: list[str] = Field(min_length=1, max_length=50)
    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(5, ge=1, le=100)
    mode: str = "hybrid"
    #: A reranking model's name or "off"; null: the collections' own settings.
    rerank: str | None = Field(None, max_length=300)


def _kb(request: Request) -> KnowledgeBase:
    return state_of(request).cove.knowledge


async def _run(request: Request, fn: Any, *args: Any) -> Any:
    return await state_of(request).blocking(fn, *args)


async def collections(request: Request) -> Response:
    kb = _kb(request)
    infos = await _run(request, kb.list)
    return JSONResponse({"collections": [i.to_json() for i in infos]})


async def create(request: Request) -> Response:
    body = await parse(request, CreateBody)
    info = await _run(request, _kb(request).create, body.name, body.model, body.rerank)
    return JSONResponse(info.to_json(), status_code=201)


async def set_rerank(request: Request) -> Response:
    body = await parse(request, RerankBody)
    info = await _run(request, _kb(request).set_rerank, request.path_params["name"], body.rerank)
    return JSONResponse(info.to_json())


async def collection(request: Request) -> Response:
    info = await _run(request, _kb(request).info, request.path_params["name"])
    return JSONResponse(info.to_json())


async def drop(request: Request) -> Response:
    name = request.path_params["name"]
    await _run(request, _kb(request).drop, name)
    return JSONResponse({"dropped": name})


async def add_paths(request: Request) -> Response:
    body = await parse(request, PathsBody)
    kb = _kb(request)
    roots = await _run(
        request, lambda: kb.add(request.path_params["name"], body.paths, body.include, body.exclude)
    )
    return JSONResponse({"roots": [asdict(r) for r in roots]})


async def upload(request: Request) -> Response:
    """multipart/form-data, one or more `file` parts; the guard caps the whole body's size."""
    name = request.path_params["name"]
    kb = _kb(request)
    await _run(request, kb.info, name)  # a missing collection before reading the files
    try:
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=10)
    except Exception as exc:  # starlette's own multipart errors: a malformed body is the client's
        raise BadRequest(f"could not read the upload: {exc}") from exc
    stored = []
    try:
        uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        for upload in uploads:  # every name checked before any file is stored
            upload_name(upload.filename or "")
        for upload in uploads:
            data = await upload.read()
            stored.append(await _run(request, kb.save_upload, name, upload.filename or "", data))
    finally:
        await form.close()
    if not stored:
        raise BadRequest("no file in the upload: send multipart/form-data with a 'file' part")
    return JSONResponse({"files": stored}, status_code=201)


async def sync(request: Request) -> Response:
    body = await parse(request, SyncBody)
    name = request.path_params["name"]
    kb = _kb(request)
    await _run(request, kb.info, name)
    cancel = threading.Event()
    if not body.stream:
        report = await asyncio.get_running_loop().run_in_executor(
            _SYNCS, lambda: kb.sync(name, ocr=body.ocr, model=body.model, cancel=cancel)
        )
        return JSONResponse({"report": report.to_json()})
    return StreamingResponse(_sync_lines(kb, name, body, cancel), media_type="application/x-ndjson")


async def _sync_lines(
    kb: KnowledgeBase, name: str, body: SyncBody, cancel: threading.Event
) -> AsyncIterator[str]:
    """Progress events, then the report (or an error), one JSON object a line."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def progress(p: SyncProgress) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, {"progress": progress_json(p)})

    def work() -> None:
        try:
            report = kb.sync(name, progress, ocr=body.ocr, model=body.model, cancel=cancel)
            outcome: dict[str, Any] = {"report": report.to_json()}
        except CoveError as exc:  # typed, as an error answer's x-cove-error header is
            outcome = {"error": str(exc), "type": type(exc).__name__, "status": exc.status}
        except Exception as exc:  # the stream has started: the error goes in it, as a line
            outcome = {"error": f"sync failed: {exc.__class__.__name__}: {exc}"}
        loop.call_soon_threadsafe(queue.put_nowait, outcome)

    future = loop.run_in_executor(_SYNCS, work)
    try:
        while True:
            item = await queue.get()
            yield json.dumps(item) + "\n"
            if "progress" not in item:
                break
    finally:
        # Done, or the client went away: then the sync stops after the document it is on.
        cancel.set()
        del future  # work() reports its own errors into the stream; nothing to collect here


def progress_json(p: SyncProgress) -> dict[str, Any]:
    return {
        "files_done": p.files_done,
        "files_total": p.files_total,
        "pages": p.pages,
        "chunks": p.chunks,
        "elapsed_s": round(p.elapsed_s, 3),
        "rate": round(p.rate, 3),
        "eta_s": None if p.eta_s is None else round(p.eta_s, 1),
        "current": p.current,
    }


async def documents(request: Request) -> Response:
    rows = await _run(request, _kb(request).documents, request.path_params["name"])
    # The id opens the document's own file (kb_files); the path alone may be another's name.
    return JSONResponse({"documents": [{**document_json(r), "id": r.id} for r in rows]})


async def remove(request: Request) -> Response:
    body = await parse(request, RemoveBody)
    kb = _kb(request)
    count = await _run(request, lambda: kb.remove(request.path_params["name"], body.paths, all=body.all))
    return JSONResponse({"removed": count})


async def search(request: Request) -> Response:
    body = await parse(request, SearchBody)
    kb = _kb(request)

    def find() -> tuple[Found, set[int]]:
        found = kb.find(body.collections, body.query, body.k, body.mode, body.rerank)
        return found, {p.chunk_id for p in kb.relevant(found.passages)}

    found, relevant = await _run(request, find)
    passages = [{**passage_json(p), "relevant": p.chunk_id in relevant} for p in found.passages]
    return JSONResponse({"passages": passages, "reranked_by": found.reranked_by, "warning": found.warning})


routes = [
    Route("/api/cove/kb", collections, methods=["GET"]),
    Route("/api/cove/kb", create, methods=["POST"]),
    Route("/api/cove/kb/search", search, methods=["POST"]),
    Route("/api/cove/kb/{name}", collection, methods=["GET"]),
    Route("/api/cove/kb/{name}", drop, methods=["DELETE"]),
    Route("/api/cove/kb/{name}/rerank", set_rerank, methods=["PUT"]),
    Route("/api/cove/kb/{name}/paths", add_paths, methods=["POST"]),
    Route("/api/cove/kb/{name}/upload", upload, methods=["POST"]),
    Route("/api/cove/kb/{name}/sync", sync, methods=["POST"]),
    Route("/api/cove/kb/{name}/documents", documents, methods=["GET"]),
    Route("/api/cove/kb/{name}/documents", remove, methods=["DELETE"]),
    *kb_files.routes,
]
