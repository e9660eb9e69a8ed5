"""Parsers: each format's text, headings and pages from small files the tests write, and every
file that cannot be indexed refused with a reason (never a crash, never silently empty)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cove.knowledge.chunking import full_text
from cove.knowledge.documents import ParsedDocument
from cove.knowledge.errors import DocumentRefused
from cove.knowledge.parsers import SUFFIXES, is_supported, limits, parse


def offsets_hold(doc: ParsedDocument) -> bool:
    text = full_text(doc)
    return all(text[s.start : s.start + len(s.text)] == s.text for s in doc.sections)


def test_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("first paragraph\n\nsecond paragraph\n", encoding="utf-8")
    doc = parse(path)
    assert full_text(doc) == "first paragraph\n\nsecond paragraph"
    assert doc.pages is None and doc.problems == [] and offsets_hold(doc)


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1252", "Café crème à la française — naïve façade, déjà vu, garçon, œuvre. " * 4),
        ("utf-16", "Grüße aus München, schöne Größe"),
        ("utf-16-le", "plain ascii written as utf-16 without a byte order mark, twice over"),
        ("latin-1", "Ça coûte très cher, répondit-il à l'élève. " * 4),
        ("utf-8-sig", "with a BOM"),
    ],
)
def test_non_utf8_text_is_detected_and_decoded(tmp_path: Path, encoding: str, text: str) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode(encoding))
    assert full_text(parse(path)) == text.strip()


def test_undecodable_bytes_never_crash(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"ok text " * 20 + bytes(range(0x80, 0x100)) + b" more ok text")
    doc = parse(path)
    assert "ok text" in full_text(doc) and "more ok text" in full_text(doc)


def test_binary_bytes_with_a_text_suffix_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xff\xfe" * 10)
    with pytest.raises(DocumentRefused, match="binary"):
        parse(path)


def test_markdown_headings_become_heading_paths(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "Preface text.\n\n# Guide\n\n## Install\n\nRun the installer.\n\n"
        "```\n# a comment, not a heading\n```\n\n## Refunds\n\nAsk within 30 days.\n\n"
        "# Appendix\n\nLast words.\n",
        encoding="utf-8",
    )
    doc = parse(path)
    assert [s.heading for s in doc.sections] == [
        (),
        ("Guide", "Install"),
        ("Guide", "Refunds"),
        ("Appendix",),
    ]
    assert doc.sections[1].text.startswith("# Guide\n\n## Install\n\nRun the installer.")
    assert "# a comment, not a heading" in doc.sections[1].text
    assert doc.title == "Guide" and offsets_hold(doc)


def test_setext_headings(tmp_path: Path) -> None:
    path = tmp_path / "setext.markdown"
    path.write_text("Title\n=====\n\nbody\n\nPart\n----\n\nmore\n", encoding="utf-8")
    assert [s.heading for s in parse(path).sections] == [("Title",), ("Title", "Part")]


def test_suffixes_and_is_supported() -> None:
    assert {".txt", ".md"} <= SUFFIXES
    assert is_supported(Path("A/README.MD")) and not is_supported(Path("x.exe"))


def test_unsupported_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "program.exe"
    path.write_bytes(b"MZ")
    with pytest.raises(DocumentRefused, match="not supported"):
        parse(path)


def test_a_directory_named_like_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(DocumentRefused, match="directory"):
        parse(tmp_path / "folder.txt")


def test_a_symlink_to_a_directory_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "inside.txt").write_text("secret", encoding="utf-8")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real")
    with pytest.raises(DocumentRefused, match="directory"):
        parse(tmp_path / "link.txt")


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").symlink_to(tmp_path / "b.txt")
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    with pytest.raises(DocumentRefused, match="loop"):
        parse(tmp_path / "a.txt")


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(DocumentRefused, match="not a regular file"):
        parse(tmp_path / "pipe.txt")


def test_permission_denied_is_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tests run as root, for whom chmod 000 does not stop a read: make the open fail as it would
    path = tmp_path / "private.txt"
    path.write_text("x", encoding="utf-8")
    real_open = os.open

    def denied(file: object, *args: object, **kwargs: object) -> int:
        if Path(str(file)) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(DocumentRefused, match="permission denied"):
        parse(path)


def test_a_1_gb_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as f:  # sparse: costs no disk
        f.truncate(1024**3)
    with pytest.raises(DocumentRefused, match=r"1\.0 GB"):
        parse(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DocumentRefused, match="no longer exists"):
        parse(tmp_path / "gone.txt")


def test_empty_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    doc = parse(path)
    assert doc.sections == [] and doc.problems == ["no text found in this file"]


def test_nul_characters_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "nul.txt"
    path.write_text("before\x00after", encoding="utf-8")
    assert full_text(parse(path)) == "beforeafter"


def test_the_time_cap_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    deadline = limits.Deadline(seconds=0.0)
    with pytest.raises(DocumentRefused, match="longer than"):
        deadline.check()


def test_a_caller_with_the_size_can_refuse_before_reading() -> None:
    from cove.knowledge.parsers import check_size

    check_size(limits.MAX_FILE_BYTES)
    with pytest.raises(DocumentRefused, match=r"is 1\.0 GB; cove indexes files up to 100\.0 MB"):
        check_size(1024**3)
