"""A conversation as a tree: each message's parent, the branch shown (its leaf), and the edits on it.

Every stored message has a parent (NULL for a first message), set when it is inserted: the
conversation's `leaf_id`, which then becomes the new message (a trigger does both, so every
writer, imports and summaries included, grows the branch being shown). Editing a message or
answering it again moves the leaf to that message's parent first, so the next message starts
a sibling branch; the earlier branch stays and can be shown again. `leaf_id = 0` means "the
empty branch": the next message is a new first message.
"""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from ..errors import CoveError
from .db import many, one

ROOT = 0  # leaf_id meaning: nothing is shown yet, the next message starts a new root


class MessageNotFound(CoveError):
    """No message with this id in this conversation."""

    status = 404


@dataclass(frozen=True)
class Tree:
    """Every message's parent (None: a first message) and the leaf of the branch shown."""

    leaf: int | None
    parents: dict[int, int | None]

    def children(self, parent: int | None) -> list[int]:
        """Oldest first (ids only grow)."""
        return sorted(mid for mid, p in self.parents.items() if p == parent)

    def siblings(self, mid: int) -> list[int]:
        """The messages that answer (or replace) the same parent, `mid` among them, oldest first."""
        return self.children(self.parents[mid])

    def path(self) -> list[int]:
        """The branch shown, first message first."""
        out: list[int] = []
        node = self.leaf
        seen: set[int] = set()
        while node is not None and node in self.parents and node not in seen:
            seen.add(node)
            out.append(node)
            node = self.parents[node]
        out.reverse()
        return out

    def newest_leaf_under(self, mid: int) -> int:
        """Following the newest child down from `mid`: where its branch ends."""
        node = mid
        while kids := self.children(node):
            node = kids[-1]
        return node


def load(conn: apsw.Connection, cid: str) -> Tree:
    parents = {int(m): (int(p) if p is not None else None) for m, p in _links(conn, cid)}
    (leaf,) = one(conn, "SELECT leaf_id FROM conversations WHERE id = ?", (cid,))
    if leaf is None and parents:  # written before branches (or by an older cove): the last message
        (leaf,) = one(
            conn, "SELECT id FROM messages WHERE conversation_id = ? ORDER BY position DESC LIMIT 1", (cid,)
        )
    return Tree(int(leaf) if leaf else None, parents)


def _links(conn: apsw.Connection, cid: str) -> list[tuple[int, int | None]]:
    return [
        (r[0], r[1])
        for r in many(conn, "SELECT id, parent_id FROM messages WHERE conversation_id = ?", (cid,))
    ]


def _check(tree: Tree, cid: str, mid: int) -> None:
    if mid not in tree.parents:
        raise MessageNotFound(f"conversation {cid} has no message {mid}")


def _set_leaf(conn: apsw.Connection, cid: str, leaf: int | None) -> None:
    conn.execute("UPDATE conversations SET leaf_id = ? WHERE id = ?", (ROOT if leaf is None else leaf, cid))


def branch_before(conn: apsw.Connection, cid: str, mid: int) -> Tree:
    """Show the branch up to `mid`'s parent, so the next message stored becomes `mid`'s sibling."""
    tree = load(conn, cid)
    _check(tree, cid, mid)
    _set_leaf(conn, cid, tree.parents[mid])
    return _in_context(conn, load(conn, cid))


def select(conn: apsw.Connection, cid: str, mid: int) -> Tree:
    """Show the branch through `mid`, down to its newest end."""
    tree = load(conn, cid)
    _check(tree, cid, mid)
    _set_leaf(conn, cid, tree.newest_leaf_under(mid))
    return _in_context(conn, load(conn, cid))


def _in_context(conn: apsw.Connection, tree: Tree) -> Tree:
    """Make what the model is sent follow the branch shown: a message that a summary on another
    branch took out of context comes back (here nothing stands in for it), and one a summary on
    this branch stands in for goes out again. Nothing is lost either way; the next turn's fit
    summarises again when the context is full."""
    path = tree.path()
    if not path:
        return tree
    marks = ", ".join("?" for _ in path)
    sql = f"SELECT id, position, in_context, summary_of FROM messages WHERE id IN ({marks})"
    found = many(conn, sql, tuple(path))
    covered = [_span(span) for _mid, _position, in_context, span in found if span and in_context]
    for mid, position, in_context, span in found:
        if span:
            continue
        wanted = not any(first <= position <= last for first, last in covered)
        if bool(in_context) != wanted:
            conn.execute("UPDATE messages SET in_context = ? WHERE id = ?", (int(wanted), mid))
    return tree


def _span(text: str) -> tuple[int, int]:
    first, last = text.split("-")
    return int(first), int(last)


def remove(conn: apsw.Connection, cid: str, mid: int) -> Tree:
    """Delete one message; what answered it now answers its parent (the branch stays whole)."""
    tree = load(conn, cid)
    _check(tree, cid, mid)
    parent = tree.parents[mid]
    conn.execute(
        "UPDATE messages SET parent_id = ? WHERE parent_id = ? AND conversation_id = ?", (parent, mid, cid)
    )
    if tree.leaf == mid:
        _set_leaf(conn, cid, parent)
    conn.execute("DELETE FROM messages WHERE id = ?", (mid,))
    return load(conn, cid)


def replace(conn: apsw.Connection, cid: str, mid: int, content: str) -> None:
    """Change one message's text in place (no new branch); the search index follows by trigger."""
    _check(load(conn, cid), cid, mid)
    conn.execute("UPDATE messages SET content = ? WHERE id = ?", (content, mid))
