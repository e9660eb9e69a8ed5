"""Counting a conversation's tokens for its context (chat/context.py): the loaded model's own
tokenizer, each text once while it stays loaded, and the cheap guess where no engine is at hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine

from cove.chat.context import TURN_MARKERS, ModelTokens, estimate_tokens, guess
from cove.chat.service import TurnRequest
from cove.config import Settings
from cove.errors import EngineError
from cove.history import History
from cove.library.local import Cove


def say(cove: Cove, cid: str, text: str) -> str | None:
    stream = cove.chat_turn(TurnRequest("tiny", [{"role": "user", "content": text}], conversation=cid))
    for _ in stream:  # the whole answer, so the turn is stored
        pass
    return stream.notice


class Counted:
    """A counter that says what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def counts(self, texts: Any) -> list[int]:
        self.asked.extend(texts)
        return [len(t.split()) for t in texts]


def test_counts_come_from_the_counter_with_each_turns_markers() -> None:
    messages = [{"role": "user", "content": "one two three"}, {"role": "assistant", "content": None}]
    assert estimate_tokens(messages) == guess("one two three") + 2 * TURN_MARKERS
    counter = Counted()
    assert estimate_tokens(messages, counter) == 3 + 2 * TURN_MARKERS
    assert counter.asked == ["one two three", ""]


def test_the_loaded_models_tokenizer_counts_each_text_once(fake_cove: Cove, engine: FakeEngine) -> None:
    counter = ModelTokens(fake_cove, "tiny", {})
    text = "a sentence of forty-one characters, about"
    assert counter.counts([text]) == [guess(text)]  # not loaded: nothing is loaded just to count
    assert engine.loads == []
    fake_cove.chat("tiny", [{"role": "user", "content": "hi"}])  # loaded now, and kept loaded
    (runner,) = fake_cove.scheduler.loaded()
    calls: list[str] = []
    tokenize = runner.model.tokenize

    def counting(piece: str) -> list[int]:
        calls.append(piece)
        return tokenize(piece)

    runner.model.tokenize = counting  # type: ignore[method-assign]
    assert counter.counts([text, "hi"]) == [len(text.encode()), 2]  # the fake: a token a byte
    assert counter.counts([text, "hi", "new"]) == [len(text.encode()), 2, 3]
    assert calls == [text, "hi", "new"]  # each text once: a turn tokenizes only what is new


def test_an_engine_that_cannot_tokenize_is_guessed(fake_cove: Cove) -> None:
    fake_cove.chat("tiny", [{"role": "user", "content": "hi"}])
    (runner,) = fake_cove.scheduler.loaded()

    def stopped(_: str) -> list[int]:
        raise EngineError("the engine stopped")

    runner.model.tokenize = stopped  # type: ignore[method-assign]
    assert ModelTokens(fake_cove, "tiny", {}).counts(["x" * 30]) == [10]


def test_a_turn_budgets_with_the_models_count_once_it_is_loaded(
    fake_cove: Cove, history: History, engine: FakeEngine
) -> None:
    # The fake tokenizer makes a token of every byte: 200 characters are 200 tokens, where the
    # guess says 66. In a 512-token context (384 for the prompt) the guess would let the second
    # turn through whole (about 170 tokens); the model's own count (about 470) does not.
    cid = history.start("tiny", num_ctx=512).id
    assert say(fake_cove, cid, "a" * 200) is None  # first turn: not loaded yet, guessed
    messages = [*history.context_messages(cid), {"content": "b" * 40}]
    counter = ModelTokens(fake_cove, "tiny", {"num_ctx": 512})  # as the conversation loads it
    assert estimate_tokens(messages) < 384 < estimate_tokens(messages, counter)
    notice = say(fake_cove, cid, "b" * 40)
    assert notice is not None and "older messages were replaced by a summary" in notice


@pytest.fixture
def history(fake_cove: Cove) -> History:
    return fake_cove.history


@pytest.mark.model
def test_the_real_tokenizer_counts_the_bundled_model(real_home: Path) -> None:
    with Cove(Settings.from_env()) as cove:
        counter = ModelTokens(cove, "gemma3:270m", {})
        text = "The lighthouse keeper counted the ships: one, two, three, four, five."
        assert counter.counts([text]) == [guess(text)]
        cove.generate("gemma3:270m", "Hello", options={"num_predict": 2})
        (runner,) = cove.scheduler.loaded()
        (count,) = counter.counts([text])
        assert count == len(runner.model.tokenize(text)) and 10 < count < len(text)
