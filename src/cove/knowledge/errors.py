"""What can go wrong with a collection or a document, as errors the CLI and the API report."""

from __future__ import annotations

from ..errors import BadRequest, CoveError


class CollectionNotFound(CoveError):
    """No collection has that name."""

    status = 404


class CollectionExists(BadRequest):
    """`kb create` of a name already taken."""

    status = 409


class DocumentRefused(BadRequest):
    """A file that cannot be indexed (unsupported, too large, encrypted, broken, a bomb).

    The sync reports it with the file's name and this reason and goes on with the others."""

    status = 422


class DocumentNotFound(CoveError):
    """No document of the collection has that id or name (or its file is no longer there)."""

    status = 404
