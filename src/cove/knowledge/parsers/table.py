"""CSV and TSV: each row as a line of `column: value` pairs, so any chunk of rows says what its
values are; the header row names the columns (or they are numbered when there is none)."""

from __future__ import annotations

import csv
import io

from ..documents import ParsedDocument
from .build import DocumentBuilder
from .limits import Deadline
from .text import decode

_ROWS_PER_SECTION = 50
csv.field_size_limit(10 * 1024 * 1024)  # one cell may be long text; the file's size is capped anyway


def _dialect(sample: str, tab: bool) -> type[csv.Dialect] | csv.Dialect:
    if tab:
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _has_header(sample: str) -> bool:
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return True


def parse_csv(data: bytes, deadline: Deadline, tab: bool = False) -> ParsedDocument:
    builder = DocumentBuilder()
    text = decode(data, builder.problems)
    sample = text[:20_000]
    rows = csv.reader(io.StringIO(text), _dialect(sample, tab))
    header: list[str] | None = None
    block: list[str] = []
    for n, row in enumerate(rows):
        if n % 1000 == 0:
            deadline.check()
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            if _has_header(sample):
                header = [" ".join(cell.split()) or f"column {i + 1}" for i, cell in enumerate(row)]
                continue
            header = [f"column {i + 1}" for i in range(len(row))]
        names = header + [f"column {i + 1}" for i in range(len(header), len(row))]
        block.append(
            "; ".join(
                f"{name}: {cell.strip()}" for name, cell in zip(names, row, strict=False) if cell.strip()
            )
        )
        if len(block) == _ROWS_PER_SECTION:
            builder.add("\n".join(block))
            block = []
    builder.add("\n".join(block))
    return builder.document()


def parse_tsv(data: bytes, deadline: Deadline) -> ParsedDocument:
    return parse_csv(data, deadline, tab=True)
