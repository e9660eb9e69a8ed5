"""Small documents of every format the knowledge base reads, written by tests (no binary fixtures):
PDFs by hand (exact bytes, so a broken xref or a declared page count is what the test says),
Office files with python-docx/python-pptx, EPUB and bombs with zipfile, mail with the stdlib."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path


def _pdf_string(text: str) -> bytes:
    return b"(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1") + b")"


def pdf_bytes(
    pages: list[str],
    *,
    outline: list[tuple[str, int]] | None = None,
    declared_count: int | None = None,
    title: str | None = None,
) -> bytes:
    """A PDF with one page per string (lines split on '\\n', Helvetica), an optional outline of
    (title, 0-based page) bookmarks, and a /Count that may lie (`declared_count`)."""
    objects: list[bytes] = []  # object n is objects[n - 1]

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below
    pages_obj = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for text in pages:
        lines = [line for line in text.split("\n")]
        ops = (
            b"BT /F1 12 Tf 72 720 Td 14 TL " + b" ".join(_pdf_string(line) + b" '" for line in lines) + b" ET"
        )
        content = add(b"<< /Length %d >>\nstream\n" % len(ops) + ops + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792]"
                b" /Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>" % (pages_obj, font, content)
            )
        )
    count = declared_count if declared_count is not None else len(kids)
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        count,
    )
    extra = b""
    if outline:
        top = add(b"")
        items = []
        for name, page in outline:
            items.append(add(b""))
            objects[items[-1] - 1] = b"<< /Title %s /Parent %d 0 R /Dest [%d 0 R /Fit] >>" % (
                _pdf_string(name),
                top,
                kids[page],
            )
        for i, item in enumerate(items):
            links = b""
            if i > 0:
                links += b" /Prev %d 0 R" % items[i - 1]
            if i + 1 < len(items):
                links += b" /Next %d 0 R" % items[i + 1]
            objects[item - 1] = objects[item - 1][:-3] + links + b" >>"
        objects[top - 1] = b"<< /Type /Outlines /First %d 0 R /Last %d 0 R /Count %d >>" % (
            items[0],
            items[-1],
            len(items),
        )
        extra = b" /Outlines %d 0 R" % top
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R%s >>" % (pages_obj, extra)
    info = add(b"<< /Title %s >>" % _pdf_string(title)) if title else None
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    trailer = b"<< /Size %d /Root %d 0 R" % (len(objects) + 1, catalog)
    if info:
        trailer += b" /Info %d 0 R" % info
    out.write(b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def break_xref(pdf: bytes) -> bytes:
    """The same PDF with every xref offset wrong and startxref pointing into the middle of nowhere."""
    head, _, tail = pdf.rpartition(b"xref\n")
    lines = tail.split(b"\n")
    lines = [b"%010d 00000 n " % 7 if line.endswith(b" n ") else line for line in lines]
    broken = head + b"xref\n" + b"\n".join(lines)
    start = broken.rindex(b"startxref\n") + len(b"startxref\n")
    return broken[:start] + b"123" + broken[broken.index(b"\n", start) :]


def encrypted_pdf(pages: list[str], password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(pages))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def scanned_pdf(path: Path, text: str) -> None:
    """A PDF whose one page is only an image of `text` (what a scanner makes): no text layer."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1700, 600), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=64)
    for i, line in enumerate(text.split("\n")):
        draw.text((80, 80 + 100 * i), line, fill=0, font=font)
    image.save(path, format="PDF", resolution=200.0)


def _zip(path: Path, entries: list[tuple[bytes, bytes, int, int, int]]) -> None:
    """A ZIP written by hand from (name, deflated or stored data, method, crc, size) entries;
    fast where zipfile would spend seconds compressing zeros or writing 100k headers."""
    import struct

    local, central = [], []
    offset = 0
    for name, data, method, crc, size in entries:
        header = struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), size, len(name), 0
        )
        local.append(header + name + data)
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(data),
                size,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
        offset += len(local[-1])
    directory = b"".join(central)
    n, zip64 = len(entries), b""
    if n > 0xFFFF:  # the classic end record counts to 65,535; beyond that a ZIP64 record counts
        at = offset + len(directory)
        zip64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(directory), offset)
        zip64 += struct.pack("<IIQI", 0x07064B50, 0, at, 1)
    short = min(n, 0xFFFF)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, short, short, len(directory), offset, 0)
    path.write_bytes(b"".join(local) + directory + zip64 + end)


