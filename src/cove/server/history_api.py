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
from ..history import History, chosen, export_json, export_markdown, import_file
from ..history import citations as kept_citations
from ..history.branches import Tree
from ..history.export import conversation_json
from ..history.prices import cost, load_prices
from ..history.records import Conversation
from ..history.store import KEEP
from .bodies import parse, read_json
from .schemas import Strict
from .state import state_of


class Rename(Strict):
    title: str | None = Field(None, max_length=500)


class PersonaBody(Strict):
    name: str = Field(min_length=1, max_length=100)
    system: str = Field(max_length=200_000)


class BranchBody(Strict):
    message_id: int = Field(ge=1)


class ReplaceBody(Strict):
    content: str = Field(max_length=1_000_000)


class SettingsBody(Strict):
    """A conversation's settings as the page's side panel saves them; a missing field stays."""

    model: str | None = Field(None, min_length=1, max_length=300)
    system: str | None = Field(None, max_length=200_000)
    persona: str | None = Field(None, max_length=100)
    parameters: dict[str, float | int | None] | None = None
    num_ctx: int | None = Field(None, ge=0, le=1_048_576)


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


def shown(
    chat: Conversation, tree: Tree, cited: dict[int, list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """A conversation as the page shows it: the branch on screen, each message with its id, its
    parent and its siblings (the other versions of it, for the "‹ 2/3 ›" switcher), and the
    sources an answer cited (`cited`, by position), as the export writes them."""
    out = conversation_json(chat, cited)
    for kept, message in zip(out["messages"], chat.messages, strict=True):
        kept["id"] = message.id
        kept["parent_id"] = tree.parents.get(message.id)
        kept["siblings"] = tree.siblings(message.id) if message.id in tree.parents else [message.id]
    out["leaf_id"] = tree.leaf
    return out


def _shown_now(history: History, cid: str) -> dict[str, Any]:
    out = shown(history.get(cid), history.tree(cid), kept_citations.by_position(history, cid))
    documents = chosen.of(history, cid)  # what the next turn answers from, unless it names others
    return {**out, "collections": documents.collections, "strict": documents.strict}


async def conversation(request: Request) -> Response:
    state = state_of(request)
    return JSONResponse(await state.blocking(_shown_now, state.history, request.path_params["id"]))


async def branches(request: Request) -> Response:
    """Every message of a conversation, each with its parent: all its branches, not only the one shown."""
    state = state_of(request)
    cid = request.path_params["id"]
    tree = await state.blocking(state.history.tree, cid)
    children: dict[int, list[int]] = {}
    for mid, parent in tree.parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(mid)
    leaves = sorted(mid for mid in tree.parents if mid not in children)
    return JSONResponse(
        {
            "leaf_id": tree.leaf,
            "path": tree.path(),
            "messages": [{"id": m, "parent_id": p} for m, p in sorted(tree.parents.items())],
            "branches": len(leaves),
            "leaves": leaves,
        }
    )


def _after(history: History, cid: str, change: Any, *args: Any) -> dict[str, Any]:
    change(cid, *args)
    return _shown_now(history, cid)


async def branch(request: Request) -> Response:
    """Show the branch up to a message's parent: the next turn sent becomes that message's sibling
    (an edited question, or another answer to the same question). The earlier branch stays."""
    body = await parse(request, BranchBody)
    state = state_of(request)
    history = state.history
    cid = request.path_params["id"]
    return JSONResponse(await state.blocking(_after, history, cid, history.branch_before, body.message_id))


async def select(request: Request) -> Response:
    """Show the branch through a message (the switcher's ‹ and ›)."""
    body = await parse(request, BranchBody)
    state = state_of(request)
    history = state.history
    cid = request.path_params["id"]
    return JSONResponse(await state.blocking(_after, history, cid, history.select_branch, body.message_id))


def _message_id(request: Request) -> int:
    raw = request.path_params["mid"]
    if not raw.isdigit():
        raise BadRequest("a message id is a whole number")
    return int(raw)


async def replace_message(request: Request) -> Response:
    body = await parse(request, ReplaceBody)
    state = state_of(request)
    history = state.history
    cid, mid = request.path_params["id"], _message_id(request)
    return JSONResponse(
        await state.blocking(_after, history, cid, history.replace_message, mid, body.content)
    )


async def delete_message(request: Request) -> Response:
    state = state_of(request)
    history = state.history
    cid, mid = request.path_params["id"], _message_id(request)
    return JSONResponse(await state.blocking(_after, history, cid, history.remove_message, mid))


def _save_settings(history: History, cid: str, body: SettingsBody) -> dict[str, Any]:
    chat = history.get(cid)
    system: Any = KEEP
    if body.persona:
        system = history.persona(body.persona).system if body.system is None else body.system
    elif "system" in body.model_fields_set:
        system = body.system or None
    parameters: Any = KEEP
    if body.parameters is not None:  # a None value clears that one setting back to the model's
        merged = {**chat.parameters, **body.parameters}
        parameters = {k: v for k, v in merged.items() if v is not None}
    num_ctx: Any = (body.num_ctx or None) if "num_ctx" in body.model_fields_set else KEEP
    history.update_settings(
        cid, model=body.model or KEEP, system=system, parameters=parameters, num_ctx=num_ctx
    )
    return _shown_now(history, cid)


async def settings(request: Request) -> Response:
    """Save a conversation's system prompt, temperature, context and answer cap for its next turns."""
    body = await parse(request, SettingsBody)
    state = state_of(request)
    return JSONResponse(await state.blocking(_save_settings, state.history, request.path_params["id"], body))


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
    Route("/api/cove/conversations/{id}/settings", settings, methods=["POST"]),
    Route("/api/cove/conversations/{id}/branches", branches, methods=["GET"]),
    Route("/api/cove/conversations/{id}/branch", branch, methods=["POST"]),
    Route("/api/cove/conversations/{id}/select", select, methods=["POST"]),
    Route("/api/cove/conversations/{id}/messages/{mid}", replace_message, methods=["PATCH"]),
    Route("/api/cove/conversations/{id}/messages/{mid}", delete_message, methods=["DELETE"]),
    Route("/api/cove/conversations/{id}/export", export, methods=["GET"]),
    Route("/api/cove/export", export, methods=["GET"]),
    Route("/api/cove/import", import_, methods=["POST"]),
    Route("/api/cove/search", search, methods=["GET"]),
    Route("/api/cove/personas", personas, methods=["GET"]),
    Route("/api/cove/personas", add_persona, methods=["POST"]),
    Route("/api/cove/personas/{name}", remove_persona, methods=["DELETE"]),
    Route("/api/cove/stats", stats, methods=["GET"]),
]
