"""Source code: split at top-level definitions (functions, classes, types) where a line-start
pattern finds them cheaply, each under the definition's first line as its heading; files of
other languages, and configuration, are one section of text."""

from __future__ import annotations

import re

from ..documents import ParsedDocument
from .build import DocumentBuilder
from .limits import Deadline
from .text import decode

_PYTHON = re.compile(r"^(?:async\s+def|def|class)\s+\w+")
_JS = re.compile(
    r"^(?:export\s+(?:default\s+)?)?(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?"
    r"(?:function\*?|class|interface|type|enum|namespace)\s+\w+"
)
_GO = re.compile(r"^(?:func|type)\s+\S")
_RUST = re.compile(
    r"^(?:pub(?:\([^)]*\))?\s+)?(?:async\s+|unsafe\s+|const\s+)*(?:fn|struct|enum|trait|impl|mod|union)\b"
)
_RUBY = re.compile(r"^(?:def|class|module)\s+\S")
_SHELL = re.compile(r"^(?:function\s+[\w:-]+|[\w:-]+\s*\(\)\s*\{?)")
# C, C++, Java, C#, Kotlin, Swift, PHP: a definition starts at column 0 with a name and a '(' or
# a type keyword, and does not end in ';' (a declaration) -- a heuristic, good enough for chunks
_C_LIKE = re.compile(
    r"^(?:(?:public|private|protected|internal|static|final|abstract|sealed|open|data|inline|extern|"
    r"export|template\s*<[^>]*>)\s+)*"
    r"(?:(?:class|struct|interface|enum|record|object|union|namespace|fun|func|function|impl)\s+\w+"
    r"|[A-Za-z_][\w:<>,*&\s]*[\s*&]\**~?[A-Za-z_][\w:]*\s*\([^;]*$)"
)

_C_LIKE_SUFFIXES = ".c .h .cc .cpp .cxx .hpp .hh .java .cs .kt .kts .swift .php .scala .m .mm .dart"
_PLAIN_SUFFIXES = (
    ".sql .lua .pl .r .jl .hs .ml .ex .exs .erl .clj .vue .svelte .css .scss .toml .yaml .yml .ini"
    " .cfg .json .xml .tex .cmake .gradle .proto .graphql .tf .nix .zig"
)
_LANGUAGES: dict[str, re.Pattern[str] | None] = {
    **dict.fromkeys((".py", ".pyi"), _PYTHON),
    **dict.fromkeys([".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts"], _JS),
    ".go": _GO,
    ".rs": _RUST,
    ".rb": _RUBY,
    **dict.fromkeys((".sh", ".bash", ".zsh"), _SHELL),
    **dict.fromkeys(_C_LIKE_SUFFIXES.split(), _C_LIKE),
    **dict.fromkeys(_PLAIN_SUFFIXES.split(), None),  # one section of text each
}

#: The source and configuration suffixes `parse` reads as code.
CODE_SUFFIXES: frozenset[str] = frozenset(_LANGUAGES)
_DECORATOR = re.compile(r"^(?:@|#\[|\[\w)")  # Python/Java decorators, Rust attributes, C# attributes
_COMMENT = re.compile(r"^\s*(?:#(?!\[)|//|/\*|\*|--|;)")


def _starts(lines: list[str], pattern: re.Pattern[str]) -> list[int]:
    """Line numbers where a top-level definition starts (with its decorators and doc comment)."""
    starts: list[int] = []
    for n, line in enumerate(lines):
        if not pattern.match(line):
            continue
        begin = n
        while begin > 0 and (_DECORATOR.match(lines[begin - 1]) or _COMMENT.match(lines[begin - 1])):
            begin -= 1
        if not starts or begin > starts[-1]:
            starts.append(begin)
    return starts


def parse_code(data: bytes, deadline: Deadline, suffix: str = "") -> ParsedDocument:
    builder = DocumentBuilder()
    text = decode(data, builder.problems)
    pattern = _LANGUAGES.get(suffix)
    lines = text.splitlines(keepends=True)
    starts = _starts(lines, pattern) if pattern is not None else []
    builder.add("".join(lines[: starts[0] if starts else len(lines)]))
    for begin, end in zip(starts, [*starts[1:], len(lines)][: len(starts)], strict=True):
        name = next((line for line in lines[begin:end] if pattern and pattern.match(line)), lines[begin])
        builder.add("".join(lines[begin:end]), heading=(" ".join(name.split())[:100],))
    return builder.document()
