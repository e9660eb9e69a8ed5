"""Reading a ChatGPT data export's conversations.json: each message tree flattened along its shown branch.

A conversation there is a tree (every edit or regeneration starts a branch) stored as
`mapping`: node id -> {id, message, parent, children}. The branch the person last saw ends
at `current_node`; walking `parent` links from it to the root and reversing gives the
conversation as it was shown. Other branches are not imported.
"""

from __future__ import annotations

from typing import Any

from . import fields
from .errors import InvalidImport
from .records import ROLES, NewConversation, NewMessage
from .times import now

SOURCE = "import:chatgpt"
TEXT_TYPES = ("text", "multimodal_text")  # others are code runs, browsing, images, settings


def looks_like_chatgpt(data: Any) -> bool:
    return isinstance(data, list) and all(isinstance(item, dict) and "mapping" in item for item in data)


def parse(data: list[Any]) -> list[NewConversation]:
    return [_conversation(fields.obj(raw, f"conversation {index}"), index) for index, raw in enumerate(data)]


def _conversation(raw: dict[str, Any], index: int) -> NewConversation:
    where = f"conversation {index}"
    cid = raw.get("conversation_id") or raw.get("id")
    if not isinstance(cid, str):
        raise InvalidImport(f"{where} has no id (or conversation_id)")
    where = f"conversation {index} ({cid})"
    mapping = fields.obj(raw.get("mapping"), f"{where}.mapping")
    created = fields.epoch_time(raw.get("create_time"), f"{where}.create_time") or now()
    nodes = branch(mapping, raw.get("current_node"), where) if mapping else []
    messages = _messages(nodes, created, where)
    updated = fields.epoch_time(raw.get("update_time"), f"{where}.update_time")
    return NewConversation(
        model=_model(raw, messages),
        created_at=created,
        updated_at=updated or (messages[-1].created_at if messages else created),
        title=fields.text(raw, "title", where, optional=True),
        source=SOURCE,
        external_id=f"chatgpt:{cid}",
        messages=messages,
    )


def branch(mapping: dict[str, Any], current: Any, where: str) -> list[dict[str, Any]]:
    """The nodes from the root down to `current`; a loop in the parent links is an error."""
    if not isinstance(current, str):
        raise InvalidImport(f"{where} has no current_node")
    path: list[dict[str, Any]] = []
    seen: set[str] = set()
    node_id: Any = current
    while node_id is not None:
        if not isinstance(node_id, str):
            raise InvalidImport(f"{where}: a parent link is not a node id")
        if node_id in seen:
            raise InvalidImport(f"{where}: the mapping's parent links loop back to node {node_id!r}")
        seen.add(node_id)
        if node_id not in mapping:
            raise InvalidImport(f"{where}: node {node_id!r} is missing from the mapping")
        node = fields.obj(mapping[node_id], f"{where}: node {node_id!r}")
        path.append(node)
        node_id = node.get("parent")
    path.reverse()
    return path


def _messages(nodes: list[dict[str, Any]], fallback_time: str, where: str) -> list[NewMessage]:
    kept: list[NewMessage] = []
    for node in nodes:
        raw = node.get("message")
        if raw is None:
            continue
        turn = _message(fields.obj(raw, f"{where}: a message"), len(kept), fallback_time, where)
        if turn is not None:
            kept.append(turn)
            fallback_time = turn.created_at
    return kept


def _message(raw: dict[str, Any], position: int, fallback_time: str, where: str) -> NewMessage | None:
    """The message as cove stores it, or None for one that holds no text worth keeping."""
    role = fields.obj(raw.get("author"), f"{where}: a message's author").get("role")
    content = _text(fields.obj(raw.get("content"), f"{where}: a message's content"), where)
    # Empty ones are hidden system preambles or tool calls whose text lives elsewhere.
    if role not in ROLES or content is None or not content.strip():
        return None
    metadata = raw.get("metadata")
    slug = metadata.get("model_slug") if isinstance(metadata, dict) else None
    return NewMessage(
        position=position,
        role=role,
        content=content,
        created_at=fields.epoch_time(raw.get("create_time"), f"{where}: a message's create_time")
        or fallback_time,
        model=slug if isinstance(slug, str) and role == "assistant" else None,
    )


def _text(content: dict[str, Any], where: str) -> str | None:
    """The text parts joined; None when the content is not text at all."""
    if content.get("content_type") not in TEXT_TYPES:
        return None
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise InvalidImport(f"{where}: a text message has no list of parts")
    return "\n".join(part for part in parts if isinstance(part, str))


def _model(raw: dict[str, Any], messages: list[NewMessage]) -> str:
    slug = raw.get("default_model_slug")
    if isinstance(slug, str) and slug:
        return slug
    answered = [m.model for m in messages if m.model]
    return answered[-1] if answered else "chatgpt"
