"""cove: a private, offline AI assistant that runs on your own computer.

import cove
with cove.Cove() as c:   # or c = cove.Cove(); ...; c.close()
    print(c.chat("gemma3:270m", [{"role": "user", "content": "Hi"}]).content)
"""

from .config import Settings
from .engine.events import ChatAnswer, ChatChunk, LoadedInfo
from .errors import CoveError
from .library.local import DEFAULT_MODEL, Cove
from .store.models import Manifest

__all__ = [
    "DEFAULT_MODEL",
    "ChatAnswer",
    "ChatChunk",
    "Cove",
    "CoveError",
    "LoadedInfo",
    "Manifest",
    "Settings",
]
__version__ = "0.1.0"
