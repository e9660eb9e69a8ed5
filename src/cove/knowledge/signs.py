"""The signs of a collection's vectors held in memory (one bit a dimension: 48 bytes a chunk for
384 dimensions), scanned with numpy for a question's candidates, and read again from the index
only when the collection's generation (changed with every write to its chunks) is not theirs.

sqlite-vec's own scan of the same bits took 24 ms at 100,000 chunks (busy machine); numpy's
XOR and bit count over them, about 1.5 ms with picking the nearest (benchmarks/kb_latency.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def sign_bits(vector: Sequence[float] | np.ndarray) -> bytes:
    """A vector's signs packed as sqlite-vec's `vec_quantize_binary` packs them (bit i of byte
    i // 8 for dimension i, set when it is above zero)."""
    values = np.asarray(vector, dtype=np.float32)
    return bytes(np.packbits(values > 0, bitorder="little").tobytes())


@dataclass(frozen=True)
class Signs:
    """One collection's chunk ids and their vectors' signs, as of one generation."""

    generation: int
    ids: np.ndarray  # int64, one a chunk
    #: One row a word of the signs, one column a chunk (a column-major scan XORs and counts a
    #: word of every chunk at once: 0.4 ms for 100,000, against 7 ms chunk by chunk); uint64
    #: words when the bytes fill them, else bytes.
    bits: np.ndarray

    @classmethod
    def of(cls, generation: int, rows: Sequence[tuple[int, bytes]], size: int) -> Signs:
        """From (chunk id, packed signs) rows; rows of another size (a model change) are left out."""
        kept = [(i, b) for i, b in rows if len(b) == size]
        ids = np.fromiter((i for i, _ in kept), dtype=np.int64, count=len(kept))
        packed = np.frombuffer(b"".join(b for _, b in kept), dtype=np.uint8).reshape(len(kept), size)
        bits = packed.view(np.uint64) if size % 8 == 0 else packed
        return cls(generation, ids, np.ascontiguousarray(bits.T))

    def __len__(self) -> int:
        return len(self.ids)

    def nearest(self, query: Sequence[float] | np.ndarray, count: int) -> list[int]:
        """The ids of the `count` chunks whose signs differ from the query's in fewest places."""
        if count >= len(self.ids):
            return [int(i) for i in self.ids]
        mine = np.frombuffer(sign_bits(query), dtype=self.bits.dtype)
        distance = np.zeros(len(self.ids), dtype=np.uint16)
        for word, column in zip(mine, self.bits, strict=True):
            distance += np.bitwise_count(column ^ word)
        picked = np.argpartition(distance, count)[:count]
        return [int(i) for i in self.ids[picked]]


class SignsCache:
    """Each collection's Signs, by collection id; thread-safe. A collection's entry is replaced
    when its generation changed (a write here or by another process: the generation is in the
    file), so what it answers is never older than the transaction that read the generation."""

    def __init__(self) -> None:
        self._held: dict[int, Signs] = {}
        self._lock = threading.Lock()

    def get(self, collection: int, generation: int, load: Callable[[], Signs]) -> Signs:
        with self._lock:
            held = self._held.get(collection)
            if held is None or held.generation != generation:
                held = self._held[collection] = load()
            return held

    def forget(self, collection: int) -> None:
        with self._lock:
            self._held.pop(collection, None)
