"""A BERT sentence-embedding model in Hugging Face's layout (config.json, vocab.txt,
model.safetensors) converted into the GGUF llama.cpp embeds with.

The conversion is what llama.cpp's own converter does for architecture `bert`: the shape from
config.json, causal attention off, the pooling sentence-transformers uses, the token type
count (the loader refuses a BERT without it), tensor names through gguf's own name map, 2-D
weights as f16, and the WordPiece vocabulary rewritten as llama.cpp's WPM tokenizer reads it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PullError

#: Reads one file of the model's folder by its relative name; KeyError when it is not there.
ReadFile = Callable[[str], bytes]

#: safetensors' dtype names and what numpy calls them (BF16 is widened by hand).
DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}
#: Tensors a sentence embedding never uses: BERT's position id buffer and its [CLS] pooler.
UNUSED_PREFIXES = ("embeddings.position_ids", "pooler.")
#: The specials llama.cpp treats as control tokens (never split, never text).
CONTROL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Converted:
    """What a conversion wrote: enough for the catalog's figures and for tests."""

    path: Path
    tensors: int
    vocabulary: int
    pooling: str


def convert(read: ReadFile, out: Path, name: str, license: str | None = None) -> Converted:
    """Write `out`, a GGUF of the BERT whose files `read` gives; a PullError when they are not one."""
    import gguf  # imported on first conversion only: it is a pull's tool, not the engine's

    config = _json(read, "config.json")
    if config.get("model_type", "bert") != "bert":
        raise PullError(f"{name} is a {config.get('model_type')} model; cove converts only BERT models")
    tokens = _vocabulary(read)
    pooling = _pooling(read)
    layers = int(config["num_hidden_layers"])
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    try:
        _write_parameters(writer, gguf, config, name, pooling)
        if license:
            writer.add_license(license)
        _write_vocabulary(writer, gguf, tokens, int(config.get("type_vocab_size", 1)))
        names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, layers)
        count = 0
        for source, array in read_safetensors(_member(read, "model.safetensors")):
            if source.startswith(UNUSED_PREFIXES):
                continue
            target = names.get_name(_strip_prefix(source), try_suffixes=(".weight", ".bias"))
            if target is None:
                raise PullError(f"{name} has a tensor cove cannot place in a BERT GGUF: {source}")
            writer.add_tensor(target, _stored_as(target, array))
            count += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return Converted(out, count, len(tokens), pooling)


def _write_parameters(writer: Any, gguf: Any, config: dict[str, Any], name: str, pooling: str) -> None:
    writer.add_name(name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.CLS if pooling == "cls" else gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)


def _write_vocabulary(writer: Any, gguf: Any, tokens: list[str], type_count: int) -> None:
    """WordPiece as llama.cpp's WPM tokenizer reads it: a word's first piece carries the
    sentencepiece space mark (`▁the`), a continuation loses its `##`, specials stay as they are."""
    index = {token: i for i, token in enumerate(tokens)}
    for special in ("[CLS]", "[SEP]", "[UNK]"):
        if special not in index:
            raise PullError(f"the vocabulary has no {special} token; is this a BERT WordPiece vocabulary?")
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([_wpm_piece(token) for token in tokens])
    writer.add_token_types([_token_type(gguf, token) for token in tokens])
    writer.add_token_type_count(type_count)
    writer.add_bos_token_id(index["[CLS]"])
    writer.add_sep_token_id(index["[SEP]"])
    writer.add_unk_token_id(index["[UNK]"])
    if "[PAD]" in index:
        writer.add_pad_token_id(index["[PAD]"])
    if "[MASK]" in index:
        writer.add_mask_token_id(index["[MASK]"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)


def _wpm_piece(token: str) -> str:
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def _token_type(gguf: Any, token: str) -> int:
    if token in CONTROL:
        return int(gguf.TokenType.CONTROL)
    if token.startswith("[unused") and token.endswith("]"):
        return int(gguf.TokenType.UNUSED)
    return int(gguf.TokenType.NORMAL)


def _stored_as(target: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """2-D weights as f16 (half the file, the figures unchanged to four places); vectors (norms,
    biases) and the tiny token type table stay f32, as llama.cpp's converter keeps them."""
    if array.ndim == 2 and not target.startswith("token_types"):
        return array.astype(np.float16)
    return array.astype(np.float32)


def _strip_prefix(name: str) -> str:
    """`bert.encoder…` (a BertForX checkpoint) and `encoder…` (a BertModel) name the same tensor."""
    return name.removeprefix("bert.").removeprefix("model.")


def _vocabulary(read: ReadFile) -> list[str]:
    text = _member(read, "vocab.txt").decode("utf-8")
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    return [token.rstrip("\r") for token in tokens]


def _pooling(read: ReadFile) -> str:
    """sentence-transformers' pooling (1_Pooling/config.json); mean when the folder has none."""
    try:
        config = json.loads(read("1_Pooling/config.json"))
    except KeyError:
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise PullError("the model pools its vectors in a way llama.cpp cannot (only mean and [CLS] pooling)")


def _json(read: ReadFile, member: str) -> dict[str, Any]:
    try:
        data = json.loads(_member(read, member))
    except ValueError as exc:
        raise PullError(f"the model's {member} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PullError(f"the model's {member} is not a JSON object")
    return data


def _member(read: ReadFile, member: str) -> bytes:
    try:
        return read(member)
    except KeyError as exc:
        raise PullError(f"the model has no {member}") from exc


def read_safetensors(data: bytes) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """The tensors of a safetensors file (an 8-byte header length, a JSON header of dtypes,
    shapes and byte offsets, then the raw little-endian data), in the header's order."""
    if len(data) < 8:
        raise PullError("model.safetensors is too short to be a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise PullError("model.safetensors is truncated (its header is longer than the file)")
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError as exc:
        raise PullError(f"model.safetensors has a broken header: {exc}") from exc
    body = memoryview(data)[8 + length :]
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        yield name, _tensor(name, meta, body)


def _tensor(name: str, meta: dict[str, Any], body: memoryview) -> np.ndarray[Any, Any]:
    dtype, shape = meta.get("dtype"), [int(n) for n in meta.get("shape", [])]
    start, end = (int(n) for n in meta.get("data_offsets", (0, 0)))
    if not 0 <= start <= end <= len(body):
        raise PullError(f"model.safetensors: tensor {name} lies outside the file")
    raw = body[start:end]
    if dtype == "BF16":  # the top half of an f32
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        array = halves.view(np.float32)
    elif dtype in DTYPES:
        array = np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<"))
    else:
        raise PullError(f"model.safetensors: tensor {name} has a type cove cannot read ({dtype})")
    if array.size != int(np.prod(shape, dtype=np.int64)):
        raise PullError(f"model.safetensors: tensor {name}'s bytes do not match its shape {shape}")
    return array.reshape(shape)
