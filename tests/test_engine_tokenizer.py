"""The engine's loopback tokenizer client: a failed start leaves no open connection pool behind."""

from __future__ import annotations

import httpx
import pytest

from cove.engine import llamacpp
from cove.errors import EngineError


def test_a_tokenizer_that_cannot_start_closes_its_client(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []

    class RecordingClient(httpx.Client):
        def close(self) -> None:
            closed.append(True)
            super().close()

    monkeypatch.setattr(llamacpp.httpx, "Client", RecordingClient)
    with pytest.raises(EngineError, match="/tokenize"):
        llamacpp.Tokenizer("127.0.0.1:1", "secret")  # port 1 refuses at once
    assert closed == [True]
