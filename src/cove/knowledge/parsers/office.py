"""Word (.docx, python-docx) and PowerPoint (.pptx, python-pptx). In DOCX, heading styles give
the heading path and tables become rows of cells; in PPTX a slide is a page, its title the
heading, and its speaker notes part of its text."""

from __future__ import annotations

import io
import re
from typing import Any

from ..documents import ParsedDocument
from ..errors import DocumentRefused
from . import limits
from .archive import open_zip
from .build import DocumentBuilder
from .limits import Deadline

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)


def _heading_level(paragraph: Any) -> int | None:
    """1 for Title/Heading 1, n for Heading n; None for body text. Outline levels count too."""
    name = (paragraph.style.name if paragraph.style is not None else "") or ""
    if name.lower() == "title":
        return 1
    match = _HEADING_STYLE.match(name)
    if match:
        return int(match.group(1))
    outline = paragraph._p.find(".//{*}outlineLvl")
    if outline is not None:
        value = outline.get("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}val", "")
        return int(value) + 1 if value.isdigit() and int(value) < 9 else None
    return None


def _table_text(table: Any) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if not cells or cells[-1] != text:  # a merged cell repeats in each column it spans
                cells.append(text)
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


class _Outline:
    """Blocks under a heading path; a heading starts a new section (a bare title travels on)."""

    def __init__(self, builder: DocumentBuilder, page: int | None = None) -> None:
        self.builder, self.page = builder, page
        self.path: list[tuple[int, str]] = []
        self.blocks: list[str] = []
        self.bare = False

    def heading(self, level: int, title: str) -> None:
        if not self.bare:
            self.flush()
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, title))
        self.blocks.append(title)
        self.bare = True

    def block(self, text: str) -> None:
        if text.strip():
            self.blocks.append(text)
            self.bare = False

    def flush(self) -> None:
        self.builder.add("\n\n".join(self.blocks), page=self.page, heading=tuple(t for _, t in self.path))
        self.blocks, self.bare = [], False


def parse_docx(data: bytes, deadline: Deadline) -> ParsedDocument:
    import docx
    from docx.table import Table

    open_zip(data, "DOCX").close()
    document = docx.Document(io.BytesIO(data))
    builder = DocumentBuilder()
    outline = _Outline(builder)
    for n, item in enumerate(document.iter_inner_content()):
        if n % 500 == 0:
            deadline.check()
        if isinstance(item, Table):
            outline.block(_table_text(item))
            continue
        text = item.text.strip()
        level = _heading_level(item) if text else None
        if level is not None:
            outline.heading(level, " ".join(text.split()))
        else:
            outline.block(text)
    outline.flush()
    return builder.document(title=document.core_properties.title or None)


def _shape_texts(shapes: Any, skip: int | None) -> list[str]:
    texts = []
    for shape in shapes:
        if shape.shape_id == skip:  # the title, already the slide's first line
            continue
        if hasattr(shape, "shapes"):  # a group of shapes
            texts.extend(_shape_texts(shape.shapes, skip))
        elif getattr(shape, "has_table", False) and shape.has_table:
            texts.append(_table_text(shape.table))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            texts.append(shape.text_frame.text)
    return [t for t in texts if t.strip()]


def parse_pptx(data: bytes, deadline: Deadline) -> ParsedDocument:
    from pptx import Presentation

    open_zip(data, "PPTX").close()
    presentation = Presentation(io.BytesIO(data))
    slides = list(presentation.slides)
    if len(slides) > limits.MAX_PAGES:
        raise DocumentRefused(f"has {len(slides):,} slides; cove indexes up to {limits.MAX_PAGES:,}")
    builder = DocumentBuilder()
    for number, slide in enumerate(slides, start=1):
        deadline.check()
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
        texts = ([title] if title else []) + _shape_texts(
            slide.shapes, title_shape.shape_id if title_shape is not None else None
        )
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                texts.append(f"Notes: {notes}")
        builder.add("\n\n".join(texts), page=number, heading=(title,) if title else ())
    return builder.document(pages=len(slides), title=presentation.core_properties.title or None)
