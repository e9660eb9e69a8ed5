"""`raise_for`: a server's error answer becomes the error type it names (x-cove-error), so errors
that share a status stay apart (a 507 full disk is not a model that does not fit, a 503 shutdown
is not a busy engine); an unknown name, or one whose status disagrees, falls back to the status."""

from __future__ import annotations

import httpx
import pytest

from cove.errors import ERROR_TYPE_HEADER, Busy, CoveError, DiskFull, DoesNotFit, ModelNotFound, ShuttingDown
from cove.history import PersonaNotFound
from cove.knowledge.errors import CollectionNotFound, DocumentNotFound
from cove.library.kb_remote import KB_ERRORS
from cove.library.remote import raise_for


def answer(status: int, name: str | None) -> httpx.Response:
    headers = {ERROR_TYPE_HEADER: name} if name else {}
    return httpx.Response(status, json={"error": "what the server said"}, headers=headers)


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        (507, "DiskFull", DiskFull),
        (507, "DoesNotFit", DoesNotFit),
        (503, "ShuttingDown", ShuttingDown),
        (503, "Busy", Busy),
        (404, "PersonaNotFound", PersonaNotFound),
        (404, "DocumentNotFound", DocumentNotFound),
        (404, "CollectionNotFound", CollectionNotFound),
        (404, None, ModelNotFound),  # an older server: the status alone
        (404, "NoSuchThing", ModelNotFound),
        (404, "DiskFull", ModelNotFound),  # a name whose status disagrees is not believed
        (418, None, CoveError),
    ],
)
def test_the_named_type_wins_over_the_status(
    status: int, name: str | None, expected: type[CoveError]
) -> None:
    with pytest.raises(CoveError, match="server: what the server said") as raised:
        raise_for(answer(status, name))
    assert type(raised.value) is expected


def test_the_knowledge_client_s_status_map_is_only_the_fallback() -> None:
    with pytest.raises(ModelNotFound):
        raise_for(answer(404, "ModelNotFound"), KB_ERRORS)
    with pytest.raises(CollectionNotFound):
        raise_for(answer(404, None), KB_ERRORS)
