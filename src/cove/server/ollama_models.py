"""Ollama's model-management routes: tags, show, pull, create, copy, delete, ps, blobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import BadRequest, CoveError, DigestMismatch
from ..recipe import Recipe
from ..store import catalog
from ..store.blobs import Blobs
from ..store.gguf import ArraySummary
from ..store.models import Manifest
from ..store.names import parse_digest
from ..store.progress import PullProgress
from .bodies import parse
from .schemas import CopyRequest, CreateRequest, ModelRef
from .state import ServerState, state_of

log = logging.getLogger("cove.server")
FAR_FUTURE_S = 100 * 365 * 86400.0


def details(m: Manifest) -> dict[str, Any]:
    arch = m.info.get("architecture") or ""
    count = m.info.get("parameter_count") or 0
    size = f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": arch,
        "families": [arch],
        "parameter_size": size,
        "quantization_level": m.info.get("quantization") or "",
    }


def tag(m: Manifest) -> dict[str, Any]:
    return {
        "name": m.name,
        "model": m.name,
        "modified_at": m.modified,
        "size": m.size,
        # The manifest's digest, not the GGUF's: clients (llm-ollama) take equal digests for aliases.
        "digest": m.manifest_digest,
        "details": details(m),
        # cove's own: chat, base (continues text) or embedding, so a picker can choose well.
        "kind": catalog.model_kind(m),
    }


async def tags(request: Request) -> Response:
    models = await state_of(request).blocking(state_of(request).cove.models)
    return JSONResponse({"models": [tag(m) for m in models]})


async def show(request: Request) -> Response:
    req = await parse(request, ModelRef)
    state = state_of(request)
    # Off the loop: the bundled default model is imported (hundreds of MB) on first use.
    m = await state.blocking(state.cove.model, req.ref)
    recipe = m.recipe_obj()
    template = recipe.template or m.info.get("chat_template") or ""
    # A reranker is an embedding model to the store, but only the rerank call takes it.
    if catalog.is_reranker(m):
        capabilities = ["rerank"]
    else:
        capabilities = ["embedding"] if m.is_embedding else ["completion"]
    if "tools" in template:
        capabilities.append("tools")
    params = "\n".join(
        f"{k} {v}" for k, vs in recipe.parameters.items() for v in (vs if isinstance(vs, list) else [vs])
    )
    return JSONResponse(
        {
            "modelfile": recipe.to_text(),
            "parameters": params,
            "template": template,
            "system": recipe.system or "",
            "license": recipe.license or m.info.get("license") or "",
            "details": details(m),
            "modified_at": m.modified,
            "capabilities": capabilities,
            "model_info": await state.blocking(_model_info, state, m, bool(req.verbose)),
        }
    )


#: Shown elsewhere in /api/show (the name is the model's own; the template has its field).
_NOT_IN_MODEL_INFO = ("general.name", "tokenizer.chat_template")
_F32 = struct.Struct("<f")


def _model_info(state: ServerState, m: Manifest, verbose: bool) -> dict[str, Any]:
    """The GGUF's metadata keys as Ollama gives them; arrays (the vocabulary) only when verbose."""
    try:
        gguf = state.cove.store.gguf(m)
    except (OSError, CoveError):
        # A blob gone missing must not make `show` fail: say what the manifest knows.
        arch = m.info.get("architecture") or ""
        return {"general.architecture": arch, "general.parameter_count": m.info.get("parameter_count")}
    info: dict[str, Any] = {}
    for key, value in gguf.metadata.items():
        if key not in _NOT_IN_MODEL_INFO:
            info[key] = _json_value(value, verbose)
    info["general.parameter_count"] = gguf.parameter_count
    return dict(sorted(info.items()))


def _json_value(value: Any, verbose: bool) -> Any:
    if isinstance(value, ArraySummary):
        return []  # a long array (tokens, merges) is never read into memory
    if isinstance(value, list):
        return [_json_value(v, verbose) for v in value] if verbose else []
    if isinstance(value, float):
        return _shortest_float(value)
    return value


def _shortest_float(value: float) -> float | None:
    """1e-05, not 9.999999747378752e-06: GGUF floats are float32, print them as such."""
    if not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _F32.unpack(_F32.pack(candidate))[0] == value:
                return candidate
        except OverflowError:
            break
    return value  # a float64 value: already as short as it can be


async def pull(request: Request) -> Response:
    req = await parse(request, ModelRef)
    state = state_of(request)
    events = _progress_events(state, lambda report: state.cove.pull(req.ref, report))
    if req.stream:
        return StreamingResponse(_lines(events, state), media_type="application/x-ndjson")
    async for _ in events:
        pass  # a failure raises here, with its own status (404 for an unknown model)
    return JSONResponse({"status": "success"})


