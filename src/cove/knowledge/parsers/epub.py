"""EPUB (zipfile and the stdlib XML parser): chapters in spine order, each read as HTML, so
their headings give the heading path. A DRM-encrypted book is refused."""

from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ElementTree
from urllib.parse import unquote, urlsplit

from ..documents import ParsedDocument
from ..errors import DocumentRefused
from .archive import open_zip, read_entry
from .build import DocumentBuilder
from .html import decode_html, html_sections
from .limits import Deadline

_HTML_TYPES = {"application/xhtml+xml", "text/html", "application/xml"}


def _xml(data: bytes, what: str) -> ElementTree.Element:
    # the stdlib parser expands no external entities, and its expat caps entity amplification
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError:
        raise DocumentRefused(f"is not a valid EPUB file (its {what} is not well-formed XML)") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _package_path(archive_names: set[str], container: bytes) -> str:
    if not container:
        raise DocumentRefused("is not a valid EPUB file (META-INF/container.xml is missing)")
    for element in _xml(container, "container.xml").iter():
        if _local(element.tag) == "rootfile" and element.get("full-path"):
            path = element.get("full-path", "")
            if path in archive_names:
                return path
    raise DocumentRefused("is not a valid EPUB file (its package document is missing)")


def _spine(package: ElementTree.Element, base: str) -> tuple[str | None, list[str]]:
    """The book's title and its chapters' paths inside the archive, in reading order."""
    manifest: dict[str, tuple[str, str]] = {}
    order: list[str] = []
    title = None
    for element in package.iter():
        name = _local(element.tag)
        if name == "item" and element.get("id") and element.get("href"):
            href = unquote(urlsplit(element.get("href", "")).path)
            path = posixpath.normpath(posixpath.join(base, href))
            manifest[element.get("id", "")] = (path, element.get("media-type", ""))
        elif name == "itemref" and element.get("idref"):
            order.append(element.get("idref", ""))
        elif name == "title" and title is None and (element.text or "").strip():
            title = element.text.strip() if element.text else None
    chapters = [manifest[i][0] for i in order if i in manifest and manifest[i][1] in _HTML_TYPES]
    return title, chapters


def parse_epub(data: bytes, deadline: Deadline) -> ParsedDocument:
    archive = open_zip(data, "EPUB")
    names = set(archive.namelist())
    if "META-INF/encryption.xml" in names and b"EncryptedData" in read_entry(
        archive, "META-INF/encryption.xml"
    ):
        raise DocumentRefused("is DRM-protected (its chapters are encrypted); cove cannot read it")
    package_path = _package_path(names, read_entry(archive, "META-INF/container.xml"))
    title, chapters = _spine(
        _xml(read_entry(archive, package_path), "package document"), posixpath.dirname(package_path)
    )
    builder = DocumentBuilder()
    for chapter in chapters:
        deadline.check()
        if chapter not in names:
            builder.problems.append(f"chapter {chapter} is listed but missing from the book")
            continue
        _, sections = html_sections(decode_html(read_entry(archive, chapter), builder.problems), deadline)
        for heading, text in sections:
            builder.add(text, heading=heading)
    return builder.document(title=title)
