"""reStructuredText (docutils): sections give the heading path, body elements the paragraphs.
Directives that reach outside the text (`include`, `raw`, file-reading `csv-table`) are off:
a document is data, and must not make cove read other files."""

from __future__ import annotations

import io

from ..documents import ParsedDocument
from .build import DocumentBuilder
from .limits import Deadline
from .text import decode

_SETTINGS = {
    "file_insertion_enabled": False,  # no `include`, no file-reading directives
    "raw_enabled": False,
    "report_level": 5,  # the document's own mistakes are not cove's to print
    "halt_level": 5,
    "doctitle_xform": False,  # keep the top title as a section, so it stays in the heading path
    "sectsubtitle_xform": False,
    "syntax_highlight": "none",
    "input_encoding": "unicode",
}


def parse_rst(data: bytes, deadline: Deadline) -> ParsedDocument:
    from docutils import nodes
    from docutils.core import publish_doctree

    builder = DocumentBuilder()
    source = decode(data, builder.problems)
    tree = publish_doctree(source, settings_overrides={**_SETTINGS, "warning_stream": io.StringIO()})

    def walk(node: nodes.Element, path: tuple[str, ...]) -> None:
        deadline.check()
        blocks: list[str] = []
        for child in node.children:
            if isinstance(child, nodes.section):
                builder.add("\n\n".join(blocks), heading=path)
                blocks = []
                title = child.next_node(nodes.title)
                name = title.astext() if title is not None else ""
                walk(child, (*path, name) if name else path)
            elif isinstance(child, (nodes.system_message, nodes.comment, nodes.raw)):
                continue
            elif isinstance(child, (nodes.Element, nodes.Text)):
                text = child.astext().strip()
                if text:
                    blocks.append(text)
        builder.add("\n\n".join(blocks), heading=path)

    walk(tree, ())
    title = tree.next_node(nodes.title)
    return builder.document(title=title.astext() if title is not None else None)
