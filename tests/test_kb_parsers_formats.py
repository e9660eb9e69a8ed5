"""Each format's parser on a small file the test writes: text in reading order, heading paths,
pages for paged formats, exact offsets, and nothing from scripts, styles or directives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kb_files import docx_file, email_message, epub_file, pdf_bytes, pptx_file, scanned_pdf

from cove.knowledge.chunking import chunk, full_text
from cove.knowledge.documents import ParsedDocument
from cove.knowledge.parsers import SUFFIXES, parse


def offsets_hold(doc: ParsedDocument) -> bool:
    text = full_text(doc)
    return all(text[s.start : s.start + len(s.text)] == s.text for s in doc.sections)


def test_every_format_the_issue_names_is_supported() -> None:
    named = {
        ".txt",
        ".md",
        ".rst",
        ".html",
        ".htm",
        ".pdf",
        ".docx",
        ".pptx",
        ".epub",
        ".eml",
        ".mbox",
        ".csv",
    }
    code = {".py", ".js", ".ts", ".go", ".rs", ".java", ".c", ".cpp", ".rb", ".sh"}
    assert named | code <= SUFFIXES


def test_html_headings_and_no_scripts_or_styles(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Help  page</title><style>p{color:red}</style>"
        "<script>document.write('evil')</script></head><body><p>Intro &amp; welcome</p>"
        "<h1>Guide</h1><h2>Install</h2><p>Run   the\ninstaller.</p>"
        "<script>var s = '<h1>not a heading</h1>';</script><noscript>enable js</noscript>"
        "<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Basic</td><td>5</td></tr></table>"
        "<h2>Refunds</h2><pre>  keep\n    spacing</pre><ul><li>one<li>two</ul>"
        "<img src=x onerror=alert(1)><a href='https://example.com/x'>a link</a></body></html>",
        encoding="utf-8",
    )
    doc = parse(path)
    text = full_text(doc)
    assert doc.title == "Help page"
    assert [s.heading for s in doc.sections] == [(), ("Guide", "Install"), ("Guide", "Refunds")]
    assert doc.sections[1].text == "Guide\n\nInstall\n\nRun the installer.\n\nPlan | Price\n\nBasic | 5"
    assert "  keep\n    spacing" in text and "a link" in text
    for absent in ("evil", "not a heading", "color", "enable js", "alert", "example.com"):
        assert absent not in text
    assert offsets_hold(doc)


def test_html_declared_charset(tmp_path: Path) -> None:
    path = tmp_path / "old.htm"
    path.write_bytes('<meta charset="windows-1252"><p>Café — déjà</p>'.encode("cp1252"))
    assert full_text(parse(path)) == "Café — déjà"


def test_restructuredtext_sections_and_no_file_inclusion(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET CONTENT", encoding="utf-8")
    path = tmp_path / "manual.rst"
    path.write_text(
        f"Manual\n======\n\nIntro text.\n\nInstall\n-------\n\nRun *it* now.\n\n.. include:: {secret}\n\n"
        f".. raw:: html\n\n   <script>raw html</script>\n\n.. csv-table::\n   :file: {secret}\n\n"
        "- one\n- two\n\nRefunds\n-------\n\nWithin 30 days.\n\n.. code:: python\n\n   print(1)\n",
        encoding="utf-8",
    )
    doc = parse(path)
    text = full_text(doc)
    assert [s.heading for s in doc.sections] == [("Manual",), ("Manual", "Install"), ("Manual", "Refunds")]
    assert "Run it now." in text and "Within 30 days." in text and "print(1)" in text
    assert "TOP SECRET" not in text and "raw html" not in text
    assert doc.title == "Manual" and offsets_hold(doc)


def test_pdf_pages_outline_headings_and_pages_without_text(tmp_path: Path) -> None:
    path = tmp_path / "contract.pdf"
    path.write_bytes(
        pdf_bytes(
            ["Chapter one text.\nSecond line.", "", "Refunds are paid within 30 days."],
            outline=[("Terms", 0), ("Refunds", 2)],
            title="The Contract",
        )
    )
    doc = parse(path)
    assert doc.pages == 3 and doc.title == "The Contract"
    assert [(s.page, s.heading, s.text) for s in doc.sections] == [
        (1, ("Terms",), "Chapter one text.\nSecond line."),
        (3, ("Refunds",), "Refunds are paid within 30 days."),
    ]
    assert doc.pages_without_text == [2]
    assert any("page 2" in p and "--ocr" in p for p in doc.problems)
    chunks = chunk(doc, lambda s: len(s.split()) + 2, max_tokens=6, overlap_tokens=0)
    assert {c.page for c in chunks} == {1, 3}
    assert all(full_text(doc)[c.start : c.end] == c.text for c in chunks)


def test_a_scanned_pdf_is_never_silently_empty(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    scanned_pdf(path, "Refunds are paid\nwithin thirty days.")
    doc = parse(path)
    assert doc.sections == [] and doc.pages == 1 and doc.pages_without_text == [1]
    assert any("no text layer" in p and "--ocr" in p for p in doc.problems)


@pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract-ocr is not installed (apt install tesseract-ocr)"
)
def test_ocr_reads_a_scanned_page(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    scanned_pdf(path, "Refunds are paid\nwithin thirty days.")
    doc = parse(path, ocr=True)
    assert doc.pages_without_text == []
    [section] = doc.sections
    assert section.page == 1
    assert "refunds are paid" in section.text.lower() and "thirty days" in section.text.lower()
    assert any("read by OCR" in p for p in doc.problems)


@pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract-ocr is not installed (apt install tesseract-ocr)"
)
def test_ocr_past_its_budget_keeps_the_document_and_lists_the_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cove.knowledge.parsers import limits

    monkeypatch.setattr(limits, "MAX_OCR_SECONDS", 0.0)
    path = tmp_path / "scan.pdf"
    scanned_pdf(path, "Some words")
    doc = parse(path, ocr=True)
    assert doc.pages_without_text == [1]
    assert any("page 1: not read by OCR, which stops after 0 s" in p for p in doc.problems)


def test_ocr_without_tesseract_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_TESSERACT", "no-such-tesseract-program")
    path = tmp_path / "scan.pdf"
    scanned_pdf(path, "Some words")
    doc = parse(path, ocr=True)
    assert doc.pages_without_text == [1]
    assert any("apt install tesseract-ocr" in p for p in doc.problems)


def test_docx_heading_styles_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "terms.docx"
    docx_file(path)
    doc = parse(path)
    assert doc.title == "Service terms" and doc.pages is None
    assert [s.heading for s in doc.sections] == [(), ("Terms", "Refunds"), ("Terms", "Returns")]
    assert (
        doc.sections[1].text
        == "Terms\n\nRefunds\n\nRefunds are paid within 30 days.\n\nItem | Price\nTea | 3 EUR"
    )
    assert offsets_hold(doc)


def test_pptx_a_slide_is_a_page(tmp_path: Path) -> None:
    path = tmp_path / "deck.pptx"
    pptx_file(path)
    doc = parse(path)
    assert doc.pages == 2
    assert [(s.page, s.heading) for s in doc.sections] == [(1, ("Quarterly results",)), (2, ())]
    assert (
        doc.sections[0].text
        == "Quarterly results\n\nRevenue grew 12%\nCosts fell\n\nNotes: Mention the new office"
    )
    assert doc.sections[1].text == "Questions welcome"


def test_epub_chapters_in_spine_order(tmp_path: Path) -> None:
    path = tmp_path / "book.epub"
    epub_file(path)
    doc = parse(path)
    assert doc.title == "The Book"
    assert [(s.heading, s.text) for s in doc.sections] == [
        (("Chapter One",), "Chapter One\n\nIt was a dark night."),
        (("Chapter Two",), "Chapter Two\n\nMorning came."),
    ]


def test_email_prefers_plain_text_and_names_attachments(tmp_path: Path) -> None:
    path = tmp_path / "mail.eml"
    path.write_bytes(
        email_message(
            "Invoice 42", "Ann <ann@example.org>", "Please pay by Friday.", "<p>HTML version</p>", True
        )
    )
    doc = parse(path)
    [section] = doc.sections
    assert section.heading == ("Invoice 42 — Ann <ann@example.org>",)
    assert "Please pay by Friday." in section.text and "HTML version" not in section.text
    assert "Attachments (not indexed): invoice.pdf" in section.text and "%PDF" not in section.text
    assert doc.title == "Invoice 42"


def test_email_html_only_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "news.eml"
    path.write_bytes(
        email_message("News", "n@example.org", None, "<style>x{}</style><h1>Hello</h1><p>World</p>")
    )
    [section] = parse(path).sections
    assert section.text.endswith("Hello\n\nWorld") and "x{}" not in section.text


def test_mbox_messages_in_order(tmp_path: Path) -> None:
    first = email_message("First", "a@example.org", "From the start, a line.\n>From quoted\n", None)
    first += b"From here on, an unquoted line an old writer left.\n"
    second = email_message("Second", "b@example.org", "Second body.", None)
    path = tmp_path / "archive.mbox"
    path.write_bytes(
        b"From a@example.org Tue Dec  1 10:00:00 2026\n"
        + first.replace(b"\nFrom the", b"\n>From the")
        + b"\nFrom b@example.org Tue Dec  1 11:00:00 2026\n"
        + second
    )
    doc = parse(path)
    assert [s.heading for s in doc.sections] == [("First — a@example.org",), ("Second — b@example.org",)]
    assert "From the start, a line." in doc.sections[0].text
    assert "From here on, an unquoted line" in doc.sections[0].text
    assert "Second body." in doc.sections[1].text and offsets_hold(doc)


def test_csv_rows_carry_their_header(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("name,price,notes\nTea,3,green\nCoffee,4,\n\n", encoding="utf-8")
    assert full_text(parse(path)) == "name: Tea; price: 3; notes: green\nname: Coffee; price: 4"
    tsv = tmp_path / "prices.tsv"
    tsv.write_text("name\tprice\nTea\t3\n", encoding="utf-8")
    assert full_text(parse(tsv)) == "name: Tea; price: 3"


def test_source_code_is_split_at_top_level_definitions(tmp_path: Path) -> None:
    path = tmp_path / "tool.py"
    path.write_text(
        '"""Doc."""\nimport os\n\n\n@cache\ndef first(a):\n    return a\n\n\nclass Second:\n'
        "    def method(self):\n        pass\n\n\nasync def third():\n    pass\n",
        encoding="utf-8",
    )
    doc = parse(path)
    assert [s.heading for s in doc.sections] == [
        (),
        ("def first(a):",),
        ("class Second:",),
        ("async def third():",),
    ]
    assert doc.sections[1].text.startswith("@cache\ndef first(a):")
    go = tmp_path / "main.go"
    go.write_text(
        "package main\n\n// Hello says hi.\nfunc Hello() {\n}\n\ntype T struct{}\n", encoding="utf-8"
    )
    assert [s.heading for s in parse(go).sections] == [(), ("func Hello() {",), ("type T struct{}",)]
    js = tmp_path / "app.ts"
    js.write_text(
        "import x from 'y';\n\nexport async function load() {\n}\n\nclass View {}\n", encoding="utf-8"
    )
    assert [s.heading for s in parse(js).sections] == [
        (),
        ("export async function load() {",),
        ("class View {}",),
    ]
    config = tmp_path / "settings.yaml"
    config.write_text("a: 1\nb: 2\n", encoding="utf-8")
    assert [s.text for s in parse(config).sections] == ["a: 1\nb: 2"]


def test_pdf_bookmarks_within_a_page_cut_it_under_their_headings(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(
        pdf_bytes(
            [
                "1\n1 Terms\nThe terms apply to all orders.\nThey are binding.",
                "Chapter 1: Terms 2\nMore about terms here.\nAnd here.\n"
                "1.1 Refunds\nRefunds are paid in 30 days.",
            ],
            outline=[("Terms", 0), ("Refunds", 1)],
        )
    )
    doc = parse(path)
    assert [(s.page, s.heading, s.text) for s in doc.sections] == [
        (1, ("Terms",), "1\n1 Terms\nThe terms apply to all orders.\nThey are binding."),
        (2, ("Terms",), "Chapter 1: Terms 2\nMore about terms here.\nAnd here."),
        (2, ("Refunds",), "1.1 Refunds\nRefunds are paid in 30 days."),
    ]
    assert offsets_hold(doc)
    [refund] = [c for c in chunk(doc, lambda s: len(s.split()) + 2) if "Refunds are" in c.text]
    assert refund.heading == ("Refunds",) and refund.page == 2
