"""Tests for export and import: cove JSON round trips, Markdown, ChatGPT exports, and files refused whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cove.history import (
    History,
    ImportResult,
    InvalidImport,
    chosen,
    citations,
    db_path,
    export_json,
    export_markdown,
    import_file,
    write_export,
)
from cove.history import export as export_module


@pytest.fixture
def history(cove_home: Path) -> Iterator[History]:
    with History(db_path(cove_home)) as opened:
        yield opened


@pytest.fixture
def other(tmp_path: Path) -> Iterator[History]:
    """A second machine's history."""
    with History(tmp_path / "other" / "cove.db") as opened:
        yield opened


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def filled(history: History) -> str:
    history.add_persona("tutor", "Explain step by step.")
    chat = history.start(
        "gemma3:270m", title="Monads", persona="tutor", parameters={"temperature": 0.3}, num_ctx=4096
    )
    history.add_message(chat.id, "user", "What is a monad?")
    history.add_message(
        chat.id, "assistant", "A burrito, **roughly**.", prompt_tokens=9, completion_tokens=5, ttft_ms=12.5
    )
    history.add_message(chat.id, "user", "And a functor?")
    history.replace_with_summary(chat.id, 1, "Monads were compared to burritos.")
    plain = history.start("m", source="api")
    history.add_message(plain.id, "user", "ünïcödé ✓ 日本語")
    return chat.id


def comparable(history: History, cid: str) -> dict[str, Any]:
    """A conversation as export sees it, minus message ids (a new home gives new ones)."""
    found: dict[str, Any] = export_json(history, [cid])["conversations"][0]
    return found


# -- cove JSON and Markdown ------------------------------------------------------------------------


