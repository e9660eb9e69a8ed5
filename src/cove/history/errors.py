"""The errors the history can report: a missing conversation or persona, an ambiguous id, a bad import."""

from __future__ import annotations

from ..errors import BadRequest, CoveError


class ConversationNotFound(CoveError):
    """No conversation has this id, nor a unique id that starts with it."""

    status = 404


class AmbiguousConversation(BadRequest):
    """An id prefix that starts more than one conversation's id; the caller should type more of it."""


class PersonaNotFound(CoveError):
    status = 404


class InvalidImport(BadRequest):
    """A file that is not a cove history export nor a ChatGPT conversations.json; nothing was imported."""
