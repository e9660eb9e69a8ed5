"""Training data from the user's files and history: chats (JSONL, cove or ChatGPT exports) and documents.

Every source becomes a list of `Example`s: a chat (messages, trained on the assistant's turns)
or a piece of a document (plain text, trained on every token). Bad lines are left out and
reported with their line numbers; the run is refused only when too few examples remain.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadTrainingData

ROLES = ("system", "user", "assistant")
DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".text")
CHAT_SUFFIXES = (".jsonl", ".json")
#: Fewer usable examples than this cannot be both trained on and measured.
MIN_EXAMPLES = 6
#: The held-out share never goes below this many examples, so its loss means something.
MIN_HELD_OUT = 3
#: Problems listed one by one before the rest are only counted.
SHOWN_PROBLEMS = 10


@dataclass(frozen=True)
class Example:
    """One training example: a chat (`messages`) or a document piece (`text`), and where it came from."""

    origin: str
    messages: tuple[tuple[str, str], ...] = ()
    text: str = ""

    @property
    def is_chat(self) -> bool:
        return bool(self.messages)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass
class TrainingData:
    """The examples read, what was left out and why, and a count per source for `cove show`."""

    examples: list[Example] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def chats(self) -> int:
        return sum(1 for e in self.examples if e.is_chat)

    @property
    def documents(self) -> int:
        return len(self.examples) - self.chats

    def add(self, source: str, examples: Iterable[Example]) -> None:
        found = list(examples)
        self.examples.extend(found)
        self.sources[source] = self.sources.get(source, 0) + len(found)

    def shown_problems(self) -> list[str]:
        shown = self.problems[:SHOWN_PROBLEMS]
        rest = len(self.problems) - len(shown)
        return shown + ([f"... and {rest} more"] if rest > 0 else [])

    def summary(self) -> dict[str, Any]:
        return {
            "examples": len(self.examples),
            "chats": self.chats,
            "document_pieces": self.documents,
            "sources": dict(self.sources),
            "skipped": len(self.problems),
        }


def read_paths(paths: Iterable[Path], piece_chars: int = 1500) -> TrainingData:
    """Read every file (folders: the files in them with a known suffix) into one TrainingData."""
    data = TrainingData()
    for path in paths:
        for file in _files(path):
            _read_file(file, data, piece_chars)
    return data


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        known = set(CHAT_SUFFIXES + DOCUMENT_SUFFIXES) | _knowledge_suffixes()
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in known)
        if not found:
            raise BadTrainingData(f"{path.name}/ holds no chats or documents to train on")
        return found
    if not path.is_file():
        raise BadTrainingData(f"no such file: {path}")
    return [path]


def _read_text_file(path: Path, data: TrainingData, piece_chars: int) -> None:
    suffix = path.suffix.lower()
    text = _read_text(path)
    if suffix == ".jsonl":
        data.add(path.name, _jsonl(text, path.name, data.problems))
    elif suffix == ".json":
        data.add(path.name, _json_export(text, path.name, data.problems))
    elif suffix in DOCUMENT_SUFFIXES:
        data.add(path.name, document_pieces(text, path.name, piece_chars))


def _read_file(path: Path, data: TrainingData, piece_chars: int) -> None:
    suffix = path.suffix.lower()
    if suffix in CHAT_SUFFIXES + DOCUMENT_SUFFIXES:
        _read_text_file(path, data, piece_chars)
    elif suffix in _knowledge_suffixes():
        data.add(path.name, document_pieces(_parsed_text(path), path.name, piece_chars))
    else:
        raise BadTrainingData(
            f"{path.name}: cove tune reads .jsonl chats, .json history exports and documents "
            "(.txt, .md, and what the knowledge base parses: PDF, Office, HTML, ...)"
        )


def _knowledge_suffixes() -> set[str]:
    """The document types the knowledge base's parsers read (PDF, DOCX, HTML, ...)."""
    try:
        from ..knowledge.parsers import SUFFIXES
    except ImportError:  # an install without the knowledge base's parsers: text and Markdown only
        return set()
    return set(SUFFIXES) - set(CHAT_SUFFIXES)