def test_json_round_trip_is_faithful_and_idempotent(history: History, other: History, tmp_path: Path) -> None:
    cid = filled(history)
    path = tmp_path / "export.json"
    write_export(history, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert (document["format"], document["version"], len(document["conversations"])) == ("cove.history", 1, 2)

    assert import_file(other, path) == ImportResult(imported=2, skipped=0)
    imported = other.get(cid)
    original = comparable(history, cid)
    copied = comparable(other, cid)
    assert copied == {**original, "external_id": f"cove:{cid}"}
    assert [m.in_context for m in imported.messages] == [False, False, True, True]
    assert other.context_messages(cid) == history.context_messages(cid)
    assert other.search("burritos")[0].conversation_id == cid


def test_an_answers_citations_travel_with_the_export(
    history: History, other: History, tmp_path: Path
) -> None:
    chat = history.start("gemma3:270m")
    history.add_message(chat.id, "user", "How long is the notice period?")
    answer = history.add_message(chat.id, "assistant", "Ninety days [1].")
    source = {"n": 1, "file": "contract.pdf", "page": 3, "heading": "Ending", "text": "90 days", "score": 0.8}
    citations.keep(history, answer.id, [source])
    path = tmp_path / "export.json"
    write_export(history, path)
    messages = json.loads(path.read_text(encoding="utf-8"))["conversations"][0]["messages"]
    assert [m.get("citations") for m in messages] == [None, [source]]

    import_file(other, path)
    copied = other.get(chat.id).messages[1]
    assert citations.of(other, chat.id) == {copied.id: [source]}


def test_a_conversations_collections_travel_with_the_export(
    history: History, other: History, tmp_path: Path
) -> None:
    chat = history.start("gemma3:270m")
    history.add_message(chat.id, "user", "When does the lease end?")
    chosen.choose(history, chat.id, chosen.Chosen(["lease", "letters"], strict=True))
    plain = history.start("gemma3:270m")
    path = tmp_path / "export.json"
    write_export(history, path)
    written = {c["id"]: c for c in json.loads(path.read_text(encoding="utf-8"))["conversations"]}
    assert (written[chat.id]["collections"], written[chat.id]["strict"]) == (["lease", "letters"], True)
    assert written[plain.id]["collections"] == []

    import_file(other, path)
    assert chosen.of(other, chat.id) == chosen.Chosen(["lease", "letters"], strict=True)
    assert chosen.of(other, plain.id) == chosen.Chosen()


def test_collections_that_are_not_names_refuse_the_file(history: History, tmp_path: Path) -> None:
    history.start("m")
    document = export_json(history)
    document["conversations"][0]["collections"] = "lease"
    with pytest.raises(InvalidImport, match=r"conversations\[0\]\.collections must be a list"):
        import_file(history, write(tmp_path / "bad.json", document))


def test_citations_that_are_not_a_list_refuse_the_file(history: History, tmp_path: Path) -> None:
    chat = history.start("m")
    history.add_message(chat.id, "assistant", "x")
    document = export_json(history)
    document["conversations"][0]["messages"][0]["citations"] = "contract.pdf"
    with pytest.raises(InvalidImport, match=r"messages\[0\]\.citations must be a list"):
        import_file(history, write(tmp_path / "bad.json", document))


def test_importing_twice_skips_everything_the_second_time(
    history: History, other: History, tmp_path: Path
) -> None:
    filled(history)
    path = tmp_path / "export.json"
    write_export(history, path)
    first = import_file(other, path)
    second = import_file(other, path)
    assert (first.imported, first.skipped) == (2, 0)
    assert (second.imported, second.skipped) == (0, 2)
    assert len(other.list()) == 2
    assert import_file(history, path).skipped == 2  # back into the history it came from

    again = tmp_path / "again.json"
    write_export(other, again)  # a re-export keeps the external ids, so it still skips
    assert import_file(history, again).imported == 0


def test_export_of_chosen_conversations_only(history: History) -> None:
    cid = filled(history)
    document = export_json(history, [cid[:6]])
    assert [c["id"] for c in document["conversations"]] == [cid]


def test_markdown_has_every_message(history: History, tmp_path: Path) -> None:
    cid = filled(history)
    text = export_markdown(history)
    for expected in (
        "# Monads",
        "# Untitled conversation",
        "persona tutor",
        "Explain step by step.",
        "## User\n\nWhat is a monad?",
        "## Assistant\n\nA burrito, **roughly**.",
        "## Summary of messages 0–1\n\nMonads were compared to burritos.",
        "ünïcödé ✓ 日本語",
        f"`{cid}`",
    ):
        assert expected in text
    path = tmp_path / "out.md"
    write_export(history, path, kind="markdown", ids=[cid])
    assert "What is a monad?" in path.read_text(encoding="utf-8")
    assert "日本語" not in path.read_text(encoding="utf-8")


# -- ChatGPT ---------------------------------------------------------------------------------------


def node(
    node_id: str, parent: str | None, children: list[str], message: dict[str, Any] | None
) -> dict[str, Any]:
    return {"id": node_id, "message": message, "parent": parent, "children": children}


def said(
    role: str, *parts: Any, when: float = 1_700_000_000.0, kind: str = "text", **extra: Any
) -> dict[str, Any]:
    return {
        "author": {"role": role},
        "content": {"content_type": kind, "parts": list(parts)},
        "create_time": when,
        **extra,
    }


def chatgpt_conversation(cid: str = "c-1", current: str = "a2") -> dict[str, Any]:
    """root -> hidden system -> user -> two answers (a regeneration): a1 and a2 -> follow-ups."""
    mapping = {
        "root": node("root", None, ["sys"], None),
        "sys": node("sys", "root", ["u1"], said("system", "")),
        "u1": node("u1", "sys", ["a1", "a2"], said("user", "Name a bird", when=1_700_000_100.0)),
        "a1": node("a1", "u1", ["u2"], said("assistant", "Penguin, the discarded answer")),
        "u2": node("u2", "a1", [], said("user", "Only on the other branch")),
        "a2": node(
            "a2",
            "u1",
            ["img"],
            said("assistant", "A heron.", when=1_700_000_200.0, metadata={"model_slug": "gpt-4o"}),
        ),
        "img": node(
            "img",
            "a2",
            ["code"],
            said("user", {"asset_pointer": "file://x"}, "Is this one?", kind="multimodal_text"),
        ),
        "code": node(
            "code", "img", ["tool"], {**said("assistant"), "content": {"content_type": "code", "text": "x=1"}}
        ),
        "tool": node("tool", "code", [], said("tool", "search results: herons")),
    }
    for child in ("img", "code", "tool"):
        mapping[child]["message"]["create_time"] = None
    return {
        "title": "Birds",
        "create_time": 1_700_000_000.0,
        "update_time": 1_700_000_300.0,
        "id": cid,
        "current_node": "tool" if current == "a2" else current,
        "mapping": mapping,
    }


def test_chatgpt_import_follows_the_shown_branch(history: History, tmp_path: Path) -> None:
    path = write(tmp_path / "conversations.json", [chatgpt_conversation()])
    assert import_file(history, path) == ImportResult(imported=1, skipped=0)
    assert import_file(history, path) == ImportResult(imported=0, skipped=1)

    [summary] = history.list()
    chat = history.get(summary.id)
    assert (chat.title, chat.source, chat.external_id, chat.model) == (
        "Birds",
        "import:chatgpt",
        "chatgpt:c-1",
        "gpt-4o",
    )
    assert [(m.role, m.content) for m in chat.messages] == [
        ("user", "Name a bird"),
        ("assistant", "A heron."),
        ("user", "Is this one?"),
        ("tool", "search results: herons"),
    ]
    assert chat.messages[1].model == "gpt-4o"
    assert chat.messages[0].created_at.timestamp() == 1_700_000_100.0
    assert chat.created_at.timestamp() == 1_700_000_000.0 and chat.updated_at.timestamp() == 1_700_000_300.0
    everything = export_markdown(history)
    assert "Penguin" not in everything and "other branch" not in everything
    assert history.search("penguin") == []


def test_chatgpt_other_branch_when_current_node_points_there(history: History, tmp_path: Path) -> None:
    path = write(tmp_path / "conversations.json", [chatgpt_conversation(current="u2")])
    import_file(history, path)
    chat = history.get(history.list()[0].id)
    assert [m.content for m in chat.messages] == [
        "Name a bird",
        "Penguin, the discarded answer",
        "Only on the other branch",
    ]


def test_a_cycle_refuses_the_whole_file(history: History, tmp_path: Path) -> None:
    looped = chatgpt_conversation("c-2")
    looped["mapping"]["u1"]["parent"] = "tool"  # u1 -> tool -> code -> img -> a2 -> u1
    path = write(tmp_path / "conversations.json", [chatgpt_conversation("c-1"), looped])
    with pytest.raises(InvalidImport, match="loop"):
        import_file(history, path)
    assert history.list() == []


def chatgpt_with(**changes: Any) -> list[Any]:
    return [{**chatgpt_conversation(), **changes}]


def cove_with(**changes: Any) -> dict[str, Any]:
    conversation = {"id": "x", "model": "m", "created_at": "2026-01-01T00:00:00", "updated_at": "2026-01-01"}
    return {
        "format": "cove.history",
        "version": 1,
        "conversations": [{**conversation, "messages": [], **changes}],
    }


BAD_SHAPES = {
    "a number": (42, "neither a cove history export nor a ChatGPT"),
    "an object without format": ({"conversations": []}, "neither"),
    "a list of numbers": ([1, 2, 3], "neither"),
    "chatgpt mapping is a list": (chatgpt_with(mapping=[]), "mapping must be a JSON object"),
    "chatgpt without id": ([{k: v for k, v in chatgpt_conversation().items() if k != "id"}], "has no id"),
    "chatgpt without current_node": (chatgpt_with(current_node=None), "has no current_node"),
    "chatgpt current_node missing": (chatgpt_with(current_node="nowhere"), "'nowhere' is missing"),
    "chatgpt bad time": (chatgpt_with(create_time="yesterday"), "create_time must be seconds"),
    "chatgpt impossible time": (chatgpt_with(create_time=1e300), "not a possible time"),
    "cove conversations not a list": (
        {"format": "cove.history", "version": 1, "conversations": "all"},
        "conversations must be a list",
    ),
    "cove newer version": ({"format": "cove.history", "version": 2, "conversations": []}, "version 2"),
    "cove missing version": ({"format": "cove.history", "conversations": []}, "needs a version"),
    "cove huge number": (cove_with(num_ctx=2**70), r"num_ctx is too large"),
    "cove bad time": (cove_with(created_at="last tuesday"), r"conversations\[0\]\.created_at is not"),
    "cove messages missing": (cove_with(messages=None), "messages must be a list"),
}


@pytest.mark.parametrize(("data", "problem"), list(BAD_SHAPES.values()), ids=list(BAD_SHAPES))
def test_wrong_shapes_are_refused(history: History, tmp_path: Path, data: Any, problem: str) -> None:
    with pytest.raises(InvalidImport, match=problem) as caught:
        import_file(history, write(tmp_path / "bad.json", data))
    assert "\n" not in str(caught.value) and caught.value.status == 400
    assert history.list() == []


def test_one_bad_message_refuses_the_whole_cove_file(
    history: History, other: History, tmp_path: Path
) -> None:
    filled(history)
    document = export_json(history)
    document["conversations"][1]["messages"][0]["role"] = "narrator"
    with pytest.raises(InvalidImport, match=r"conversations\[1\]\.messages\[0\]\.role"):
        import_file(other, write(tmp_path / "bad.json", document))
    assert other.list() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[{"title": "caf\xe9"}]', "UTF-8"),
        (b"not json at all", "not JSON"),
        (b'{"format": "cove.history", "version": 1,', "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
        (b"[" * 100 + b"]" * 100, "nests deeper"),
        (b'[{"id": "c", "create_time": NaN, "mapping": {}}]', "NaN is not a JSON number"),
        (b'[{"id": "c", "title": "\\ud800", "mapping": {}}]', "lone surrogate"),
    ],
)
def test_unreadable_files_are_refused(history: History, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "conversations.json"
    path.write_bytes(content)
    with pytest.raises(InvalidImport, match=message):
        import_file(history, path)
    assert history.list() == []


def test_oversize_file_is_refused_before_reading(
    history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "conversations.json", [chatgpt_conversation()])
    monkeypatch.setattr(export_module, "MAX_IMPORT_BYTES", 100)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read an oversize file"))
    with pytest.raises(InvalidImport, match="limit"):
        import_file(history, path)
    assert history.list() == []


def test_missing_file_is_refused(history: History, tmp_path: Path) -> None:
    with pytest.raises(InvalidImport, match=r"cannot read nowhere\.json"):
        import_file(history, tmp_path / "nowhere.json")
