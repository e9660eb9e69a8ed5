"""Opening a ZIP-based document (DOCX, PPTX, EPUB) only within the entry-count, total-size and
compression-ratio caps, checked from the central directory before anything is inflated.

zipfile never inflates an entry past the size its directory entry declares, so checking the
declared sizes bounds what python-docx, python-pptx or the EPUB reader can make it produce."""

from __future__ import annotations

import io
import struct
import zipfile

from ..errors import DocumentRefused
from . import limits

_MARKUP = (".xml", ".rels", ".xhtml", ".html", ".htm", ".opf", ".ncx")


def declared_entries(data: bytes) -> int | None:
    """The entry count the archive's end record declares (ZIP64's when it has one), read before
    zipfile builds an object per entry: a million-entry archive is refused in microseconds."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        return None
    (count,) = struct.unpack_from("<H", data, end + 10)
    locator = end - 20
    if locator >= 0 and data[locator : locator + 4] == b"PK\x06\x07":
        (record,) = struct.unpack_from("<Q", data, locator + 8)
        if record + 56 <= len(data) and data[record : record + 4] == b"PK\x06\x06":
            (count64,) = struct.unpack_from("<Q", data, record + 32)
            return max(count, count64)
    return count


def open_zip(data: bytes, kind: str) -> zipfile.ZipFile:
    declared = declared_entries(data)
    if declared is not None and declared > limits.MAX_ZIP_ENTRIES:
        raise DocumentRefused(_too_many(declared))
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise DocumentRefused(f"is not a valid {kind} file (its ZIP container is damaged)") from None
    check(archive, len(data))
    return archive


def check(archive: zipfile.ZipFile, size: int) -> None:
    """Refuses an archive with too many entries, too much inflated data or a bomb's ratio."""
    entries = archive.infolist()
    if len(entries) > limits.MAX_ZIP_ENTRIES:
        raise DocumentRefused(_too_many(len(entries)))
    inflated = sum(entry.file_size for entry in entries)
    if inflated > limits.MAX_ZIP_UNCOMPRESSED:
        raise DocumentRefused(
            f"would inflate to {limits.size_text(inflated)}; cove reads documents of up to "
            f"{limits.size_text(limits.MAX_ZIP_UNCOMPRESSED)} uncompressed"
        )
    for entry in entries:
        if entry.file_size > limits.MAX_XML_ENTRY and entry.filename.lower().endswith(_MARKUP):
            raise DocumentRefused(
                f"has a part ({entry.filename}) of {limits.size_text(entry.file_size)}; cove reads "
                f"document parts of up to {limits.size_text(limits.MAX_XML_ENTRY)}"
            )
    if inflated > 10 * 1024 * 1024 and inflated > limits.MAX_ZIP_RATIO * max(size, 1):
        raise DocumentRefused(
            f"inflates {inflated // max(size, 1):,} times its size (a ZIP bomb?); it was not read"
        )


def _too_many(entries: int) -> str:
    return f"holds {entries:,} entries; cove reads documents of up to {limits.MAX_ZIP_ENTRIES:,}"


def read_entry(archive: zipfile.ZipFile, name: str) -> bytes:
    """One entry's bytes; a missing entry is b"" (the caller reports what it lacks)."""
    try:
        return archive.read(name)
    except KeyError:
        return b""
