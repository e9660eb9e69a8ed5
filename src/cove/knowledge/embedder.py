"""What turns text into vectors and counts its tokens for the index: cove's own engine, or a
deterministic stand-in (hashed bag of words) for tests and model-free runs."""

from __future__ import annotations

import hashlib
import math
import re
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..library.local import Cove

_WORD = re.compile(r"\w+", re.UNICODE)
#: Token counts of recent texts: the chunker asks about the same paragraphs more than once.
_COUNT_CACHE = 4096


class Embedder(Protocol):
    """One embedding model, as the index uses it."""

    model: str

    def dimensions(self) -> int: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...

    def count_tokens(self, text: str) -> int: ...


class HashEmbedder:
    """Hashed bag of words, L2-normalised: texts sharing words are near, and nothing loads."""

    def __init__(self, model: str = "hash-bow", size: int = 64) -> None:
        self.model = model
        self.size = size

    def dimensions(self) -> int:
        return self.size

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text))

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.size
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            slot = int.from_bytes(digest[:3], "little") % self.size
            vector[slot] += 1.0 if digest[3] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]


class CoveEmbedder:
    """A stored embedding model run by cove's engine (`Cove.embed`), its tokenizer counting."""

    def __init__(self, cove: Cove, model: str) -> None:
        self.cove = cove
        self.model = model
        self._size: int | None = None
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def dimensions(self) -> int:
        if self._size is None:
            self._size = len(self.embed(["dimensions"])[0])
        return self._size

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.cove.embed(self.model, list(texts)).vectors
        if vectors:
            self._size = len(vectors[0])
        return vectors

    def count_tokens(self, text: str) -> int:
        with self._lock:
            known = self._counts.get(text)
        if known is not None:
            return known
        request, _, _ = self.cove.prepare(self.model, embedding=True)
        with self.cove.scheduler.use(request, None) as loaded:
            count = len(loaded.tokenize(text))
        with self._lock:
            if len(self._counts) >= _COUNT_CACHE:
                self._counts.clear()
            self._counts[text] = count
        return count


def embedder_for(cove: Any, model: str) -> Embedder:
    """The embedder a collection's model names; `hash-bow` needs no model (tests, benchmarks)."""
    if model.startswith("hash-bow"):
        return HashEmbedder(model)
    embedder: Embedder = CoveEmbedder(cove, model)
    return embedder
