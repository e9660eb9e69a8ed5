"""Opening a ZIP-based document (DOCX, PPTX, EPUB) only within the entry-count, total-size and
compression-ratio caps, checked from the central directory before anything is inflated.

zipfile never inflates an entry past the size its directory entry declares, so checking the
declared sizes bounds what python-docx, python-pptx or the EPUB reader can make it produce."""

from __future__ import annotations

import io
import zipfile

from ..errors import DocumentRefused
from . import limits


def open_zip(data: bytes, kind: str) -> zipfile.ZipFile:
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
        raise DocumentRefused(
            f"holds {len(entries):,} entries; cove reads documents of up to {limits.MAX_ZIP_ENTRIES:,}"
        )
    inflated = sum(entry.file_size for entry in entries)
    if inflated > limits.MAX_ZIP_UNCOMPRESSED:
        raise DocumentRefused(
            f"would inflate to {limits.size_text(inflated)}; cove reads documents of up to "
            f"{limits.size_text(limits.MAX_ZIP_UNCOMPRESSED)} uncompressed"
        )
    if inflated > 10 * 1024 * 1024 and inflated > limits.MAX_ZIP_RATIO * max(size, 1):
        raise DocumentRefused(
            f"inflates {inflated // max(size, 1):,} times its size (a ZIP bomb?); it was not read"
        )


def read_entry(archive: zipfile.ZipFile, name: str) -> bytes:
    """One entry's bytes; a missing entry is b"" (the caller reports what it lacks)."""
    try:
        return archive.read(name)
    except KeyError:
        return b""
