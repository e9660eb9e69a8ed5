"""The engine's own listener and its tokenizer client: a private socket file locked by a secret, and
a failed start leaves no open connection pool behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import psutil
import pytest
from engine_helpers import load_gemma

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


# -- the in-process engine's own listener: a private socket file, never a TCP port ----------------


def _tcp_listeners() -> set[tuple[str, int]]:
    own = psutil.Process(os.getpid()).net_connections(kind="inet")
    return {(c.laddr.ip, c.laddr.port) for c in own if c.status == psutil.CONN_LISTEN}


@pytest.mark.model
def test_the_in_process_engine_listens_on_a_private_socket_file_only(model_home: Path) -> None:
    before = _tcp_listeners()
    model = load_gemma(model_home, num_ctx=256)
    try:
        # Loaded and used: the tokenizer and the template check talk to the listener.
        assert model.tokenize("hello") and model.prompt_tokens(
            [{"role": "user", "content": "hi"}], continuing=False
        )
        assert _tcp_listeners() == before  # llama.cpp's listener opened no TCP port
        assert model.address.startswith("unix://")
        socket = Path(model.address.removeprefix("unix://"))
        folder = socket.parent
        assert socket.is_socket() and stat.S_IMODE(folder.stat().st_mode) == 0o700
        with llamacpp.engine_client(model.address, "wrong", timeout=10) as stranger:
            # llama.cpp answers /health to anyone, but only through this user's folder now;
            # everything else also wants the secret.
            assert stranger.get("/health").status_code == 200
            assert stranger.post("/tokenize", json={"content": "x"}).status_code == 401
    finally:
        model.close()
    assert not folder.exists()
