"""A chat turn inside a stored conversation: recording answers, the context budget, and summaries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, FakeModel
from gguf_writer import write_gguf

from cove.chat.context import SUMMARY_PROMPT, ContextNotice
from cove.chat.service import TurnRequest
from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.errors import BadRequest, EngineError, InvalidSetting
from cove.history import History, db_path, export_markdown
from cove.history.context import SUMMARY_INTRO
from cove.library.local import Cove

NOTES = "notes: the person sent long letters"
FAIL_PROMPT = "answer, then fail halfway"
ENGINE_FAILURE = "the engine stopped: upstream gpu-box went away"


class SummarisingModel(FakeModel):
    """Like FakeModel, but a summary request gets a short, recognisable answer."""

    def _words(self, body: dict[str, Any]) -> tuple[list[str], str]:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        if users and str(users[-1]["content"]).startswith(SUMMARY_PROMPT):
            words = [w + " " for w in NOTES.split(" ")]
            words[-1] = words[-1].rstrip()
            return words, "stop"
        return super()._words(body)

    def chat(self, body: dict[str, Any], on_chunk: Any = None) -> dict[str, Any]:
        if on_chunk and body.get("messages", [{}])[-1].get("content") == FAIL_PROMPT:
            for word in ("Half ", "an "):  # then its engine fails (a crash, an upstream gone)
                on_chunk({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
            raise EngineError(ENGINE_FAILURE)
        return super().chat(body, on_chunk)


class SummarisingEngine(FakeEngine):
    def __call__(self, spec: LoadSpec) -> FakeModel:
        with self.lock:
            self.loads.append(spec)
        return SummarisingModel(self, spec)


@pytest.fixture
def engine() -> FakeEngine:
    """Overrides conftest's engine, so `fake_cove` runs on the summarising fake."""
    return SummarisingEngine()


@pytest.fixture
def history(fake_cove: Cove) -> Iterator[History]:
    with History(db_path(fake_cove.settings.home)) as store:
        yield store


def say(cove: Cove, history: History, cid: str, text: str) -> tuple[str | None, str]:
    """One whole turn through the conversation service: the notice, and the answer as streamed."""
    model = history.get(cid).model
    stream = cove.chat_turn(TurnRequest(model, [{"role": "user", "content": text}], conversation=cid))
    return stream.notice, "".join(chunk.content for chunk in stream)


def summary_requests(engine: FakeEngine) -> list[dict[str, Any]]:
    return [body for body in engine.requests if body["messages"][-1]["content"].startswith(SUMMARY_PROMPT)]


# -- recording turns -------------------------------------------------------------------------


def test_turn_stores_question_and_answer_with_figures(
    fake_cove: Cove, history: History, engine: FakeEngine
) -> None:
    cid = history.start("tiny").id
    notice, answer = say(fake_cove, history, cid, "hello there")
    assert notice is None
    assert answer == "You said: hello there"

    chat = history.get(cid)
    assert chat.title == "hello there"
    user, reply = chat.messages
    assert (user.role, user.content, user.completion_tokens) == ("user", "hello there", None)
    # Stored under the full name, however it was typed, so `cove stats` counts one model.
    assert (reply.role, reply.content, reply.model) == ("assistant", answer, "tiny:latest")
    assert chat.model == "tiny:latest"
    assert reply.prompt_tokens == 5
    assert reply.completion_tokens == 4  # "You said: hello there"
    assert reply.tokens_per_s == 100.0
    assert reply.ttft_ms is not None and reply.ttft_ms >= 0

    # The next turn sends the whole conversation and keeps the first title.
    say(fake_cove, history, cid, "and again")
    assert engine.requests[-1]["messages"] == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "You said: hello there"},
        {"role": "user", "content": "and again"},
    ]
    chat = history.get(cid)
    assert chat.title == "hello there"
    assert [m.content for m in chat.messages][2:] == ["and again", "You said: and again"]


def test_title_is_the_first_line_and_an_existing_title_stays(fake_cove: Cove, history: History) -> None:
    cid = history.start("tiny").id
    say(fake_cove, history, cid, "  " + "w" * 70 + "\nsecond line")
    assert history.get(cid).title == "w" * 60

    named = history.start("tiny", title="Mine").id
    say(fake_cove, history, named, "something else")
    assert history.get(named).title == "Mine"


def test_system_prompt_goes_first(fake_cove: Cove, history: History, engine: FakeEngine) -> None:
    cid = history.start("tiny", system="be terse").id
    say(fake_cove, history, cid, "hi")
    assert engine.requests[-1]["messages"][0] == {"role": "system", "content": "be terse"}


def test_closing_the_stream_early_keeps_what_arrived(
    fake_cove: Cove, history: History, engine: FakeEngine
) -> None:
    engine.token_delay = 0.05  # slow enough that closing stops it halfway
    cid = history.start("tiny").id
    request = TurnRequest(
        "tiny", [{"role": "user", "content": "tell me a very long story please"}], conversation=cid
    )
    stream = iter(fake_cove.chat_turn(request))
    first = next(stream)
    assert first.content == "You "
    stream.close()  # type: ignore[attr-defined]

    user, reply = history.get(cid).messages
    assert user.content == "tell me a very long story please"
    assert reply.role == "assistant"
    full = "You said: tell me a very long story please"
    # What the engine made before it stopped is kept, and it did stop.
    assert reply.content.startswith("You ") and full.startswith(reply.content) and reply.content != full
    assert reply.completion_tokens is not None and reply.completion_tokens < len(full.split())
    # ... and marked as cut off, never passed off as a whole answer.
    assert reply.cut_off is not None and reply.cut_off.startswith("stopped before the end")
    say(fake_cove, history, cid, "and now a short one")
    assert history.get(cid).messages[-1].cut_off is None
    markdown = export_markdown(history, [cid])
    assert markdown.count("*(cut off: stopped before the end") == 1


