"""`GET /api/cove/privacy`: the egress policy this server applies and the ledger of what left."""

from __future__ import annotations

import math

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import BadRequest
from ..net import gate
from ..net.report import privacy_report
from .state import state_of

MAX_ROWS = 10_000


def _days(request: Request) -> float | None:
    raw = request.query_params.get("days")
    if raw is None or raw == "":
        return None
    try:
        days = float(raw)
    except ValueError:
        raise BadRequest("days must be a number of days, like 7 or 0.5") from None
    if not math.isfinite(days) or days <= 0:
        raise BadRequest("days must be a positive number")
    return days


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "500")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ROWS:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_ROWS}")
    return int(raw)


async def privacy(request: Request) -> Response:
    """The installed gate (`cove serve` installs one with its --offline), or the one for this store."""
    days, limit = _days(request), _limit(request)
    egress = gate.for_settings(state_of(request).cove.settings)
    report = await run_in_threadpool(privacy_report, egress, days, limit)
    return JSONResponse(report)


routes = [Route("/api/cove/privacy", privacy, methods=["GET"])]