def zip_bomb(path: Path, *, name: str = "word/document.xml", size: int = 600 * 1024 * 1024) -> None:
    """A ZIP with one entry that really inflates to `size` bytes of zeros from well under 1 MB:
    one deflated megabyte of zeros, flushed so it stands alone, repeated."""
    import zlib

    block = b"\0" * (1024 * 1024)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = size // len(block)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    data = piece * count + b"\x03\x00"  # an empty final block ends the stream
    types = b"<Types/>"
    _zip(
        path,
        [
            (b"[Content_Types].xml", types, 0, zlib.crc32(types), len(types)),
            (name.encode(), data, 8, crc, size),
        ],
    )


def many_entries_zip(path: Path, entries: int = 100_000) -> None:
    """A ZIP of `entries` empty files."""
    _zip(path, [(b"e/%d" % i, b"", 0, 0, 0) for i in range(entries)])


def docx_file(path: Path) -> None:
    """A Word file with a title, two heading levels, body text and a table."""
    import docx

    document = docx.Document()
    document.core_properties.title = "Service terms"
    document.add_paragraph("Read these terms first.")
    document.add_heading("Terms", level=1)
    document.add_heading("Refunds", level=2)
    document.add_paragraph("Refunds are paid within 30 days.")
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "Item", (0, 1): "Price", (1, 0): "Tea", (1, 1): "3 EUR"}.items():
        table.cell(row, col).text = text
    document.add_heading("Returns", level=2)
    document.add_paragraph("Send returns by post.")
    document.save(path)


def pptx_file(path: Path) -> None:
    """Two slides: one with a title, bullet points and speaker notes; one with only a text box."""
    import pptx
    from pptx.util import Inches

    presentation = pptx.Presentation()
    first = presentation.slides.add_slide(presentation.slide_layouts[1])
    first.shapes.title.text = "Quarterly results"
    first.placeholders[1].text = "Revenue grew 12%\nCosts fell"
    first.notes_slide.notes_text_frame.text = "Mention the new office"
    second = presentation.slides.add_slide(presentation.slide_layouts[6])
    box = second.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))
    box.text_frame.text = "Questions welcome"
    presentation.save(path)


def epub_file(path: Path, *, encrypted: bool = False) -> None:
    """A two-chapter EPUB 3 written entry by entry (spine order differs from file-name order)."""
    chapter = (
        '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
        "<head><title>{t}</title><style>p {{color: red}}</style></head>"
        "<body><h1>{t}</h1><p>{p}</p></body></html>"
    )
    package = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>The Book</dc:title></metadata>'
        '<manifest><item id="a" href="text/b.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="b" href="text/a%20one.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="css" href="style.css" media-type="text/css"/></manifest>'
        '<spine><itemref idref="a"/><itemref idref="b"/></spine></package>'
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container xmlns="urn:oasis:names:tc:opendocument:xmlns:container"'
            ' version="1.0"><rootfiles><rootfile full-path="OEBPS/content.opf"'
            ' media-type="application/oebps-package+xml"/></rootfiles></container>',
        )
        if encrypted:
            z.writestr(
                "META-INF/encryption.xml",
                '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                '<EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"/></encryption>',
            )
        z.writestr("OEBPS/content.opf", package)
        z.writestr("OEBPS/text/b.xhtml", chapter.format(t="Chapter One", p="It was a dark night."))
        z.writestr("OEBPS/text/a one.xhtml", chapter.format(t="Chapter Two", p="Morning came."))
        z.writestr("OEBPS/style.css", "p { color: red }")


def email_message(
    subject: str, sender: str, plain: str | None, html: str | None, attach: bool = False
) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = "me@example.org"
    message["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    if plain is not None:
        message.set_content(plain)
    if html is not None:
        if plain is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    if attach:
        message.add_attachment(
            b"%PDF-1.4 not read", maintype="application", subtype="pdf", filename="invoice.pdf"
        )
    return bytes(message)
