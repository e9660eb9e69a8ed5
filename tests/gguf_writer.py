"""Builds GGUF files byte by byte for tests, including ones that break the format on purpose."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"

# GGUF metadata value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = range(10)
UINT64, INT64, FLOAT64 = 10, 11, 12
_FORMATS = {
    UINT8: "B",
    INT8: "b",
    UINT16: "H",
    INT16: "h",
    UINT32: "I",
    INT32: "i",
    FLOAT32: "f",
    BOOL: "?",
    UINT64: "Q",
    INT64: "q",
    FLOAT64: "d",
}

# ggml tensor types the tests use: id -> (elements per block, bytes per block).
# Kept apart from cove.store.gguf's table so the reader is checked against a second copy.
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_Q4_K, GGML_Q6_K, GGML_BF16 = 0, 1, 2, 8, 12, 14, 30
GGML_SIZES = {
    GGML_F32: (1, 4),
    GGML_F16: (1, 2),
    GGML_Q4_0: (32, 18),
    GGML_Q8_0: (32, 34),
    GGML_Q4_K: (256, 144),
    GGML_Q6_K: (256, 210),
    GGML_BF16: (1, 2),
}

DEFAULT_METADATA: dict[str, Any] = {
    "general.architecture": "llama",
    "general.name": "tiny",
    "llama.context_length": 256,
    "llama.block_count": 1,
    "llama.embedding_length": 8,
    "llama.attention.head_count": 2,
    "general.file_type": 1,
    "tokenizer.ggml.tokens": ["a", "b"],
}
DEFAULT_TENSORS: list[tuple[str, tuple[int, ...], int]] = [("token_embd.weight", (8, 2), GGML_F16)]


@dataclass(frozen=True)
class Typed:
    """A metadata value with its GGUF type spelled out, for types a Python value can't imply.

    For arrays, `item_type` names the element type; `gtype` may be any number, so tests can
    write unknown value types.
    """

    gtype: int
    value: Any
    item_type: int | None = None


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def gguf_string(s: str | bytes) -> bytes:
    """A length-prefixed string; pass bytes to write invalid UTF-8."""
    raw = s.encode("utf-8") if isinstance(s, str) else s
    return u64(len(raw)) + raw


def header(version: int = 3, tensor_count: int = 0, kv_count: int = 0, magic: bytes = MAGIC) -> bytes:
    return magic + u32(version) + u64(tensor_count) + u64(kv_count)


def _int_type(values: list[int]) -> int:
    if all(-(2**31) <= v < 2**31 for v in values):
        return INT32
    if all(0 <= v < 2**32 for v in values):
        return UINT32
    if all(-(2**63) <= v < 2**63 for v in values):
        return INT64
    return UINT64


def value_type(value: Any) -> int:
    """The GGUF type a Python value is written as."""
    if isinstance(value, Typed):
        return value.gtype
    if isinstance(value, str | bytes):
        return STRING
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return UINT32 if 0 <= value < 2**32 else _int_type([value])
    if isinstance(value, float):
        return FLOAT32
    if isinstance(value, list):
        return ARRAY
    raise TypeError(f"no GGUF type for {type(value).__name__}")


def item_type(items: list[Any]) -> int:
    """The GGUF element type a Python list is written with."""
    if not items:
        return INT32
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return _int_type(items)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
        return FLOAT32
    types = {value_type(v) for v in items}
    if len(types) != 1:
        raise TypeError(f"mixed list {items!r}")
    return types.pop()


def encode_value(value: Any, gtype: int | None = None) -> bytes:
    """The payload of a value (no type tag), written as `gtype` or the type it implies."""
    inner = value.value if isinstance(value, Typed) else value
    gtype = value_type(value) if gtype is None else gtype
    if gtype == STRING:
        return gguf_string(inner)
    if gtype == ARRAY:
        items = list(inner)
        etype = value.item_type if isinstance(value, Typed) else None
        etype = item_type(items) if etype is None else etype
        return u32(etype) + u64(len(items)) + b"".join(encode_value(v, etype) for v in items)
    return struct.pack("<" + _FORMATS[gtype], inner)


def kv(key: str | bytes, value: Any) -> bytes:
    """One metadata entry: key, type tag, payload."""
    return gguf_string(key) + u32(value_type(value)) + encode_value(value)


def tensor_info(name: str | bytes, dims: tuple[int, ...], ggml_type: int, offset: int) -> bytes:
    dims_bytes = b"".join(u64(d) for d in dims)
    return gguf_string(name) + u32(len(dims)) + dims_bytes + u32(ggml_type) + u64(offset)


def tensor_nbytes(dims: tuple[int, ...], ggml_type: int) -> int:
    """Bytes of tensor data; a type not in GGML_SIZES is written as one byte per element."""
    count = 1
    for d in dims:
        count *= d
    block, block_bytes = GGML_SIZES.get(ggml_type, (1, 1))
    return count // block * block_bytes


def padding(offset: int, alignment: int) -> bytes:
    return bytes(-offset % alignment)


def _layout(
    metadata: dict[str, Any] | None,
    tensors: list[tuple[str, tuple[int, ...], int]] | None,
    version: int,
    alignment: int | None,
) -> tuple[bytes, int]:
    """Everything before the tensor data, and the size of the (zero) data after it."""
    meta = dict(DEFAULT_METADATA if metadata is None else metadata)
    tens = DEFAULT_TENSORS if tensors is None else tensors
    if alignment is not None:
        meta["general.alignment"] = Typed(UINT32, alignment)
    # A hostile alignment (0, 3) is only written down; the bytes are laid out with 32.
    align = alignment if alignment and alignment & (alignment - 1) == 0 else 32
    out = bytearray(header(version, len(tens), len(meta)))
    for key, value in meta.items():
        out += kv(key, value)
    offset = 0
    for name, dims, ggml_type in tens:
        out += tensor_info(name, dims, ggml_type, offset)
        nbytes = tensor_nbytes(dims, ggml_type)
        offset += nbytes + len(padding(nbytes, align))
    out += padding(len(out), align)
    return bytes(out), offset


def make_gguf(
    metadata: dict[str, Any] | None = None,
    tensors: list[tuple[str, tuple[int, ...], int]] | None = None,
    *,
    version: int = 3,
    alignment: int | None = None,
) -> bytes:
    """A whole GGUF file: `metadata` replaces DEFAULT_METADATA; tensors are (name, dims, type)."""
    prefix, data_size = _layout(metadata, tensors, version, alignment)
    return prefix + bytes(data_size)


def write_gguf(
    path: str | Path,
    metadata: dict[str, Any] | None = None,
    tensors: list[tuple[str, tuple[int, ...], int]] | None = None,
    *,
    version: int = 3,
    alignment: int | None = None,
) -> Path:
    """make_gguf to a file; the zero data is left as a sparse hole, so big tensors are cheap."""
    path = Path(path)
    prefix, data_size = _layout(metadata, tensors, version, alignment)
    with path.open("wb") as f:
        f.write(prefix)
        f.truncate(len(prefix) + data_size)
    return path
