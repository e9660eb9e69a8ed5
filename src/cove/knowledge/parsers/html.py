"""HTML to text (stdlib html.parser): headings give the heading path, blocks give paragraphs,
scripts, styles and other non-content elements are dropped. Used for .html, EPUB chapters and
the HTML part of an e-mail. Nothing is fetched: links, images and frames are only text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ..documents import ParsedDocument
from .build import DocumentBuilder
from .limits import Deadline
from .text import decode

_SKIP = {"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "head", "select"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_BLOCK = {
    "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "nav", "ol",
    "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "ul",
}  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


class _Extractor(HTMLParser):
    """Collects (heading path, text) sections; a heading element starts a new section."""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__(convert_charrefs=True)
        self.deadline = deadline
        self.sections: list[tuple[tuple[str, ...], str]] = []
        self.path: list[tuple[int, str]] = []
        self.blocks: list[str] = []  # finished paragraphs of the current section
        self.line: list[str] = []  # text of the paragraph being read
        self.skip: list[str] = []  # open elements whose content is not text
        self.heading: tuple[int, list[str]] | None = None
        self.pre = 0
        self.title: str | None = None
        self._title: list[str] | None = None
        self.elements = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements += 1
        if self.elements % 2000 == 0:
            self.deadline.check()
        if tag == "title" and self.title is None:
            self._title = []
        if tag in _SKIP and tag not in _VOID:
            self.skip.append(tag)
        if self.skip:
            return
        if tag in _HEADINGS:
            self._end_paragraph()
            self.heading = (_HEADINGS[tag], [])
        elif tag in ("td", "th"):
            self.line.append(" | ")
        elif tag in _BLOCK:
            self._end_paragraph()
        if tag == "pre":
            self.pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.skip and tag in _BLOCK:
            self._end_paragraph()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title is not None:
            self.title, self._title = " ".join("".join(self._title).split()) or None, None
        if self.skip:
            if tag == self.skip[-1] or (tag in _SKIP and tag in self.skip):
                while self.skip and self.skip.pop() != tag:
                    pass
            return
        if tag in _HEADINGS and self.heading is not None:
            self._start_section(*self.heading)
        elif tag in _BLOCK:
            self._end_paragraph()
        if tag == "pre" and self.pre:
            self.pre -= 1

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        if self.skip:
            return
        if self.heading is not None:
            self.heading[1].append(data)
        elif self.pre:
            self.line.append(data)
        else:
            self.line.append(re.sub(r"\s+", " ", data))

    def _end_paragraph(self) -> None:
        text = "".join(self.line)
        text = text.strip("\n") if self.pre else " ".join(text.split()).strip(" |")
        if text.strip():
            self.blocks.append(text)
        self.line = []

    def _start_section(self, level: int, parts: list[str]) -> None:
        self.heading = None
        title = " ".join("".join(parts).split())
        if not title:
            return
        self._flush()
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, title))
        self.blocks.append(title)

    def _flush(self) -> None:
        self._end_paragraph()
        heading = tuple(t for _, t in self.path)
        bare_title = len(self.blocks) == 1 and heading and self.blocks[0] == heading[-1]
        if self.blocks and not bare_title:
            self.sections.append((heading, "\n\n".join(self.blocks)))
            self.blocks = []
        # a heading right before a sub-heading travels with it, so no section is a bare title

    def finish(self) -> list[tuple[tuple[str, ...], str]]:
        self.close()
        if self.heading is not None:
            self._start_section(*self.heading)
        self._end_paragraph()
        if self.blocks:
            self.sections.append((tuple(t for _, t in self.path), "\n\n".join(self.blocks)))
            self.blocks = []
        return self.sections


def html_sections(markup: str, deadline: Deadline) -> tuple[str | None, list[tuple[tuple[str, ...], str]]]:
    """The page's <title> and its (heading path, text) sections in reading order."""
    extractor = _Extractor(deadline)
    extractor.feed(markup)
    sections = extractor.finish()
    return extractor.title, sections


def decode_html(data: bytes, problems: list[str] | None = None) -> str:
    """HTML bytes as text, by the <meta charset> the page declares when it names a real one."""
    declared = _CHARSET.search(data[:4096])
    if declared:
        try:
            return data.decode(declared.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            pass
    return decode(data, problems)


def parse_html(data: bytes, deadline: Deadline) -> ParsedDocument:
    builder = DocumentBuilder()
    title, sections = html_sections(decode_html(data, builder.problems), deadline)
    for heading, text in sections:
        builder.add(text, heading=heading)
    return builder.document(title=title)
