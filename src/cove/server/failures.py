"""Unexpected exceptions become an error answer that leaves the kept-open connection usable.

Starlette's outermost middleware sends its 500 and then re-raises, and uvicorn closes a connection
whose app raised, without a `Connection: close` to warn the client: the next request a client sends
on that kept-open connection fails. This middleware sits inside Starlette's, answers, and returns.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from dataclasses import dataclass

import apsw
from starlette.requests import Request

from ..errors import CoveError, DiskFull
from .guard import ASGIApp, Message, Receive, Scope, Send, error_body
from .state import state_of

log = logging.getLogger("cove.server")

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


@dataclass
class Progress:
    """How far the response got before the exception."""

    started: bool = False
    finished: bool = False
    media_type: str = ""


class CatchAll:
    """ASGI middleware: no exception leaves it, whatever a route does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        progress = Progress()

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                progress.started = True
                progress.media_type = _media_type(message)
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                progress.finished = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if progress.started and not progress.finished and progress.media_type not in (NDJSON, SSE):
                raise  # a body of announced length cut short: only closing the connection says so
            await self._answer(scope, send, progress, exc)

    async def _answer(self, scope: Scope, send: Send, progress: Progress, exc: Exception) -> None:
        path = scope["path"]
        if progress.finished:
            log.exception("error on %s after its answer was sent", path)
            return
        known = _known(exc)
        if known is not None:
            status, message = known.status, str(known)
        else:
            log.exception("unexpected error on %s", path)
            status, message = 500, f"internal error ({exc.__class__.__name__}); see the server log"
        body = error_body(path, status, _scrub(scope, message))
        with contextlib.suppress(OSError):  # the client is gone; there is no one left to tell
            await _finish(send, progress, status, body)


def _known(exc: BaseException) -> CoveError | None:
    """The typed error behind `exc`; a full disk is one wherever the write was (a 507)."""
    # Starlette wraps a typed error raised mid-stream; its own status and message still apply.
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, CoveError):
            return candidate
        full = isinstance(candidate, apsw.FullError) or (
            isinstance(candidate, OSError) and candidate.errno in (errno.ENOSPC, errno.EDQUOT)
        )
        if full:
            log.warning("disk full: %s", candidate)
            return DiskFull("disk full on the server: free some space on its disk and try again")
    return None


async def _finish(send: Send, progress: Progress, status: int, body: bytes) -> None:
    if not progress.started:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    # Headers are gone: streams carry the error in their own framing, then end cleanly.
    tail = body + b"\n" if progress.media_type == NDJSON else b"data: " + body + b"\n\ndata: [DONE]\n\n"
    await send({"type": "http.response.body", "body": tail, "more_body": False})


def _media_type(message: Message) -> str:
    for name, value in message.get("headers", []):
        if name.lower() == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return ""


def _scrub(scope: Scope, message: str) -> str:
    """Error text is cleaned of the home folder and keys, as every error body is."""
    try:
        return state_of(Request(scope)).scrub(message)
    except (AttributeError, KeyError):  # no app state yet (a unit test mounting the middleware)
        return message
