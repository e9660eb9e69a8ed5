"""Tests for searching and really deleting: bm25 ranking, snippets, hostile queries, bytes gone from disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cove.history import History, db_path
from cove.history.search import fts_query

SECRET = "zebraquokka"


@pytest.fixture
def history(cove_home: Path) -> Iterator[History]:
    with History(db_path(cove_home)) as opened:
        yield opened


def on_disk(path: Path) -> bytes:
    """The database file and its WAL together: everything SQLite has written."""
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_ranked_by_bm25_with_bracketed_snippets(history: History) -> None:
    chat = history.start("m", title="Fruit")
    once = history.add_message(
        chat.id, "user", "I had an apple with a long list of other things to eat today"
    )
    thrice = history.add_message(chat.id, "assistant", "apple apple apple")
    history.add_message(chat.id, "user", "bananas only")

    hits = history.search("apple")
    assert [h.message_id for h in hits] == [thrice.id, once.id]
    assert hits[0].snippet == "[apple] [apple] [apple]"
    assert "[apple]" in hits[1].snippet and "bananas" not in hits[1].snippet
    assert (hits[0].conversation_id, hits[0].title, hits[0].role, hits[0].position) == (
        chat.id,
        "Fruit",
        "assistant",
        1,
    )
    assert len(history.search("apple", limit=1)) == 1


def test_every_word_must_match_and_quotes_make_a_phrase(history: History) -> None:
    chat = history.start("m")
    adjacent = history.add_message(chat.id, "user", "the red panda sleeps")
    apart = history.add_message(chat.id, "user", "a panda that is red")
    assert {h.message_id for h in history.search("red panda")} == {adjacent.id, apart.id}
    assert [h.message_id for h in history.search('"red panda"')] == [adjacent.id]
    assert history.search("red giraffe") == []


def test_stems_and_accents_are_forgiven(history: History) -> None:
    chat = history.start("m")
    message = history.add_message(chat.id, "user", "She was running to the café")
    assert [h.message_id for h in history.search("runs")] == [message.id]
    assert [h.message_id for h in history.search("cafe")] == [message.id]
    assert "[running]" in history.search("run")[0].snippet


HOSTILE = {
    '"': 0,
    '""': 0,
    '"fox': 1,
    '"unbalanced': 0,
    "NEAR(": 1,
    "NEAR(fox, dog)": 0,  # words, not an operator: "near" is not next to "fox" in the text
    "*": 0,
    "fox*": 1,
    "-": 0,
    "-fox": 1,
    "AND OR": 1,
    "NOT": 0,
    "fox AND": 1,
    ")(": 0,
    "^fox": 1,
    "content:fox": 0,  # a column filter would find the fox; as text it is a two-word phrase
    "{content}: fox": 0,
    "\x00": 0,
    "fox\x00dog": 1,
    "日本語": 1,
    "🦊": 0,
    "x" * 5000: 0,
    " ".join(["fox"] * 500): 1,
}


@pytest.mark.parametrize(("text", "expected"), list(HOSTILE.items()), ids=[repr(k[:20]) for k in HOSTILE])
def test_hostile_search_text_never_raises(history: History, text: str, expected: int) -> None:
    chat = history.start("m")
    history.add_message(chat.id, "user", "NEAR( the quick fox AND OR the lazy dog")
    history.add_message(chat.id, "user", "日本語 のテキスト")
    assert len(history.search(text)) == expected


def test_queries_are_always_quoted() -> None:
    assert fts_query('say "hello world" NEAR(x') == '"say" "hello world" "NEAR(x"'
    assert fts_query("* - ( ) :") is None
    assert fts_query("") is None


def test_remove_takes_the_text_out_of_the_index_and_the_file(history: History) -> None:
    gone = history.start("m")
    kept = history.start("m")
    history.add_message(gone.id, "user", f"my secret word is {SECRET}")
    history.add_message(gone.id, "assistant", "noted")
    history.add_message(kept.id, "user", "nothing to hide")
    assert len(history.search(SECRET)) == 1

    history.remove(gone.id)
    assert history.search(SECRET) == []
    assert [h.conversation_id for h in history.search("nothing")] == [kept.id]
    assert SECRET.encode() not in on_disk(history.path)


def test_remove_all_empties_search_and_shrinks_the_file(history: History) -> None:
    for n in range(20):
        chat = history.start("m", title=f"chat {n}")
        for i in range(20):
            history.add_message(chat.id, "user", f"{SECRET} {n} {i} " + "lorem ipsum dolor " * 100)
    history.add_persona("tutor", "Explain.")
    before = len(on_disk(history.path))

    assert history.remove_all() == 20
    after = len(on_disk(history.path))
    assert after < before / 4
    assert history.list() == [] and history.search(SECRET) == [] and history.search("lorem") == []
    assert SECRET.encode() not in on_disk(history.path)
    assert [p.name for p in history.personas()] == ["tutor"]
    chat = history.start("m")  # still usable afterwards
    history.add_message(chat.id, "user", "fresh start")
    assert len(history.search("fresh")) == 1
