"""The rerank routes: `POST /v1/rerank`, `/api/rerank` and `/rerank`, in the shape llama.cpp's
server, Jina and Cohere clients send and read: `{model, query, documents, top_n}` in,
`{results: [{index, relevance_score}]}` out, best first.

Documents are strings (or Cohere's older `{"text": ...}` objects); `return_documents` (Cohere,
Jina) or `return_text` (llama.cpp) adds each document's text to its result. Only a reranking
model reranks: a chat or embedding model named here is a 400, as is a reranker named to chat.
Fields cove does not read (Cohere's `max_chunks_per_doc`, `rank_fields`) are left alone, so
those clients work unchanged. A client that leaves, queued or running, gives its slot back.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..engine.options import parse_keep_alive
from ..engine.reranking import Reranked, checked_inputs
from ..errors import BadRequest
from .bodies import read_json
from .embeddings import _watch as watch_client
from .state import state_of


async def rerank(request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("model: name the reranking model (`cove list` shows their KIND as reranker)")
    query, documents, top_n = checked_inputs(body.get("query"), body.get("documents"), body.get("top_n"))
    give_text = _flag(body, "return_documents") or _flag(body, "return_text")
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    result = await _run(request, model, query, documents, top_n, keep_alive)
    results: list[dict[str, Any]] = []
    for ranked in result.results:
        item: dict[str, Any] = {"index": ranked.index, "relevance_score": ranked.score}
        if give_text:
            item["document"] = {"text": documents[ranked.index]}
        results.append(item)
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return JSONResponse({"model": model, "object": "list", "results": results, "usage": usage})


async def _run(
    request: Request,
    model: str,
    query: str,
    documents: list[str],
    top_n: int | None,
    keep_alive: float | None,
) -> Reranked:
    """The engine call off the event loop, given up when the client hangs up."""
    state = state_of(request)
    cancel = threading.Event()
    watching = asyncio.create_task(watch_client(request, cancel))
    work = functools.partial(
        state.cove.rerank, model, query, documents, top_n=top_n, keep_alive=keep_alive, cancel=cancel
    )
    try:
        result: Reranked = await state.blocking(work)
    finally:
        cancel.set()
        watching.cancel()
    return result


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false")
    return bool(value)


routes = [
    Route("/v1/rerank", rerank, methods=["POST"]),
    Route("/api/rerank", rerank, methods=["POST"]),
    Route("/rerank", rerank, methods=["POST"]),
]
