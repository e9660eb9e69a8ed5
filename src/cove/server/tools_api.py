"""cove's tool routes: the web chat's (and a remote CLI's) consent answers, and the tool list.

`POST /api/cove/tools/consent {"consent_id": ..., "answer": "yes" | "no" | "always"}` answers
a tool call that a streamed turn is waiting on (the `cove_tool` line with `kind: "consent"`).
The guard's origin checks hold here as everywhere: another site's page cannot say yes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import CoveError
from .bodies import parse
from .schemas import Strict
from .state import state_of


class ConsentAnswer(Strict):
    consent_id: str = Field(min_length=1, max_length=100)
    answer: Literal["yes", "no", "always"]


class NotWaiting(CoveError):
    status = 404


async def consent(request: Request) -> Response:
    body = await parse(request, ConsentAnswer)
    broker = state_of(request).cove.conversations.consents
    if not broker.answer(body.consent_id, body.answer):
        raise NotWaiting("no tool call is waiting for that consent (it was answered, timed out or stopped)")
    return JSONResponse({"consent_id": body.consent_id, "answer": body.answer})


async def list_tools(request: Request) -> Response:
    """Every tool with its state, as `cove tools --json` shows it."""
    from ..tools.listing import server_rows, tool_rows

    state = state_of(request)
    catalog = state.cove.conversations.tool_catalog
    rows = await state.blocking(tool_rows, catalog)
    servers = await state.blocking(server_rows, catalog)
    return JSONResponse({"tools": rows, "mcp_servers": servers})


routes = [
    Route("/api/cove/tools/consent", consent, methods=["POST"]),
    Route("/api/cove/tools", list_tools, methods=["GET"]),
]
