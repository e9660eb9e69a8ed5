"""What a remote engine's upstream did wrong, as cove's own errors that name the upstream."""

from __future__ import annotations

from ..errors import BadRequest, Busy, EngineError


class RemoteError(EngineError):
    """An upstream (FROM openai+https://…) that failed a request: down, slow, garbage, a 5xx.

    `retryable`: another replica may serve the request (when nothing of the answer has been
    handed on yet). `replica_fault`: the upstream itself is at fault, so it is taken out of the
    set until its health check passes again (a refused key or an unknown model is not cured by
    waiting, but taking the replica out still lets the others serve).
    """

    status = 502

    def __init__(self, message: str, *, upstream: str, retryable: bool = True, replica_fault: bool = True):
        super().__init__(message)
        self.upstream = upstream
        self.retryable = retryable
        self.replica_fault = replica_fault


class UpstreamTimeout(RemoteError):
    """The upstream sent nothing for longer than the recipe's remote_timeout."""

    status = 504


class UpstreamKeyRefused(RemoteError):
    """The upstream answered 401/403: the key in the recipe's api_key_env is wrong or missing."""


class UpstreamRejected(BadRequest):
    """The upstream said the request itself is bad (a 4xx other than 401/403/404/429): the
    client's fault, so a 400 naming the upstream, and never retried elsewhere."""


class UpstreamBusy(Busy):
    """Every replica answered 429/503 (its queue is full): retry shortly."""


def mid_answer(error: RemoteError) -> RemoteError:
    """The same failure once part of the answer was handed on: it cannot be retried elsewhere
    (the client has seen tokens), and the message says the answer is incomplete."""
    message = f"{error}; the answer stopped part way and is incomplete"
    return type(error)(message, upstream=error.upstream, retryable=False, replica_fault=error.replica_fault)
