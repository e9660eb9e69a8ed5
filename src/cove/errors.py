"""The errors a user can cause: each says what went wrong and what to do, in one line."""

from __future__ import annotations

#: The header a server's error answer names its error type in (`CollectionNotFound`), so a
#: client tells apart errors that share a status (a model, a collection, a conversation: 404).
ERROR_TYPE_HEADER = "x-cove-error"


class CoveError(Exception):
    """Base for every error cove reports to a person or a client instead of a traceback."""

    #: HTTP status the server answers with for this error.
    status = 400


class BadRequest(CoveError):
    status = 400


class InvalidName(BadRequest):
    """A model name, tag or digest that is not allowed (path-like, NUL, wrong length)."""


class InvalidSetting(BadRequest):
    """A COVE_* environment variable (or flag) whose value cove cannot use; the message names it."""


class InvalidModelFile(BadRequest):
    """A file that is not a well-formed GGUF model."""


class InvalidRecipe(BadRequest):
    """A recipe file with a syntax or value error; the message names the line."""


class InvalidTemplate(BadRequest):
    """A chat template that does not parse, reaches for internals, or does not finish."""


class ModelNotFound(CoveError):
    status = 404


class DigestMismatch(CoveError):
    """Downloaded or imported bytes whose sha256 is not the one promised."""

    status = 502


class PullError(CoveError):
    """A download that could not be completed (network, server, disk)."""

    status = 502


class DiskFull(CoveError):
    """No room left on the disk for a download, an upload or a history write (HTTP 507)."""

    status = 507


class DoesNotFit(CoveError):
    """A model whose weights and KV cache need more memory than is free."""

    status = 507


class EngineError(CoveError):
    status = 500


class EngineCrashed(EngineError):
    """An engine process that ended on its own (an assert, an abort, a kill) or hung."""

    def __init__(self, message: str, *, why: str = "", loading: bool = False, killed: bool = False) -> None:
        super().__init__(message)
        #: How it ended, as "it was killed by SIGABRT (the engine's last error line)".
        self.why = why or message
        #: True when it never finished loading the model: the file is the likely cause...
        self.loading = loading
        #: ...unless it was killed from outside (SIGKILL: a person, or the kernel out of memory).
        self.killed = killed


class ModelBroken(EngineError):
    """A model whose engine crashed loading its file more than once: it stays off until the file
    changes. A 500: the request is fine, what the server holds cannot serve it."""


class Busy(CoveError):
    """The queue for a model is full; the client should retry later."""

    status = 503


class EngineBackingOff(Busy):
    """A model whose engine just crashed: it is not started again until its back-off has passed
    (a 503 with Retry-After, as for a full queue)."""


class ShuttingDown(CoveError):
    """cove is stopping: the request (or what was left of its answer) is not served."""

    status = 503


class Cancelled(CoveError):
    """The client went away before its request got a slot."""

    status = 499
