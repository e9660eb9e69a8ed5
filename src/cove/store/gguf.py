"""Reads and validates GGUF model files (v2 and v3) without trusting any length or count in them."""

from __future__ import annotations

import os
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple, TypeGuard

from cove.errors import InvalidModelFile

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_CHUNK = 1 << 20  # bytes read from disk at a time; the file itself is never read whole
_MAX_LISTED = 64  # longer arrays (token lists, scores) are summarized, not materialized
_MAX_NESTING = 4  # real files nest arrays at most once; deeper is an attack on the stack
_MAX_STRING = 64 << 20  # chat templates are kilobytes; a bigger string is not metadata
_MAX_ALIGNMENT = 1 << 20
# Rough bytes of Python objects parsing may build; every count is checked against the file
# size, but a big hostile file could still expand many-fold into lists and tuples.
_MAX_KEPT = 256 << 20
_VALUE_COST = 32
_TENSOR_COST = 256
_DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4
_MAX_ELEMENTS = 1 << 62
_FTYPE_GUESSED = 1024  # llama.cpp ORs this in when it guessed the file type

# The work one check may do, so a bulky but well-formed file (millions of keys) is refused in
# milliseconds instead of holding a CPU for seconds. Real models stay far below: the bundled
# gemma3:270m has 33 keys, 236 tensors and 262,144 tokens; big vocabularies with their merges
# are under a million strings, the largest tensor tables a few thousand entries.
_MAX_KEYS = 1 << 16
_MAX_TENSORS = 1 << 16
# Each entry walked costs units, weighted by its CPU time (a key or tensor takes 10-20 times a
# vocabulary string): about a second of CPU at most, ten times what the largest vocabularies
# with their merges (about 400,000 units) need.
_WORK_BUDGET = 4 << 20
_KEY_WORK = 8
_TENSOR_WORK = 16
_ARRAY_WORK = 4
# A backstop in seconds of wall time, for whatever the units miss (a machine far overloaded).
_TIME_BUDGET_S = 10.0
_CLOCK_EVERY = 1 << 16  # units between looks at the clock

# The fewest bytes an entry can take; counts that need more than the file holds are lies.
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, one-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_COUNTS = struct.Struct("<QQ")
_ARRAY_HEAD = struct.Struct("<IQ")
_TYPE_OFFSET = struct.Struct("<IQ")
_DIMS = [struct.Struct(f"<{n}Q") for n in range(_MAX_DIMS + 1)]

_STRING = 8
_ARRAY = 9
# GGUF value type id -> (name, struct format)
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("uint8", "B"),
    1: ("int8", "b"),
    2: ("uint16", "H"),
    3: ("int16", "h"),
    4: ("uint32", "I"),
    5: ("int32", "i"),
    6: ("float32", "f"),
    7: ("bool", "?"),
    10: ("uint64", "Q"),
    11: ("int64", "q"),
    12: ("float64", "d"),
}
_SCALAR_STRUCTS = {t: struct.Struct("<" + fmt) for t, (_, fmt) in _SCALARS.items()}
_VALUE_TYPE_NAMES = {**{t: name for t, (name, _) in _SCALARS.items()}, 8: "string", 9: "array"}

# ggml_type id -> (name, elements per block, bytes per block), as in ggml's type_traits
_GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# llama.cpp's llama_ftype, stored as general.file_type
_FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}


@dataclass(frozen=True)
class ArraySummary:
    """Stands in for a metadata array too long to be worth keeping (a vocabulary, say)."""

    item_type: str
    length: int


