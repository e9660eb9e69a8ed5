"""One set of contract scenarios, run against the in-process library and against a server's client.

`library` is a `Cove` on the fake engine; `server` is a `RemoteCove` talking HTTP to a real
uvicorn serving the same kind of `Cove`. Whatever the CLI can do, it must get the same answer
either way: the same stored conversation, the same settings from turn to turn, the same context
budget. The last tests run the CLI itself against a running server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cli_helpers import run_main
from fakes import FakeEngine
from server_fixtures import LiveServer, make_app

from cove.chat.service import TurnRequest
from cove.config import Settings
from cove.errors import ModelNotFound
from cove.history import History, db_path
from cove.library.backend import Backend
from cove.library.local import Cove
from cove.library.remote import RemoteCove, find_server
from cove.store import catalog


@pytest.fixture
def live(fake_cove: Cove, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real HTTP server over `fake_cove`; COVE_HOST points at it, as for a user who ran `cove serve`."""
    with LiveServer(make_app(fake_cove)) as url:
        monkeypatch.setenv("COVE_HOST", url.removeprefix("http://"))
        yield url


@pytest.fixture(params=["library", "server"])
def backend(request: pytest.FixtureRequest, fake_cove: Cove) -> Iterator[Backend]:
    if request.param == "library":
        yield fake_cove
        return
    request.getfixturevalue("live")
    remote = find_server(Settings.from_env())
    assert isinstance(remote, RemoteCove)
    yield remote
    remote.close()


@pytest.fixture
def history(fake_cove: Cove) -> Iterator[History]:
    with History(db_path(fake_cove.settings.home)) as store:
        yield store


def say(backend: Backend, text: str, **request: Any) -> tuple[str | None, str | None, str]:
    """One turn: the conversation id, the context notice, and the answer."""
    wanted = TurnRequest(request.pop("model", "tiny"), [{"role": "user", "content": text}], **request)
    stream = backend.chat_turn(wanted)
    try:
        answer = "".join(chunk.content for chunk in stream)
    finally:
        stream.close()
    return stream.conversation_id, stream.notice, answer


def test_a_new_conversation_is_kept_under_the_models_full_name(backend: Backend, history: History) -> None:
    cid, notice, answer = say(backend, "hello there", conversation="new", source="cli")
    assert answer == "You said: hello there" and notice is None
    assert cid is not None
    chat = history.get(cid)
    assert (chat.model, chat.source, chat.title) == ("tiny:latest", "cli", "hello there")
    assert [(m.role, m.content) for m in chat.messages] == [("user", "hello there"), ("assistant", answer)]
    assert chat.messages[1].completion_tokens == 4 and chat.messages[1].model == "tiny:latest"


def test_settings_of_the_first_turn_hold_for_the_next(backend: Backend, engine: FakeEngine) -> None:
    cid, _, _ = say(backend, "one", conversation="new", options={"temperature": 0.1, "num_ctx": 2048})
    say(backend, "two", conversation=cid)
    assert engine.requests[-1]["temperature"] == 0.1
    assert [spec.num_ctx for spec in engine.loads] == [2048]  # one load, at the stored context
    assert [m["content"] for m in engine.requests[-1]["messages"]] == ["one", "You said: one", "two"]


def test_the_context_budget_is_the_models_own(backend: Backend, history: History) -> None:
    """The tiny model knows 256 tokens; through a server too (it was 4096 there before)."""
    cid, notice, _ = say(backend, "a" * 400, conversation="new")
    assert notice is None
    _, notice, _ = say(backend, "b" * 60, conversation=cid)
    assert notice is not None and "256-token" in notice
    assert cid is not None and any(m.summary_of for m in history.get(cid).messages)


def test_a_persona_goes_first_and_is_kept(backend: Backend, history: History, engine: FakeEngine) -> None:
    history.add_persona("pirate", "Talk like a pirate.")
    cid, _, _ = say(backend, "ahoy", conversation="new", persona="pirate")
    assert engine.requests[-1]["messages"][0] == {"role": "system", "content": "Talk like a pirate."}
    assert cid is not None and history.get(cid).persona == "pirate"


def test_a_system_message_changes_the_stored_prompt(backend: Backend, history: History) -> None:
    cid, _, _ = say(backend, "hi", conversation="new")
    stream = backend.chat_turn(
        TurnRequest(
            "tiny",
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "again"}],
            conversation=cid,
        )
    )
    list(stream)
    assert cid is not None and history.get(cid).system == "Be brief."


def test_a_stateless_chat_keeps_nothing(backend: Backend, history: History) -> None:
    chunks = list(backend.stream_chat("tiny", [{"role": "user", "content": "just this"}]))
    assert "".join(c.content for c in chunks) == "You said: just this"
    assert chunks[-1].done and chunks[-1].completion_tokens == 4
    assert history.list() == []


def test_model_names_and_the_store(backend: Backend) -> None:
    assert backend.model("tiny").name == "tiny:latest"
    assert "tiny:latest" in {m.name for m in backend.models()}
    with pytest.raises(ModelNotFound):
        backend.model("nothing-here")
    backend.copy("tiny", "twin")
    assert "twin:latest" in {m.name for m in backend.models()}
    # What each model is for, the same whichever way `cove list` asks: tiny has no chat template.
    backend.create("chatty", "FROM tiny\nTEMPLATE chatml\n")
    kinds = {m.name: catalog.model_kind(m) for m in backend.models()}
    assert (kinds["tiny:latest"], kinds["chatty:latest"]) == ("base", "chat")
    backend.remove("chatty")
    backend.remove("twin")
    assert "twin:latest" not in {m.name for m in backend.models()}


def test_loaded_models_show_their_slots(backend: Backend) -> None:
    say(backend, "load it")
    (loaded,) = backend.loaded()
    assert loaded.name == "tiny:latest" and loaded.num_ctx == 256
    assert loaded.num_parallel >= 1 and loaded.active == 0


# -- the CLI, through a running server -------------------------------------------------------------


def test_cli_run_goes_through_the_server(
    live: str,
    fake_cove: Cove,
    engine: FakeEngine,
    history: History,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CLI's own in-process library would load the real engine: any use of it fails the test.
    import cove.cli.main as main_module

    def no_local(settings: Settings) -> Cove:
        raise AssertionError("the CLI ran the model in-process although a server was up")

    monkeypatch.setattr(main_module, "Cove", no_local)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    code, out, err = run_main(monkeypatch, capsys, "run", "tiny", "hello", "server")
    assert (code, out.strip()) == (0, "You said: hello server"), err
    (summary,) = history.list()
    chat = history.get(summary.id)
    assert (chat.model, chat.source) == ("tiny:latest", "cli")

    code, out, err = run_main(monkeypatch, capsys, "run", "--resume", summary.id, "and", "again")
    assert code == 0, err
    assert [m["content"] for m in engine.requests[-1]["messages"]][-3:] == [
        "hello server",
        "You said: hello server",
        "and again",
    ]
    assert len(history.get(summary.id).messages) == 4


def test_cli_ps_through_the_server_shows_slots(
    live: str, fake_cove: Cove, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_cove.chat("tiny", [{"role": "user", "content": "warm up"}])
    code, out, err = run_main(monkeypatch, capsys, "ps")
    assert code == 0, err
    assert "tiny:latest" in out
    slots = fake_cove.loaded()[0].num_parallel
    assert f"0/{slots}" in out
