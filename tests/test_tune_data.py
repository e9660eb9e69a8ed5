"""cove tune's data reading, held-out split and plan: no model, no torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cove.history import History, db_path
from cove.history.records import NewConversation, NewMessage
from cove.tune import data
from cove.tune.errors import BadTrainingData, TooBigForMachine
from cove.tune.plan import ModelShape, Plan, TuneSettings, check_fits, make_plan, total_steps


def chat(question: str, answer: str) -> str:
    return json.dumps(
        {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
    )


def test_jsonl_chats_are_read_and_bad_lines_are_named_by_number(tmp_path: Path) -> None:
    lines = [
        chat("q1", "a1"),
        "",
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
        json.dumps({"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}),
        json.dumps([1, 2]),
        chat("q2", "a2"),
        json.dumps({"text": "a document piece"}),
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(lines) + "\n")
    read = data.read_paths([path])
    assert [e.messages for e in read.examples if e.is_chat] == [
        (("user", "q1"), ("assistant", "a1")),
        (("user", "q2"), ("assistant", "a2")),
    ]
    assert [e.text for e in read.examples if not e.is_chat] == ["a document piece"]
    assert read.problems[0] == "chats.jsonl line 2: empty"
    assert read.problems[1].startswith("chats.jsonl line 3: not JSON")
    assert read.problems[2] == "chats.jsonl line 4: no assistant answer to learn from"
    assert read.problems[3].startswith("chats.jsonl line 5: message 0 needs a role")
    assert read.problems[4] == 'chats.jsonl line 6: expected {"messages": [...]}'
    assert read.summary() == {
        "examples": 3,
        "chats": 2,
        "document_pieces": 1,
        "sources": {"chats.jsonl": 3},
        "skipped": 5,
    }


def test_too_few_usable_examples_are_refused_with_the_count(tmp_path: Path) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text("\n".join([chat("q", "a")] * 3 + ["oops"] * 20))
    read = data.read_paths([path])
    assert len(read.problems) == 20
    assert read.shown_problems()[-1] == "... and 10 more"
    with pytest.raises(BadTrainingData, match="only 3 usable examples; at least 6"):
        data.split(read.examples, 0.1, seed=0)


def test_the_held_out_share_has_at_least_three_and_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    examples = [data.Example(origin=str(i), text=f"text {i}") for i in range(20)]
    train, held = data.split(examples, 0.1, seed=7)
    assert len(held) == 3 and len(train) == 17
    assert not {e.origin for e in train} & {e.origin for e in held}
    assert data.split(examples, 0.1, seed=7) == (train, held)
    assert data.split(examples, 0.1, seed=8) != (train, held)
    train, held = data.split(examples, 0.5, seed=0)
    assert len(held) == 10


def test_documents_are_cut_at_paragraphs_into_pieces(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("First paragraph.\n\nSecond one.\n\n" + "word " * 100)
    (tmp_path / "notes" / "ignored.bin").write_bytes(b"\0")
    read = data.read_paths([tmp_path / "notes"], piece_chars=60)
    pieces = [e.text for e in read.examples]
    assert pieces[0] == "First paragraph.\n\nSecond one."
    assert all(len(p) <= 60 for p in pieces)
    assert " ".join(pieces[1:]).split() == ["word"] * 100
    assert read.sources == {"a.md": len(pieces)}


def test_unreadable_and_unknown_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.xyz").write_text("a,b")
    with pytest.raises(BadTrainingData, match=r"x\.xyz: cove tune reads"):
        data.read_paths([tmp_path / "x.xyz"])
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "y.xyz").write_text("?")
    with pytest.raises(BadTrainingData, match="odd/ holds no chats or documents"):
        data.read_paths([tmp_path / "odd"])
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(BadTrainingData, match="not UTF-8"):
        data.read_paths([tmp_path / "bad.txt"])
    with pytest.raises(BadTrainingData, match="no such file"):
        data.read_paths([tmp_path / "missing.jsonl"])


def test_documents_the_knowledge_base_parses_are_read_as_text(tmp_path: Path) -> None:
    pytest.importorskip("cove.knowledge.parsers")
    page = tmp_path / "policy.html"
    page.write_text(
        "<html><body><h1>Leave</h1><p>Staff get 37 days.</p><script>alert(1)</script></body></html>"
    )
    read = data.read_paths([page])
    assert len(read.examples) == 1 and not read.examples[0].is_chat
    assert "Staff get 37 days." in read.examples[0].text and "alert" not in read.examples[0].text


def test_a_chatgpt_export_becomes_chats(tmp_path: Path) -> None:
    def node(nid: str, parent: str | None, role: str, text: str, child: str | None) -> dict:
        message = {"id": nid, "author": {"role": role}, "content": {"content_type": "text", "parts": [text]}}
        return {"id": nid, "message": message, "parent": parent, "children": [child] if child else []}

    export = [
        {
            "id": "c1",
            "create_time": 1_700_000_000,
            "current_node": "n2",
            "mapping": {
                "n1": node("n1", None, "user", "What is cove?", "n2"),
                "n2": node("n2", "n1", "assistant", "A private assistant.", None),
            },
        }
    ]
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(export))
    read = data.read_paths([path])
    assert [e.messages for e in read.examples] == [
        (("user", "What is cove?"), ("assistant", "A private assistant."))
    ]


def test_a_json_file_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(BadTrainingData, match="neither a cove history export nor a ChatGPT"):
        data.read_paths([path])


def test_history_conversations_by_search_or_id(cove_home: Path) -> None:
    with History(db_path(cove_home)) as history:
        stamp = "2026-01-01T00:00:00.000000+00:00"
        for index, (q, a) in enumerate(
            [("tell me about otters", "Otters swim."), ("and badgers?", "Badgers dig.")]
        ):
            history.import_conversations(
                [
                    NewConversation(
                        model="m",
                        created_at=stamp,
                        updated_at=stamp,
                        id=f"conv{index}",
                        messages=[
                            NewMessage(position=0, role="user", content=q, created_at=stamp),
                            NewMessage(position=1, role="assistant", content=a, created_at=stamp),
                        ],
                    )
                ]
            )
        found = data.history_chats(history, "otters")
        assert [e.messages[-1][1] for e in found] == ["Otters swim."]
        both = data.history_chats(history, "conv0, conv1")
        assert [e.messages[-1][1] for e in both] == ["Otters swim.", "Badgers dig."]
        with pytest.raises(BadTrainingData, match="no conversation in the history matches"):
            data.history_chats(history, "zebras")


# -- the plan ------------------------------------------------------------------------------------

SMOL = ModelShape(parameters=135_000_000, layers=30, width=576, vocab=49_152)


def test_steps_come_from_epochs_unless_given() -> None:
    assert total_steps(TuneSettings(epochs=3, batch_size=8), 21) == 9
    assert total_steps(TuneSettings(steps=5), 21) == 5


def test_a_run_that_does_not_fit_in_memory_is_refused_saying_what_would() -> None:
    settings = TuneSettings(batch_size=8, seq_len=2048)
    plan = make_plan(SMOL, settings, 100, 10, 50_000, 2048, available_bytes=2 * 1024**3)
    with pytest.raises(TooBigForMachine, match=r"needs about .* GB of memory") as caught:
        check_fits(plan, settings, None)
    assert "--batch-size 4" in str(caught.value) and "--seq-len 1024" in str(caught.value)
    roomy = make_plan(SMOL, settings, 100, 10, 50_000, 2048, available_bytes=64 * 1024**3)
    check_fits(roomy, settings, None)


def test_a_run_longer_than_the_limit_is_refused_with_the_steps_that_would_fit() -> None:
    plan = Plan(
        steps=1000, train_examples=1, held_out=3, train_tokens=1, memory_bytes=1, available_bytes=2**40
    )
    plan.step_seconds = 36.0  # 10 hours
    with pytest.raises(TooBigForMachine, match=r"about 10.0 h here .* try --steps 500"):
        check_fits(plan, TuneSettings(), max_hours=5)
    check_fits(plan, TuneSettings(), max_hours=11)


def test_memory_grows_with_the_sequence_and_the_batch() -> None:
    small = make_plan(SMOL, TuneSettings(batch_size=4), 10, 3, 1, 64, 2**40).memory_bytes
    long = make_plan(SMOL, TuneSettings(batch_size=4), 10, 3, 1, 512, 2**40).memory_bytes
    wide = make_plan(SMOL, TuneSettings(batch_size=16), 10, 3, 1, 512, 2**40).memory_bytes
    assert 135_000_000 * 4 < small < long < wide