@dataclass(frozen=True)
class GGUFInfo:
    """What a valid GGUF file says about itself."""

    version: int
    file_size: int
    tensor_count: int
    parameter_count: int
    metadata: dict[str, Any]
    #: ggml type name -> number of weight matrices (tensors of 2+ dims) stored in it
    tensor_types: dict[str, int] = field(default_factory=dict)

    def _str(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value if isinstance(value, str) else None

    def _int(self, key: str) -> int | None:
        value = self.metadata.get(key)
        if _is_int(value):
            return int(value)
        # Some architectures (OpenELM) store one value per layer; the largest is the safe
        # figure for sizing memory.
        if isinstance(value, list) and value and all(_is_int(v) for v in value):
            return int(max(value))
        return None

    def _arch_int(self, suffix: str) -> int | None:
        arch = self.architecture
        return None if arch is None else self._int(f"{arch}.{suffix}")

    @property
    def architecture(self) -> str | None:
        return self._str("general.architecture")

    @property
    def name(self) -> str | None:
        return self._str("general.name")

    @property
    def license(self) -> str | None:
        return self._str("general.license")

    @property
    def size_label(self) -> str | None:
        return self._str("general.size_label")

    @property
    def context_length(self) -> int | None:
        return self._arch_int("context_length")

    @property
    def block_count(self) -> int | None:
        return self._arch_int("block_count")

    @property
    def embedding_length(self) -> int | None:
        return self._arch_int("embedding_length")

    @property
    def vocab_size(self) -> int | None:
        """How many tokens its tokenizer knows (what per-token tables an engine keeps scale with)."""
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        count = (
            tokens.length
            if isinstance(tokens, ArraySummary)
            else len(tokens)
            if isinstance(tokens, list)
            else 0
        )
        return count or None

    @property
    def head_count(self) -> int | None:
        return self._arch_int("attention.head_count")

    @property
    def head_count_kv(self) -> int | None:
        kv = self._arch_int("attention.head_count_kv")
        return self.head_count if kv is None else kv

    @property
    def key_length(self) -> int | None:
        value = self._arch_int("attention.key_length")
        return self._default_head_dim() if value is None else value

    @property
    def value_length(self) -> int | None:
        value = self._arch_int("attention.value_length")
        return self._default_head_dim() if value is None else value

    def _default_head_dim(self) -> int | None:
        embd, heads = self.embedding_length, self.head_count
        if embd is None or not heads:
            return None
        return embd // heads

    @property
    def chat_template(self) -> str | None:
        return self._str("tokenizer.chat_template")

    @property
    def quantization(self) -> str | None:
        file_type = self.metadata.get("general.file_type")
        if _is_int(file_type):
            name = _FILE_TYPES.get(int(file_type) & ~_FTYPE_GUESSED)
            if name is not None:
                return name
        if not self.tensor_types:
            return None
        # Ties go to the alphabetically first name so the answer is stable.
        return min(self.tensor_types.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def summary(self) -> dict[str, Any]:
        """The useful facts as a JSON-able dict (for `cove show --json`)."""
        return {
            "version": self.version,
            "file_size": self.file_size,
            "tensor_count": self.tensor_count,
            "parameter_count": self.parameter_count,
            "architecture": self.architecture,
            "name": self.name,
            "license": self.license,
            "size_label": self.size_label,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "block_count": self.block_count,
            "embedding_length": self.embedding_length,
            "vocab_size": self.vocab_size,
            "head_count": self.head_count,
            "head_count_kv": self.head_count_kv,
            "key_length": self.key_length,
            "value_length": self.value_length,
            "chat_template": self.chat_template,
            "tensor_types": dict(self.tensor_types),
        }


class _Tensor(NamedTuple):
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int
    elements: int


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parses and checks the GGUF file at `path`; raises InvalidModelFile if it is not sound.

    OSError (missing file, permissions) passes through unchanged.
    """
    with open(path, "rb") as f:
        return _parse(f, os.fstat(f.fileno()).st_size, check_data=True)


def read_header(f: BinaryIO, size: int) -> GGUFInfo:
    """The header of a GGUF of `size` bytes read from `f` (any object with read, seek and tell:
    a file, or ranges fetched over HTTP), with the same limits as read_gguf, but without the
    check that the tensor data is all there: a header read does not have it."""
    return _parse(f, size, check_data=False)


def _parse(f: BinaryIO, size: int, *, check_data: bool) -> GGUFInfo:
    r = _Reader(f, size, _Budget(_WORK_BUDGET, _TIME_BUDGET_S))
    version, tensor_count, kv_count = _read_header(r)
    metadata = _read_metadata(r, kv_count)
    alignment = _alignment(metadata)
    tensors = _read_tensor_infos(r, tensor_count)
    if tensors and check_data:
        _check_tensor_data(tensors, _align_up(r.tell(), alignment), size, alignment)
    matrices = Counter(_ggml_type_name(t.ggml_type) for t in tensors if len(t.dims) >= 2)
    return GGUFInfo(
        version=version,
        file_size=size,
        tensor_count=tensor_count,
        parameter_count=sum(t.elements for t in tensors),
        metadata=metadata,
        tensor_types=dict(matrices),
    )


class _Budget:
    """Work units and wall time a check may spend; past either the file is refused as too bulky."""

    def __init__(self, units: int, seconds: float) -> None:
        self.left = units
        self.limit = units
        self._deadline = time.monotonic() + seconds
        self._seconds = seconds
        self._next_look = units - _CLOCK_EVERY

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise InvalidModelFile(
                f"GGUF metadata is too bulky to check (over {self.limit:,} units of work; real models "
                "need a tenth of that): this file is not one cove will load"
            )
        if self.left <= self._next_look:
            self._next_look = self.left - _CLOCK_EVERY
            if time.monotonic() > self._deadline:
                raise InvalidModelFile(
                    f"GGUF check took over {self._seconds:g} s (real models take well under one): "
                    "this file is not one cove will load"
                )


class _Reader:
    """Little-endian reads from a file, refilled a bounded chunk at a time."""

    def __init__(self, f: BinaryIO, size: int, budget: _Budget) -> None:
        self._f = f
        self.size = size
        self.budget = budget
        self._buf = b""
        self._start = 0  # file offset of _buf[0]
        self._pos = 0  # index into _buf; may point past its end after a skip
        self._kept = 0

    def keep(self, cost: int) -> None:
        """Charges memory the parsed values will hold against _MAX_KEPT."""
        self._kept += cost
        if self._kept > _MAX_KEPT:
            raise InvalidModelFile(
                f"GGUF metadata and tensor table would take over {_MAX_KEPT >> 20} MiB to load"
            )

    def tell(self) -> int:
        return self._start + self._pos

    def remaining(self) -> int:
        return self.size - self.tell()

    def _need(self, n: int, what: str) -> None:
        if self._pos + n <= len(self._buf):
            return
        at = self.tell()
        if n > self.size - at:
            raise _truncated(what, at)
        self._f.seek(at)
        self._buf = self._f.read(max(n, _CHUNK))
        self._start, self._pos = at, 0
        if len(self._buf) < n:  # the file shrank while we read it
            raise _truncated(what, at)

    def take(self, n: int, what: str) -> bytes:
        self._need(n, what)
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def unpack(self, st: struct.Struct, what: str) -> tuple[Any, ...]:
        self._need(st.size, what)
        out = st.unpack_from(self._buf, self._pos)
        self._pos += st.size
        return out

    def skip(self, n: int, what: str) -> None:
        if n > self.remaining():
            raise _truncated(what, self.tell())
        self._pos += n  # the next read refills from the new position

    def skip_strings(self, count: int, what: str) -> None:
        # Vocabularies hold ~10^5 strings, so this walks the buffer with locals
        # instead of a method call per string.
        unpack, size = _U64.unpack_from, self.size
        buf, pos, start = self._buf, self._pos, self._start
        last = len(buf) - 8  # the last index a length can be read from without a refill
        for _ in range(count):
            if pos > last:
                self._pos = pos
                self._need(8, what)
                buf, pos, start = self._buf, self._pos, self._start
                last = len(buf) - 8
            (n,) = unpack(buf, pos)
            if n > size - (start + pos + 8):
                raise _truncated(what, start + pos)
            pos += 8 + n
        self._pos = pos


def _truncated(what: str, at: int) -> InvalidModelFile:
    return InvalidModelFile(f"truncated GGUF: {what} at byte {at} runs past the end of the file")


def _q(name: str) -> str:
    """Quotes a name from the file for a message, cut short: keys can be megabytes long."""
    return repr(name if len(name) <= 80 else name[:80] + "...")


def _n(count: int) -> str:
    """Writes a huge power of two as 2^k: hostile counts usually are one, and it reads better."""
    if count >= 1 << 32 and count & (count - 1) == 0:
        return f"2^{count.bit_length() - 1}"
    return str(count)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _value_kind(value: object) -> str:
    if isinstance(value, ArraySummary | list):
        return "array"
    return {str: "string", bool: "bool", float: "float"}.get(type(value), type(value).__name__)


def _align_up(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


def _ggml_type_name(ggml_type: int) -> str:
    known = _GGML_TYPES.get(ggml_type)
    return known[0] if known else f"type{ggml_type}"


def _read_header(r: _Reader) -> tuple[int, int, int]:
    if r.size == 0:
        raise InvalidModelFile("not a GGUF file (it is empty)")
    magic = r.take(min(4, r.size), "magic")
    if magic != _MAGIC:
        if len(magic) < 4 and _MAGIC.startswith(magic):
            raise _truncated("header", 0)
        raise InvalidModelFile("not a GGUF file (bad magic)")
    (version,) = r.unpack(_U32, "header")
    if version not in _VERSIONS:
        if int.from_bytes(version.to_bytes(4, "little"), "big") in _VERSIONS:
            raise InvalidModelFile("big-endian GGUF files are not supported")
        raise InvalidModelFile(f"GGUF version {version} is not supported (expected 2 or 3)")
    tensor_count, kv_count = r.unpack(_COUNTS, "header")
    room = r.remaining()
    if kv_count * _MIN_KV_BYTES > room:
        raise InvalidModelFile(
            f"GGUF header declares {_n(kv_count)} metadata entries, more than the file can hold"
        )
    if tensor_count * _MIN_TENSOR_INFO_BYTES > room - kv_count * _MIN_KV_BYTES:
        raise InvalidModelFile(
            f"GGUF header declares a tensor count of {_n(tensor_count)}, more than the file can hold"
        )
    _check_counts(tensor_count, kv_count)
    r.budget.spend(kv_count * _KEY_WORK + tensor_count * _TENSOR_WORK)
    return version, tensor_count, kv_count


def _check_counts(tensor_count: int, kv_count: int) -> None:
    """Refuse, before reading them, more keys or tensors than any real model has by far."""
    if kv_count > _MAX_KEYS:
        raise InvalidModelFile(
            f"GGUF header declares {_n(kv_count)} metadata entries, over the {_MAX_KEYS:,} cove "
            "checks (real models have under a hundred)"
        )
    if tensor_count > _MAX_TENSORS:
        raise InvalidModelFile(
            f"GGUF header declares {_n(tensor_count)} tensors, over the {_MAX_TENSORS:,} cove "
            "checks (real models have a few thousand at most)"
        )


def _read_str(r: _Reader, what: str) -> str:
    at = r.tell()
    (n,) = r.unpack(_U64, what)
    if n > r.remaining():
        raise _truncated(what, at)
    if n > _MAX_STRING:
        raise InvalidModelFile(
            f"GGUF {what} at byte {at} is {n} bytes, over the {_MAX_STRING >> 20} MiB limit"
        )
    r.keep(n + _VALUE_COST)
    raw = r.take(n, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidModelFile(f"GGUF {what} at byte {at} is not valid UTF-8") from None


def _read_metadata(r: _Reader, kv_count: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = _read_str(r, "metadata key")
        if key in metadata:
            raise InvalidModelFile(f"GGUF metadata key {_q(key)} appears twice")
        (value_type,) = r.unpack(_U32, f"type of metadata {_q(key)}")
        metadata[key] = _read_value(r, value_type, key, 0)
    return metadata


def _read_value(r: _Reader, value_type: int, key: str, depth: int) -> Any:
    scalar = _SCALAR_STRUCTS.get(value_type)
    if scalar is not None:
        r.keep(_VALUE_COST)
        return r.unpack(scalar, f"metadata value {_q(key)}")[0]
    if value_type == _STRING:
        return _read_str(r, "metadata string")
    if value_type == _ARRAY:
        return _read_array(r, key, depth + 1)
    raise InvalidModelFile(f"GGUF metadata {_q(key)} has unknown value type {value_type}")


def _array_head(r: _Reader, key: str, depth: int) -> tuple[int, int]:
    """Reads an array's item type and length, refusing any the rest of the file can't hold."""
    if depth > _MAX_NESTING:
        raise InvalidModelFile(f"GGUF metadata {_q(key)} has arrays nested deeper than {_MAX_NESTING} levels")
    at = r.tell()
    item_type, count = r.unpack(_ARRAY_HEAD, f"metadata array {_q(key)}")
    if item_type in _SCALARS:
        item_size = _SCALAR_STRUCTS[item_type].size
    elif item_type == _STRING:
        item_size = _U64.size
    elif item_type == _ARRAY:
        item_size = _ARRAY_HEAD.size
    else:
        raise InvalidModelFile(f"GGUF metadata {_q(key)} has unknown value type {item_type}")
    if count * item_size > r.remaining():
        raise InvalidModelFile(
            f"GGUF metadata array {_q(key)} at byte {at} declares {_n(count)} elements, "
            "more than the rest of the file can hold"
        )
    # Scalars are skipped or unpacked in one step; strings and arrays are walked one by one.
    if item_type == _ARRAY:
        r.budget.spend(count * _ARRAY_WORK)
    elif item_type == _STRING:
        r.budget.spend(count)
    return item_type, count


def _read_array(r: _Reader, key: str, depth: int) -> list[Any] | ArraySummary:
    item_type, count = _array_head(r, key, depth)
    if count > _MAX_LISTED:
        _skip_items(r, item_type, count, key, depth)
        return ArraySummary(_VALUE_TYPE_NAMES[item_type], count)
    r.keep(_VALUE_COST * (count + 1))
    if item_type in _SCALARS:
        bulk = struct.Struct(f"<{count}{_SCALARS[item_type][1]}")
        return list(r.unpack(bulk, f"metadata array {_q(key)}"))
    return [_read_value(r, item_type, key, depth) for _ in range(count)]


def _skip_items(r: _Reader, item_type: int, count: int, key: str, depth: int) -> None:
    if item_type in _SCALARS:
        r.skip(count * _SCALAR_STRUCTS[item_type].size, f"metadata array {_q(key)}")
    elif item_type == _STRING:
        r.skip_strings(count, "metadata string")
    else:
        for _ in range(count):
            inner_type, inner_count = _array_head(r, key, depth + 1)
            _skip_items(r, inner_type, inner_count, key, depth + 1)


def _alignment(metadata: dict[str, Any]) -> int:
    value = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not _is_int(value):
        raise InvalidModelFile(f"GGUF alignment must be an integer, got a {_value_kind(value)}")
    if value <= 0 or value & (value - 1):
        raise InvalidModelFile(f"GGUF alignment must be a power of two, got {value}")
    if value > _MAX_ALIGNMENT:
        raise InvalidModelFile(f"GGUF alignment {value} is over the {_MAX_ALIGNMENT} limit")
    return int(value)


def _read_tensor_infos(r: _Reader, tensor_count: int) -> list[_Tensor]:
    tensors: list[_Tensor] = []
    seen: set[str] = set()
    for _ in range(tensor_count):
        r.keep(_TENSOR_COST)
        name = _read_str(r, "tensor name")
        if name in seen:
            raise InvalidModelFile(f"tensor {_q(name)} appears twice")
        seen.add(name)
        (n_dims,) = r.unpack(_U32, f"tensor {_q(name)} info")
        if n_dims > _MAX_DIMS:
            raise InvalidModelFile(
                f"tensor {_q(name)} has {n_dims} dimensions; GGUF allows at most {_MAX_DIMS}"
            )
        dims: tuple[int, ...] = r.unpack(_DIMS[n_dims], f"tensor {_q(name)} info")
        ggml_type, offset = r.unpack(_TYPE_OFFSET, f"tensor {_q(name)} info")
        tensors.append(_Tensor(name, dims, ggml_type, offset, _element_count(name, dims)))
    return tensors


def _element_count(name: str, dims: tuple[int, ...]) -> int:
    count = 1
    for dim in dims:
        count *= dim
    if count >= _MAX_ELEMENTS:
        raise InvalidModelFile(f"tensor {_q(name)} has absurd dimensions {list(dims)}")
    return count


def _tensor_nbytes(t: _Tensor) -> int | None:
    """Bytes the tensor's data takes, or None for a ggml type newer than this table."""
    known = _GGML_TYPES.get(t.ggml_type)
    if known is None:
        return None
    type_name, block, block_bytes = known
    first = t.dims[0] if t.dims else 1
    if first % block:
        raise InvalidModelFile(
            f"tensor {_q(t.name)} first dimension {first} is not a multiple of "
            f"the {type_name} block size {block}"
        )
    return t.elements // block * block_bytes


def _check_tensor_data(tensors: list[_Tensor], data_start: int, size: int, alignment: int) -> None:
    data_size = size - data_start  # negative when the file ends inside the padding
    for t in tensors:
        if t.offset % alignment:
            raise InvalidModelFile(
                f"tensor {_q(t.name)} offset {t.offset} is not a multiple of the alignment {alignment}"
            )
        nbytes = _tensor_nbytes(t)
        # An unknown type still takes at least one byte per tensor that has elements.
        least = 1 if nbytes is None and t.elements else 0
        if t.offset + least > data_size:
            raise InvalidModelFile(f"tensor {_q(t.name)} offset {t.offset} is past the end of the file")
        if nbytes is not None and t.offset + nbytes > data_size:
            raise InvalidModelFile(f"tensor {_q(t.name)} data runs past the end of the file")
