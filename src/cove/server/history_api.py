"""cove's own `/api/cove/...` routes: conversations, search, export/import, personas, usage."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, StrictBool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import BadRequest
from ..history import export_json, export_markdown, import_file
from ..history.export import conversation_json
from ..history.prices import cost, load_prices
from .bodies import parse, read_json
from .schemas import Strict
from .state import state_of


class Rename(Strict):
    title: str | None = Field(None, max_length=500)


class PersonaBody(Strict):
    name: str = Field(min_length=1, max_length=100)
    system: str = Field(max_length=200_000)


class DeleteAll(Strict):
    all: StrictBool  # "yes" or 1 must not delete every conversation


def _int(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    try:
        value = int(raw) if raw is not None else default
    except ValueError as exc:
        raise BadRequest(f"{name} must be a whole number") from exc
    if not 0 <= value <= high:
        raise BadRequest(f"{name} must be between 0 and {high}")
    return value


async def conversations(request: Request) -> Response:
    state = state_of(request)
    rows = await state.blocking(
        state.history.list, _int(request, "limit", 50, 1000), _int(request, "offset", 0, 10**9)
    )
    return JSONResponse(
        {
            "conversations": [
                {
                    "id": r.id,
                    "title": r.title,
                    "model": r.model,
                    "persona": r.persona,
                    "source": r.source,
                    "created_at": r.created_at.isoformat(),
                    "updated_at": r.updated_at.isoformat(),
                    "messages": r.message_count,
                    "preview": r.preview,
                }
                for r in rows
            ]
        }
    )


async def conversation(request: Request) -> Response:
    state = state_of(request)
    chat = await state.blocking(state.history.get, request.path_params["id"])
    return JSONResponse(conversation_json(chat))


async def rename(request: Request) -> Response:
    body = await parse(request, Rename)
    state = state_of(request)
    await state.blocking(state.history.rename, request.path_params["id"], body.title)
    return Response(status_code=200)


async def delete(request: Request) -> Response:
    state = state_of(request)
    await state.blocking(state.history.remove, request.path_params["id"])
    return Response(status_code=200)


async def delete_all(request: Request) -> Response:
    body = await parse(request, DeleteAll)
    if not body.all:
        raise BadRequest('send {"all": true} to delete every conversation')
    state = state_of(request)
    removed = await state.blocking(state.history.remove_all)
    return JSONResponse({"deleted": removed})


async def search(request: Request) -> Response:
    text = request.query_params.get("q", "").strip()
    if not text:
        raise BadRequest("q: the text to search for is required")
    state = state_of(request)
    hits = await state.blocking(state.history.search, text[:1000], _int(request, "limit", 20, 200))
    return JSONResponse(
        {
            "results": [
                {
                    "conversation_id": h.conversation_id,
                    "title": h.title,
                    "message_id": h.message_id,
                    "position": h.position,
                    "role": h.role,
                    "snippet": h.snippet,
                }
                for h in hits
            ]
        }
    )


async def export(request: Request) -> Response:
    kind = request.query_params.get("format", "json")
    ids = [request.path_params["id"]] if "id" in request.path_params else None
    state = state_of(request)
    if kind == "json":
        return JSONResponse(await state.blocking(export_json, state.history, ids))
    if kind in ("md", "markdown"):
        text = await state.blocking(export_markdown, state.history, ids)
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")
    raise BadRequest("format must be json or md")


async def import_(request: Request) -> Response:
    data = await read_json(request)
    state = state_of(request)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "import.json"
        path.write_text(json.dumps(data), "utf-8")
        result = await state.blocking(import_file, state.history, path)
    return JSONResponse({"imported": result.imported, "skipped": result.skipped})


async def personas(request: Request) -> Response:
    state = state_of(request)
    found = await state.blocking(state.history.personas)
    return JSONResponse({"personas": [{"name": p.name, "system": p.system} for p in found]})


async def add_persona(request: Request) -> Response:
    body = await parse(request, PersonaBody)
    state = state_of(request)
    saved = await state.blocking(state.history.add_persona, body.name, body.system)
    return JSONResponse({"name": saved.name, "system": saved.system})


async def remove_persona(request: Request) -> Response:
    state = state_of(request)
    await state.blocking(state.history.remove_persona, request.path_params["name"])
    return Response(status_code=200)


async def stats(request: Request) -> Response:
    days = _int(request, "days", 0, 100_000)
    since = datetime.now(UTC) - timedelta(days=days) if days else None
    state = state_of(request)
    usage = await state.blocking(state.history.stats, since)
    prices = load_prices(state.cove.settings.home)
    by_model: dict[str, Any] = {name: vars(m) for name, m in usage.by_model.items()}
    return JSONResponse(
        {
            "conversations": usage.conversations,
            "messages": usage.messages,
            "tokens_in": usage.tokens_in,
            "tokens_out": usage.tokens_out,
            "by_model": by_model,
            "cloud_cost_usd": cost(usage, prices),
            "prices_as_of": prices.as_of,
        }
    )


routes = [
    Route("/api/cove/conversations", conversations, methods=["GET"]),
    Route("/api/cove/conversations", delete_all, methods=["DELETE"]),
    Route("/api/cove/conversations/{id}", conversation, methods=["GET"]),
    Route("/api/cove/conversations/{id}", delete, methods=["DELETE"]),
    Route("/api/cove/conversations/{id}/rename", rename, methods=["POST"]),
    Route("/api/cove/conversations/{id}/export", export, methods=["GET"]),
    Route("/api/cove/export", export, methods=["GET"]),
    Route("/api/cove/import", import_, methods=["POST"]),
    Route("/api/cove/search", search, methods=["GET"]),
    Route("/api/cove/personas", personas, methods=["GET"]),
    Route("/api/cove/personas", add_persona, methods=["POST"]),
    Route("/api/cove/personas/{name}", remove_persona, methods=["DELETE"]),
    Route("/api/cove/stats", stats, methods=["GET"]),
]
