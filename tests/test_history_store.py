"""Tests for the conversation store: CRUD, id prefixes, settings, summaries, personas, migrations, usage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest

from cove.errors import BadRequest
from cove.history import (
    KEEP,
    AmbiguousConversation,
    ConversationNotFound,
    History,
    PersonaNotFound,
    db_path,
)
from cove.history import store as store_module
from cove.history.db import Database, connect
from cove.history.migrations import STEPS, migrate
from cove.history.records import NewConversation, NewMessage


@pytest.fixture
def history(cove_home: Path) -> Iterator[History]:
    with History(db_path(cove_home)) as opened:
        yield opened


# -- conversations and messages ------------------------------------------------------------------


def test_start_add_and_get_keep_everything(history: History) -> None:
    chat = history.start(
        "gemma3:270m",
        title="  Monads\n explained ",
        system="Be brief.",
        parameters={"temperature": 0.2},
        num_ctx=4096,
        source="api",
    )
    assert (chat.title, chat.model, chat.source, chat.messages) == (
        "Monads explained",
        "gemma3:270m",
        "api",
        [],
    )
    history.add_message(chat.id, "user", "What is a monad?")
    answer = history.add_message(
        chat.id,
        "assistant",
        "A burrito.",
        prompt_tokens=12,
        completion_tokens=3,
        ttft_ms=40.5,
        tokens_per_s=55.0,
        model="smollm2:135m",
    )

    got = history.get(chat.id)
    assert [(m.position, m.role, m.content) for m in got.messages] == [
        (0, "user", "What is a monad?"),
        (1, "assistant", "A burrito."),
    ]
    assert got.messages[1] == answer
    assert (answer.prompt_tokens, answer.completion_tokens, answer.ttft_ms, answer.tokens_per_s) == (
        12,
        3,
        40.5,
        55.0,
    )
    assert got.system == "Be brief." and got.parameters == {"temperature": 0.2} and got.num_ctx == 4096
    assert got.updated_at >= got.created_at


def test_bad_role_is_refused(history: History) -> None:
    chat = history.start("m")
    with pytest.raises(BadRequest, match="role"):
        history.add_message(chat.id, "narrator", "Once upon a time")
    assert history.get(chat.id).messages == []


def test_unique_prefix_of_four_finds_the_conversation(history: History) -> None:
    chat = history.start("m")
    assert history.get(chat.id[:4]).id == chat.id
    history.add_message(chat.id[:6], "user", "hi")
    assert len(history.get(chat.id).messages) == 1


@pytest.mark.parametrize("ref", ["nope-not-an-id", "zzzz", "", "abc"])
def test_unknown_id_is_conversation_not_found(history: History, ref: str) -> None:
    history.start("m")
    for call in (history.get, history.remove, lambda r: history.rename(r, "x")):
        with pytest.raises(ConversationNotFound) as caught:
            call(ref)
        assert caught.value.status == 404
    with pytest.raises(ConversationNotFound):
        history.add_message(ref, "user", "hi")


def test_short_prefix_does_not_match(history: History) -> None:
    chat = history.start("m")
    with pytest.raises(ConversationNotFound, match="4"):
        history.get(chat.id[:3])


def test_ambiguous_prefix_says_so(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["abcd00000001", "abcd00000002"])
    monkeypatch.setattr(store_module, "new_id", lambda: next(ids))
    history.start("m")
    history.start("m")
    with pytest.raises(AmbiguousConversation, match="abcd00000001"):
        history.get("abcd")
    assert history.get("abcd00000002").id == "abcd00000002"


def test_list_is_newest_activity_first_with_counts(history: History) -> None:
    first = history.start("m", title="first")
    second = history.start("m", title="second")
    history.add_message(first.id, "user", "bump the first one " + "x" * 200)
    history.add_message(first.id, "assistant", "ok")

    listed = history.list()
    assert [(s.title, s.message_count) for s in listed] == [("first", 2), ("second", 0)]
    assert listed[0].preview == ("bump the first one " + "x" * 200)[:80]
    assert listed[1].preview is None
    assert [s.id for s in history.list(limit=1, offset=1)] == [second.id]


def test_list_counts_and_previews_the_branch_shown(history: History) -> None:
    chat = history.start("m")
    asked = history.add_message(chat.id, "user", "first question")
    history.add_message(chat.id, "assistant", "first answer")
    history.branch_before(chat.id, asked.id)  # the question edited: a sibling branch
    history.add_message(chat.id, "user", "edited question")
    history.add_message(chat.id, "assistant", "another answer")
    history.add_message(chat.id, "user", "and a follow-up")

    (listed,) = history.list()
    assert (listed.message_count, listed.preview) == (3, "edited question")
    history.select_branch(chat.id, asked.id + 1)  # the first branch shown again
    (listed,) = history.list()
    assert (listed.message_count, listed.preview) == (2, "first question")


def test_rename_and_update_settings(history: History) -> None:
    chat = history.start("m", system="old", parameters={"top_p": 0.9}, num_ctx=2048)
    history.rename(chat.id, "Named")
    changed = history.update_settings(chat.id, model="bigger", num_ctx=None)
    assert (changed.title, changed.model, changed.system, changed.num_ctx) == ("Named", "bigger", "old", None)
    assert changed.parameters == {"top_p": 0.9}
    cleared = history.update_settings(chat.id, system=None, parameters={"temperature": 1.0}, model=KEEP)
    assert (cleared.model, cleared.system, cleared.parameters) == ("bigger", None, {"temperature": 1.0})
    with pytest.raises(BadRequest, match="parameters"):
        history.update_settings(chat.id, parameters={"bad": object()})


def test_remove_deletes_conversation_and_messages(history: History) -> None:
    kept = history.start("m")
    gone = history.start("m")
    history.add_message(gone.id, "user", "delete me")
    history.add_message(kept.id, "user", "keep me")
    history.remove(gone.id[:5])
    with pytest.raises(ConversationNotFound):
        history.get(gone.id)
    assert [s.id for s in history.list()] == [kept.id]
    assert history.stats().messages == 1


# -- summaries and context -----------------------------------------------------------------------


def test_summary_hides_old_turns_from_the_model_but_not_the_person(history: History) -> None:
    chat = history.start("m", system="Be kind.")
    for i in range(6):
        history.add_message(chat.id, "user" if i % 2 == 0 else "assistant", f"turn {i}")

    summary = history.replace_with_summary(chat.id, 3, "They greeted each other.")
    assert (summary.position, summary.role, summary.summary_of) == (6, "system", (0, 3))

    everything = history.get(chat.id).messages
    assert [m.content for m in everything] == [f"turn {i}" for i in range(6)] + ["They greeted each other."]
    assert [m.in_context for m in everything] == [False] * 4 + [True] * 3
    assert history.context_messages(chat.id) == [
        {
            "role": "system",
            "content": "Be kind.\n\nSummary of the earlier conversation:\nThey greeted each other.",
        },
        {"role": "user", "content": "turn 4"},
        {"role": "assistant", "content": "turn 5"},
    ]


def test_a_second_summary_replaces_the_first(history: History) -> None:
    chat = history.start("m")
    for i in range(4):
        history.add_message(chat.id, "user", f"turn {i}")
    history.replace_with_summary(chat.id, 1, "first summary")  # position 4
    history.add_message(chat.id, "user", "turn 5")
    second = history.replace_with_summary(chat.id, 4, "second summary")
    assert second.summary_of == (0, 4)
    assert history.context_messages(chat.id) == [
        {"role": "system", "content": "Summary of the earlier conversation:\nsecond summary"},
        {"role": "user", "content": "turn 5"},
    ]
    assert len(history.get(chat.id).messages) == 7


def test_summary_needs_something_to_replace(history: History) -> None:
    chat = history.start("m")
    with pytest.raises(BadRequest):
        history.replace_with_summary(chat.id, 0, "nothing yet")
    history.add_message(chat.id, "user", "hi")
    with pytest.raises(BadRequest):
        history.replace_with_summary(chat.id, 0, "   ")
    assert len(history.get(chat.id).messages) == 1


# -- personas --------------------------------------------------------------------------------------


def test_personas_add_list_use_and_remove(history: History) -> None:
    history.add_persona("tutor", "Explain step by step.")
    history.add_persona("pirate", "Talk like a pirate.")
    history.add_persona("tutor", "Explain slowly.")  # changing an existing one
    assert [(p.name, p.system) for p in history.personas()] == [
        ("pirate", "Talk like a pirate."),
        ("tutor", "Explain slowly."),
    ]
    chat = history.start("m", persona="tutor")
    assert (chat.persona, chat.system) == ("tutor", "Explain slowly.")
    own = history.start("m", persona="pirate", system="Only say arr.")
    assert own.system == "Only say arr."

    history.remove_persona("tutor")
    with pytest.raises(PersonaNotFound):
        history.persona("tutor")
    with pytest.raises(PersonaNotFound):
        history.remove_persona("tutor")
    with pytest.raises(PersonaNotFound):
        history.start("m", persona="tutor")
    assert history.get(chat.id).system == "Explain slowly."  # the conversation kept its copy


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "tab\there"])
def test_bad_persona_names_are_refused(history: History, name: str) -> None:
    with pytest.raises(BadRequest, match="persona name"):
        history.add_persona(name, "prompt")
    assert history.personas() == []


# -- the file itself ------------------------------------------------------------------------------


def test_connection_settings(tmp_path: Path) -> None:
    conn = connect(tmp_path / "cove.db")
    settings = {
        name: conn.execute(f"PRAGMA {name}").fetchall()[0][0]
        for name in ("journal_mode", "synchronous", "foreign_keys", "secure_delete", "busy_timeout")
    }
    assert settings == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "secure_delete": 1,
        "busy_timeout": 10_000,
    }
    assert (tmp_path / "cove.db").stat().st_mode & 0o077 == 0  # private to its owner


def test_migrations_are_recorded_once(cove_home: Path) -> None:
    path = db_path(cove_home)
    History(path).close()
    History(path).close()
    names = [
        row[0] for row in apsw.Connection(str(path)).execute("SELECT name FROM _migrations ORDER BY rowid")
    ]
    assert (
        names
        == [step.__name__ for step in STEPS]
        == [
            "m001_conversations",
            "m002_fts",
            "m003_personas",
            "m004_egress",
            "m005_measurements",
            "m006_branches",
            "m007_citations",
            "m008_cut_off",
            "m009_conversation_collections",
            "m010_measurement_decode_model",
        ]
    )
    assert migrate(Database(path)) == []


def test_migrations_keep_existing_rows(cove_home: Path) -> None:
    path = db_path(cove_home)
    with History(path) as history:
        chat = history.start("m")
        history.add_message(chat.id, "user", "still here")
    with History(path) as history:
        assert [m.content for m in history.get(chat.id).messages] == ["still here"]


# -- usage -----------------------------------------------------------------------------------------


def _old_conversation(model: str, when: datetime, answers: list[NewMessage]) -> NewConversation:
    stamp = when.isoformat(timespec="microseconds")
    return NewConversation(
        model=model, created_at=stamp, updated_at=stamp, external_id=f"test:{when}", messages=answers
    )


def _answer(position: int, when: datetime, **figures: Any) -> NewMessage:
    return replace(
        NewMessage(position, "assistant", "answer", when.isoformat(timespec="microseconds")), **figures
    )


def test_stats_totals_and_per_model(history: History) -> None:
    january = datetime(2026, 1, 10, tzinfo=UTC)
    march = datetime(2026, 3, 10, tzinfo=UTC)
    history.import_conversations(
        [
            _old_conversation(
                "small",
                january,
                [
                    NewMessage(0, "user", "q", january.isoformat(), prompt_tokens=None),
                    _answer(
                        1, january, prompt_tokens=100, completion_tokens=10, tokens_per_s=50.0, ttft_ms=100.0
                    ),
                    _answer(
                        2, january, prompt_tokens=200, completion_tokens=30, tokens_per_s=30.0, ttft_ms=300.0
                    ),
                ],
            ),
            _old_conversation(
                "small",
                march,
                [
                    _answer(
                        0, march, prompt_tokens=1000, completion_tokens=100, tokens_per_s=10.0, model="big"
                    )
                ],
            ),
        ]
    )

    everything = history.stats()
    assert (everything.conversations, everything.messages) == (2, 4)
    assert (everything.tokens_in, everything.tokens_out) == (1300, 140)
    small, big = everything.by_model["small"], everything.by_model["big"]
    assert (small.answers, small.tokens_in, small.tokens_out) == (2, 300, 40)
    assert small.avg_tokens_per_s == pytest.approx(40.0)
    assert small.avg_ttft_ms == pytest.approx(200.0)
    assert (big.answers, big.tokens_in, big.tokens_out, big.avg_ttft_ms) == (1, 1000, 100, None)

    early = history.stats(since=datetime(2026, 1, 1, tzinfo=UTC), until=datetime(2026, 2, 1, tzinfo=UTC))
    assert (early.conversations, early.messages, early.tokens_in, set(early.by_model)) == (
        1,
        3,
        300,
        {"small"},
    )
    later = history.stats(since=datetime(2026, 2, 1, tzinfo=UTC))
    assert (later.conversations, later.tokens_out, set(later.by_model)) == (1, 100, {"big"})
    assert history.stats(since=datetime.now(UTC) + timedelta(days=1)).messages == 0