async def _progress_events(state: ServerState, work: Any) -> AsyncIterator[dict[str, Any]]:
    """Run a pull or create off the loop and yield its progress; its failure is raised here."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | Exception | None] = asyncio.Queue()

    def report(event: PullProgress) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event.to_dict())

    def run() -> None:
        try:
            work(report)
        except Exception as exc:  # every failure, not only CoveError, must reach the client
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    loop.run_in_executor(state.generator.pool, run)
    while (event := await queue.get()) is not None:
        if isinstance(event, Exception):
            raise event
        yield event


async def _lines(events: AsyncIterator[dict[str, Any]], state: ServerState) -> AsyncIterator[bytes]:
    """Progress as NDJSON; once streaming has begun, a failure can only be an error line."""
    try:
        async for event in events:
            yield json.dumps(event).encode() + b"\n"
    except CoveError as exc:
        yield json.dumps({"error": state.scrub(str(exc))}).encode() + b"\n"
    except Exception as exc:
        log.exception("unexpected error while streaming progress")
        error = f"internal error ({exc.__class__.__name__}); see the server log"
        yield json.dumps({"error": error}).encode() + b"\n"


async def create(request: Request) -> Response:
    req = await parse(request, CreateRequest)
    name = req.model or req.name
    if not name:
        raise BadRequest("model: the name of the model to create is required")
    state = state_of(request)

    def work(report: Any) -> None:
        report(PullProgress(status="parsing recipe"))
        state.cove.create_from_api(name, _recipe(req), _blob(req.files), _adapter(req.adapters))
        report(PullProgress(status="success"))

    events = _progress_events(state, work)
    if req.stream:
        return StreamingResponse(_lines(events, state), media_type="application/x-ndjson")
    async for _ in events:
        pass  # a failure raises here, with its own status
    return JSONResponse({"status": "success"})


def _recipe(req: CreateRequest) -> Recipe | str:
    if req.modelfile:
        return req.modelfile
    if req.quantize:
        raise BadRequest("quantize is not supported; pull the quantization you want instead")
    if not req.from_ and not req.files:
        # Without this the placeholder base "blob" surfaces as "model 'blob:latest' not found".
        raise BadRequest("from: name the model to build on, or upload a .gguf and list it in files")
    license_text = "\n".join(req.license) if isinstance(req.license, list) else req.license
    return Recipe.from_dict(
        {
            "base": req.from_ or "blob",
            "system": req.system,
            "template": req.template,
            "parameters": req.parameters or {},
            "license": license_text,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages or []],
        }
    )


def _blob(files: dict[str, str] | None) -> str | None:
    ggufs = [digest for name, digest in (files or {}).items() if name.endswith(".gguf")]
    if files and not ggufs:
        raise BadRequest("files: only a .gguf model file is supported")
    return parse_digest(ggufs[0]) if ggufs else None


def _adapter(adapters: dict[str, str] | None) -> str | None:
    if adapters and len(adapters) > 1:
        raise BadRequest("adapters: at most one LoRA adapter")
    return parse_digest(next(iter(adapters.values()))) if adapters else None


async def copy(request: Request) -> Response:
    req = await parse(request, CopyRequest)
    state = state_of(request)
    await state.blocking(state.cove.copy, req.source, req.destination)
    return Response(status_code=200)


async def delete(request: Request) -> Response:
    req = await parse(request, ModelRef)
    state = state_of(request)
    await state.blocking(state.cove.remove, req.ref)
    return Response(status_code=200)


async def ps(request: Request) -> Response:
    models = []
    state = state_of(request)
    for loaded in state.cove.loaded():
        m = state.cove.model(loaded.name)
        # No expiry: kept forever (keep_alive -1) or busy; Ollama too answers a far-off date.
        seconds = FAR_FUTURE_S if loaded.expires_in_s is None else loaded.expires_in_s
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        models.append(
            {
                **tag(m),
                "size": loaded.size,
                "size_vram": 0,
                "context_length": loaded.num_ctx,
                "expires_at": until.isoformat().replace("+00:00", "Z"),
                # cove's own, beside Ollama's (its clients ignore them): slots in use and in all.
                "num_parallel": loaded.num_parallel,
                "active": loaded.active,
                "cove_runs_on": list(loaded.runs_on),  # a remote model's upstreams; [] here
            }
        )
    return JSONResponse({"models": models})


async def blob_exists(request: Request) -> Response:
    digest = parse_digest(request.path_params["digest"])
    found = state_of(request).cove.store.blobs.exists(digest)
    return Response(status_code=200 if found else 404)


async def blob_upload(request: Request) -> Response:
    """Stream the upload to a partial file; it gets its name only if the digest matches."""
    digest = parse_digest(request.path_params["digest"])
    state = state_of(request)
    blobs = state.cove.store.blobs
    async with state.uploads.setdefault(digest, asyncio.Lock()), _writing(blobs, digest):
        if blobs.exists(digest):
            return Response(status_code=200)
        partial = blobs.partial(digest, resume=False)
        try:
            async for chunk in request.stream():
                partial.write(chunk)
            partial.finish()
        except DigestMismatch as exc:
            raise BadRequest(f"digest mismatch: {exc}") from exc
        except BaseException:
            partial.abandon(keep=False)
            raise
    return Response(status_code=201)


@contextlib.asynccontextmanager
async def _writing(blobs: Blobs, digest: str) -> AsyncIterator[None]:
    """The OS lock every writer of this blob takes (a pull or import, here or in another process),
    so an upload never truncates their partial file. Polled: the event loop never blocks on it."""
    with contextlib.ExitStack() as held:
        while True:
            try:
                held.enter_context(blobs.writing(digest, wait=False))
                break
            except BlockingIOError:
                await asyncio.sleep(0.1)
        yield


routes = [
    Route("/api/tags", tags, methods=["GET"]),
    Route("/api/show", show, methods=["POST"]),
    Route("/api/pull", pull, methods=["POST"]),
    Route("/api/create", create, methods=["POST"]),
    Route("/api/copy", copy, methods=["POST"]),
    Route("/api/delete", delete, methods=["DELETE"]),
    Route("/api/ps", ps, methods=["GET"]),
    Route("/api/blobs/{digest}", blob_exists, methods=["HEAD"]),
    Route("/api/blobs/{digest}", blob_upload, methods=["POST"]),
]
