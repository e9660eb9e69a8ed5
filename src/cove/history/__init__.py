"""Conversation history kept on this machine: stored, searchable, exportable, and deletable for real.

from cove.history import History
history = History(home / "cove.db")
chat = history.start("gemma3:270m", persona="tutor")
history.add_message(chat.id, "user", "What is a monad?")
"""

from __future__ import annotations

from .db import db_path
from .errors import AmbiguousConversation, ConversationNotFound, InvalidImport, PersonaNotFound
from .export import export_json, export_markdown, import_file, write_export
from .prices import PRICES_AS_OF, Price, PriceTable, cost, default_prices, load_prices
from .records import (
    Conversation,
    ConversationSummary,
    ImportResult,
    Message,
    ModelUsage,
    Persona,
    SearchHit,
    Stats,
)
from .store import KEEP, History

__all__ = [
    "KEEP",
    "PRICES_AS_OF",
    "AmbiguousConversation",
    "Conversation",
    "ConversationNotFound",
    "ConversationSummary",
    "History",
    "ImportResult",
    "InvalidImport",
    "Message",
    "ModelUsage",
    "Persona",
    "PersonaNotFound",
    "Price",
    "PriceTable",
    "SearchHit",
    "Stats",
    "cost",
    "db_path",
    "default_prices",
    "export_json",
    "export_markdown",
    "import_file",
    "load_prices",
    "write_export",
]