def test_an_engine_failure_mid_answer_keeps_the_part_marked_cut_off(
    fake_cove: Cove, history: History
) -> None:
    cid = history.start("tiny").id
    with pytest.raises(EngineError):
        say(fake_cove, history, cid, FAIL_PROMPT)
    reply = history.get(cid).messages[-1]
    assert (reply.role, reply.content) == ("assistant", "Half an ")
    assert reply.cut_off == ENGINE_FAILURE


# -- the context budget ----------------------------------------------------------------------


def fill(cove: Cove, history: History, num_ctx: int = 64) -> str:
    """A conversation whose first turn fits a `num_ctx` context, with no room for a second."""
    cid = history.start("tiny", num_ctx=num_ctx).id
    notice, _ = say(cove, history, cid, "a" * 60)
    assert notice is None
    return cid


def test_outgrown_context_summarises_older_turns(
    fake_cove: Cove, history: History, engine: FakeEngine
) -> None:
    cid = fill(fake_cove, history)
    notice, answer = say(fake_cove, history, cid, "b" * 60)

    assert notice == str(ContextNotice(summarized=2, num_ctx=64))
    assert "2 older messages" in str(notice) and "64-token" in str(notice)
    assert answer == "You said: " + "b" * 60

    (asked,) = summary_requests(engine)
    assert "user: " + "a" * 60 in asked["messages"][0]["content"]
    assert "b" * 60 not in asked["messages"][0]["content"]  # the newest turn is kept, not summarised
    assert asked["max_tokens"] == 200
    # The chat's num_ctx reached the engine, for the summary and the answer alike.
    assert {spec.num_ctx for spec in engine.loads} == {64}

    # The answer was made from the summary and the newest turn.
    assert engine.requests[-1]["messages"] == [
        {"role": "system", "content": SUMMARY_INTRO + NOTES},
        {"role": "user", "content": "b" * 60},
    ]
    chat = history.get(cid)
    assert [(m.role, m.in_context) for m in chat.messages] == [
        ("user", False),
        ("assistant", False),
        ("user", True),
        ("system", True),
        ("assistant", True),
    ]
    assert chat.messages[0].content == "a" * 60  # nothing is lost from the history
    assert chat.messages[3].summary_of == (0, 1)
    assert history.context_messages(cid) == [
        {"role": "system", "content": SUMMARY_INTRO + NOTES},
        {"role": "user", "content": "b" * 60},
        {"role": "assistant", "content": answer},
    ]


def test_a_second_summary_carries_the_first(fake_cove: Cove, history: History, engine: FakeEngine) -> None:
    cid = fill(fake_cove, history)
    say(fake_cove, history, cid, "b" * 60)
    notice, _ = say(fake_cove, history, cid, "c" * 60)

    assert notice is not None and "2 older messages" in notice
    _, second = summary_requests(engine)
    prompt = second["messages"][0]["content"]
    assert "earlier summary: " + NOTES in prompt
    assert "b" * 60 in prompt and "a" * 60 not in prompt
    context = history.context_messages(cid)
    assert context[0] == {"role": "system", "content": SUMMARY_INTRO + NOTES}  # one summary, not two
    assert context[1:] == [{"role": "user", "content": "c" * 60}, context[-1]]
    assert len(history.get(cid).messages) == 8


def test_the_budget_follows_the_models_own_context(
    fake_cove: Cove, history: History, engine: FakeEngine
) -> None:
    # No num_ctx anywhere: the tiny model knows 256 tokens, so that is what loads and what counts.
    cid = history.start("tiny").id
    assert say(fake_cove, history, cid, "a" * 400)[0] is None
    notice, _ = say(fake_cove, history, cid, "b" * 60)
    assert notice == str(ContextNotice(summarized=2, num_ctx=256))
    assert {spec.num_ctx for spec in engine.loads} == {256}


def test_refuse_policy_stops_and_summarises_nothing(
    fake_cove: Cove, history: History, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = fill(fake_cove, history)
    monkeypatch.setattr(fake_cove, "settings", replace(fake_cove.settings, context_policy="refuse"))
    asked = len(engine.requests)
    with pytest.raises(BadRequest, match="num_ctx is 64"):
        say(fake_cove, history, cid, "b" * 60)
    assert len(engine.requests) == asked
    chat = history.get(cid)
    # What was typed is kept, nothing is taken out of context and no summary was written.
    assert [m.content for m in chat.messages] == ["a" * 60, "You said: " + "a" * 60, "b" * 60]
    assert all(m.in_context and m.summary_of is None for m in chat.messages)


def test_one_message_too_long_for_the_context(fake_cove: Cove, history: History, engine: FakeEngine) -> None:
    cid = history.start("tiny", num_ctx=64).id
    with pytest.raises(BadRequest, match=r"last message alone.*64-token context"):
        say(fake_cove, history, cid, "x" * 300)
    assert engine.requests == []
    assert all(m.in_context for m in history.get(cid).messages)


def test_invalid_policy_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_CONTEXT_POLICY", "sometimes")
    with pytest.raises(InvalidSetting, match="COVE_CONTEXT_POLICY"):
        Settings.from_env()


def test_policy_names_are_forgiving_about_case(
    cove_home: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COVE_CONTEXT_POLICY", " Summarize ")
    with Cove(Settings.from_env(), factory=engine) as cove:
        cove.store.import_gguf(write_gguf(cove_home.parent / "tiny.gguf"), "tiny", source="test")
        cid = fill(cove, cove.history)
        notice, _ = say(cove, cove.history, cid, "b" * 60)
    assert notice is not None and len(summary_requests(engine)) == 1
