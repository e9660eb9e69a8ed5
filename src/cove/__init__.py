"""cove: a private, offline AI assistant that runs on your own computer.

import cove
with cove.Cove() as c:   # or c = cove.Cove(); ...; c.close()
    print(c.chat("gemma3:270m", [{"role": "user", "content": "Hi"}]).content)
"""

from .chat.service import TurnRequest
from .config import Settings
from .engine.embedding import Embeddings
from .engine.events import ChatAnswer, ChatChunk, LoadedInfo
from .engine.reranking import Reranked
from .errors import CoveError
from .library.local import DEFAULT_MODEL, Cove
from .library.remote import RemoteCove
from .store.models import Manifest

__all__ = [
    "DEFAULT_MODEL",
    "ChatAnswer",
    "ChatChunk",
    "Cove",
    "CoveError",
    "Embeddings",
    "LoadedInfo",
    "Manifest",
    "RemoteCove",
    "Reranked",
    "Settings",
    "TurnRequest",
]
__version__ = "0.1.0"