def _parsed_text(path: Path) -> str:
    from ..knowledge.chunking import full_text
    from ..knowledge.errors import DocumentRefused
    from ..knowledge.parsers import parse

    try:
        return full_text(parse(path))
    except DocumentRefused as exc:
        raise BadTrainingData(f"{path.name} {exc}") from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise BadTrainingData(f"{path.name} is not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise BadTrainingData(f"cannot read {path.name}: {exc.strerror or exc}") from exc


# -- chats -----------------------------------------------------------------------------------


def _jsonl(text: str, name: str, problems: list[str]) -> list[Example]:
    """One chat a line, `{"messages": [...]}` (or `{"text": ...}` for a document piece)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{name} line {number}"
        if not line.strip():
            problems.append(f"{where}: empty")
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc.msg})")
            continue
        example = _example(raw, where, problems)
        if example is not None:
            found.append(example)
    return found


def _example(raw: Any, where: str, problems: list[str]) -> Example | None:
    if isinstance(raw, dict) and isinstance(raw.get("text"), str) and "messages" not in raw:
        if raw["text"].strip():
            return Example(origin=where, text=raw["text"])
        problems.append(f"{where}: empty text")
        return None
    messages = raw.get("messages") if isinstance(raw, dict) else None
    if not isinstance(messages, list):
        problems.append(f'{where}: expected {{"messages": [...]}}')
        return None
    return chat_example(messages, where, problems)


def chat_example(messages: list[Any], where: str, problems: list[str]) -> Example | None:
    """A chat to train on, or None (and the reason added to `problems`)."""
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role not in ROLES or not isinstance(content, str):
            problems.append(f"{where}: message {index} needs a role ({', '.join(ROLES)}) and text content")
            return None
        turns.append((role, content))
    if not any(role == "assistant" and content.strip() for role, content in turns):
        problems.append(f"{where}: no assistant answer to learn from")
        return None
    return Example(origin=where, messages=tuple(turns))


def _json_export(text: str, name: str, problems: list[str]) -> list[Example]:
    """A cove history export or a ChatGPT conversations.json."""
    from ..history import chatgpt, export
    from ..history.errors import InvalidImport

    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadTrainingData(f"{name} is not JSON (line {exc.lineno}: {exc.msg})") from exc
    try:
        if isinstance(raw, dict) and raw.get("format") == "cove.history":
            conversations = export.parse_cove(raw)
        elif chatgpt.looks_like_chatgpt(raw):
            conversations = chatgpt.parse(raw)
        else:
            raise BadTrainingData(
                f"{name} is neither a cove history export nor a ChatGPT conversations.json "
                '(a file of chats is JSONL: one {"messages": [...]} a line)'
            )
    except InvalidImport as exc:
        raise BadTrainingData(f"{name}: {exc}") from exc
    found = []
    for index, chat in enumerate(conversations):
        turns: list[dict[str, str]] = [{"role": "system", "content": chat.system}] if chat.system else []
        turns += [{"role": m.role, "content": m.content} for m in chat.messages if m.role in ROLES]
        example = chat_example(turns, f"{name} conversation {index + 1}", problems)
        if example is not None:
            found.append(example)
    return found


def history_chats(history: Any, wanted: str) -> list[Example]:
    """Conversations from cove's history: ids (comma or space separated) or a search query."""
    ids = [part for part in re.split(r"[,\s]+", wanted.strip()) if part]
    chosen: list[str] = []
    for cid in ids:
        if _exists(history, cid):
            chosen.append(cid)
    if len(chosen) != len(ids):  # not all ids: the whole text is a search query
        chosen = list(dict.fromkeys(hit.conversation_id for hit in history.search(wanted, limit=200)))
    if not chosen:
        raise BadTrainingData(f"no conversation in the history matches {wanted!r} (see `cove history`)")
    problems: list[str] = []
    found = []
    for cid in chosen:
        chat = history.get(cid)
        turns = [{"role": "system", "content": chat.system}] if chat.system else []
        turns += [{"role": m.role, "content": m.content} for m in chat.messages if m.role in ROLES]
        example = chat_example(turns, f"conversation {cid}", problems)
        if example is not None:
            found.append(example)
    return found


def _exists(history: Any, cid: str) -> bool:
    try:
        history.get(cid)
    except Exception:  # not found, or not an id at all: then it is a query
        return False
    return True


# -- documents -------------------------------------------------------------------------------


def document_pieces(text: str, name: str, piece_chars: int) -> list[Example]:
    """A document cut at paragraph breaks into pieces of about `piece_chars` characters."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    current = ""
    for paragraph in paragraphs:
        for part in _cut(paragraph, piece_chars):
            if current and len(current) + len(part) + 2 > piece_chars:
                pieces.append(current)
                current = ""
            current = f"{current}\n\n{part}" if current else part
    if current:
        pieces.append(current)
    return [Example(origin=f"{name} part {i + 1}", text=piece) for i, piece in enumerate(pieces)]


def _cut(paragraph: str, size: int) -> list[str]:
    """A paragraph longer than a piece, cut at spaces."""
    parts = []
    while len(paragraph) > size:
        cut = paragraph.rfind(" ", 0, size)
        cut = size if cut <= 0 else cut
        parts.append(paragraph[:cut].strip())
        paragraph = paragraph[cut:].strip()
    return parts + ([paragraph] if paragraph else [])


# -- the held-out share ----------------------------------------------------------------------


def split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Training and held-out examples: a seeded shuffle, so the same command splits the same way."""
    if len(examples) < MIN_EXAMPLES:
        raise BadTrainingData(
            f"only {len(examples)} usable examples; at least {MIN_EXAMPLES} are needed "
            f"({MIN_HELD_OUT} are held out to measure the result)"
        )
    order = list(examples)
    random.Random(seed).shuffle(order)
    held = max(MIN_HELD_OUT, round(len(order) * fraction))
    held = min(held, len(order) - MIN_HELD_OUT)
    return order[held:], order[:held]
