"""A BERT in Hugging Face's layout (config.json, vocab.txt, model.safetensors) converted into
the GGUF llama.cpp runs it with: a sentence-embedding model, or a cross-encoder that reranks.

The conversion is what llama.cpp's own converter does for architecture `bert`: the shape from
config.json, causal attention off, the pooling sentence-transformers uses, the token type
count (the loader refuses a BERT without it), tensor names through gguf's own name map, 2-D
weights as f16, and the WordPiece vocabulary rewritten as llama.cpp's WPM tokenizer reads it.

A cross-encoder (BertForSequenceClassification with one label) keeps its [CLS] pooler and
classifier as llama.cpp's classification head: the pooler's dense layer as `cls` (the engine
applies its tanh), the classifier as `cls.output`, and pooling type rank. The engine writes a
pair as `[CLS] query [SEP] document [SEP]`, so [SEP] is also the end-of-text token, added. A
cross-encoder with two token types gets its vocabulary's segment-B copy and the rerank template
that reads it (engine/reranking.py says why), so its document half is token type 1, as trained.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.reranking import SEGMENT_B_KEY, rerank_template, segment_b_piece
from ..errors import PullError
from .catalog import Weights

#: Reads one file of the model's folder by its relative name; KeyError when it is not there.
ReadFile = Callable[[str], bytes]

#: safetensors' dtype names and what numpy calls them (BF16 is widened by hand).
DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}
#: Tensors a sentence embedding never uses: BERT's position id buffer and its [CLS] pooler.
UNUSED_PREFIXES = ("embeddings.position_ids", "pooler.")
#: A cross-encoder uses its pooler; only the position ids (and masked-LM heads) go.
UNUSED_BY_RERANKER = ("embeddings.position_ids", "cls.predictions", "cls.seq_relationship")
#: A cross-encoder's head, and the names llama.cpp's classification head has.
HEAD_NAMES = {"pooler.dense": "cls", "classifier": "cls.output"}
#: The GGUF names of the token and token type embeddings.
TOKENS, TOKEN_TYPES = "token_embd.weight", "token_types.weight"
#: The pooling a conversion writes: sentence-transformers' for an embedder, rank for a reranker.
POOLINGS = ("mean", "cls", "rank")
#: The specials llama.cpp treats as control tokens (never split, never text).
CONTROL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Converted:
    """What a conversion wrote: enough for the catalog's figures and for tests."""

    path: Path
    tensors: int
    vocabulary: int
    pooling: str


def convert(
    read: ReadFile, out: Path, name: str, license: str | None = None, *, weights: Weights = "f16"
) -> Converted:
    """Write `out`, a GGUF of the BERT whose files `read` gives; a PullError when they are not one.

    A cross-encoder (config.json's architectures say *ForSequenceClassification) becomes a
    reranker. `weights`: how its matrices are stored (see Weights); "f32" keeps every weight
    exact, for checking a conversion."""
    import gguf  # imported on first conversion only: it is a pull's tool, not the engine's

    config = _json(read, "config.json")
    if config.get("model_type", "bert") != "bert":
        raise PullError(f"{name} is a {config.get('model_type')} model; cove converts only BERT models")
    tokens = _vocabulary(read)
    pooling = "rank" if is_cross_encoder(config) else _pooling(read)
    layers = int(config["num_hidden_layers"])
    type_count = int(config.get("type_vocab_size", 1))
    segment_b = pooling == "rank" and type_count >= 2
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    try:
        _write_parameters(writer, gguf, config, name, pooling, weights)
        if license:
            writer.add_license(license)
        _write_vocabulary(writer, gguf, tokens, type_count, pair=pooling == "rank", segment_b=segment_b)
        names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, layers)
        placed: dict[str, np.ndarray[Any, Any]] = {}
        for source, array in read_safetensors(_member(read, "model.safetensors")):
            target = _target(names, source, rerank=pooling == "rank")
            if target is None:
                continue
            if target == "":
                raise PullError(f"{name} has a tensor cove cannot place in a BERT GGUF: {source}")
            placed[target] = array
        if pooling == "rank":
            _check_head(name, set(placed))
        if segment_b:
            placed[TOKENS] = with_segment_b(placed, len(tokens))
        for target, array in placed.items():
            stored, kind = _stored_as(gguf, target, array, weights)
            writer.add_tensor(target, stored, raw_dtype=kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return Converted(out, len(placed), len(tokens), pooling)


def folder_reader(folder: Path) -> ReadFile:
    """The files of a model's folder by the names `convert` asks for (a Hugging Face snapshot's
    files may be links into its cache, which are followed)."""

    def read(member: str) -> bytes:
        path = folder / member
        if not path.is_file():
            raise KeyError(member)
        return path.read_bytes()

    return read


def is_model_folder(folder: Path) -> bool:
    """A folder in Hugging Face's layout that `convert` may read."""
    return folder.is_dir() and all((folder / f).is_file() for f in ("config.json", "model.safetensors"))


def is_cross_encoder(config: dict[str, Any]) -> bool:
    """A BERT with a sequence classification head: one label is a relevance score; more
    (sentiment, NLI) are classifiers, which llama.cpp's rerank call does not serve."""
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return False
    labels = config.get("id2label") or {}
    count = int(config.get("num_labels") or len(labels) or 1)
    if count != 1:
        raise PullError(
            f"this BERT classifies into {count} labels; cove reranks only with one-label cross-encoders"
        )
    return True


def _target(names: Any, source: str, *, rerank: bool) -> str | None:
    """The GGUF name of a checkpoint tensor; None to leave it out, "" when it has no place."""
    if source.startswith(UNUSED_BY_RERANKER if rerank else UNUSED_PREFIXES):
        return None
    stripped = _strip_prefix(source)
    if rerank:
        for prefix, head in HEAD_NAMES.items():
            if stripped.startswith(prefix + "."):
                return head + stripped.removeprefix(prefix)
    target = names.get_name(stripped, try_suffixes=(".weight", ".bias"))
    return "" if target is None or target.startswith("cls") else str(target)


def with_segment_b(placed: dict[str, np.ndarray[Any, Any]], count: int) -> np.ndarray[Any, Any]:
    """The token embeddings, then each again as segment B: plus token type 1, less token type 0
    (which llama.cpp adds to every token), so a copy's sum is what transformers' type 1 gives."""
    words, types = placed.get(TOKENS), placed.get(TOKEN_TYPES)
    if words is None or types is None or words.shape[0] != count or types.shape[0] < 2:
        raise PullError("the cross-encoder's token or token type embeddings do not match its vocabulary")
    shift = types[1].astype(np.float64) - types[0].astype(np.float64)
    return np.concatenate([words, (words.astype(np.float64) + shift).astype(words.dtype)])


def _check_head(name: str, placed: set[str]) -> None:
    missing = [t for t in ("cls.weight", "cls.output.weight") if t not in placed]
    if missing:
        raise PullError(f"{name} is a cross-encoder without its head ({', '.join(missing)} missing)")


def _write_parameters(
    writer: Any, gguf: Any, config: dict[str, Any], name: str, pooling: str, weights: Weights
) -> None:
    writer.add_name(name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    types = {"cls": gguf.PoolingType.CLS, "rank": gguf.PoolingType.RANK}
    writer.add_pooling_type(types.get(pooling, gguf.PoolingType.MEAN))
    if pooling == "rank":
        labels = config.get("id2label") or {"0": "LABEL_0"}
        writer.add_classifier_output_labels([str(v) for _, v in sorted(labels.items())])
    kinds = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0"}
    writer.add_file_type(getattr(gguf.LlamaFileType, kinds[weights]))


def _write_vocabulary(
    writer: Any, gguf: Any, tokens: list[str], type_count: int, *, pair: bool = False, segment_b: bool = False
) -> None:
    """WordPiece as llama.cpp's WPM tokenizer reads it: a word's first piece carries the
    sentencepiece space mark (`▁the`), a continuation loses its `##`, specials stay as they are.
    With `pair` (a reranker), [SEP] also ends the text, so a pair ends `document [SEP]`; with
    `segment_b`, the segment-B copies follow as control tokens, and the template that reads them."""
    index = {token: i for i, token in enumerate(tokens)}
    for special in ("[CLS]", "[SEP]", "[UNK]"):
        if special not in index:
            raise PullError(f"the vocabulary has no {special} token; is this a BERT WordPiece vocabulary?")
    pieces = [_wpm_piece(token) for token in tokens]
    repeated = _repeated(tokens, pieces)
    if repeated is not None:  # llama.cpp asserts (and its process dies) on a piece seen twice
        raise PullError(f"the vocabulary has the token {repeated!r} twice (as llama.cpp reads WordPiece)")
    types = [_token_type(gguf, token) for token in tokens]
    if segment_b:
        pieces = [*pieces, *(segment_b_piece(i) for i in range(len(tokens)))]
        types = [*types, *[int(gguf.TokenType.CONTROL)] * len(tokens)]
        writer.add_uint32(SEGMENT_B_KEY, len(tokens))
        writer.add_string("tokenizer.chat_template.rerank", rerank_template("[CLS]", "[SEP]"))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(pieces)
    writer.add_token_types(types)
    writer.add_token_type_count(type_count)
    writer.add_bos_token_id(index["[CLS]"])
    writer.add_sep_token_id(index["[SEP]"])
    writer.add_unk_token_id(index["[UNK]"])
    if "[PAD]" in index:
        writer.add_pad_token_id(index["[PAD]"])
    if "[MASK]" in index:
        writer.add_mask_token_id(index["[MASK]"])
    writer.add_add_bos_token(True)
    if pair:  # the engine joins a pair as bos query eos [sep] document eos: one [SEP] between
        writer.add_eos_token_id(index["[SEP]"])
        writer.add_add_eos_token(True)
        writer.add_add_sep_token(False)
    else:
        writer.add_add_sep_token(True)


def _repeated(tokens: list[str], pieces: list[str]) -> str | None:
    """The first token whose piece an earlier token already has (`a` and `▁a` are not twice)."""
    seen: set[str] = set()
    for token, piece in zip(tokens, pieces, strict=True):
        if piece in seen:
            return token
        seen.add(piece)
    return None


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


def _stored_as(
    gguf: Any, target: str, array: np.ndarray[Any, Any], weights: Weights
) -> tuple[np.ndarray[Any, Any], Any]:
    """The tensor as written, and its GGML type (None: numpy's own): 2-D weights in `weights`;
    vectors (norms, biases) and the tiny token type table stay f32, as llama.cpp's converter
    keeps them. Q8_0 packs rows in blocks of 32, so a row of another length stays f16."""
    if array.ndim != 2 or target.startswith("token_types") or weights == "f32":
        return array.astype(np.float32), None
    if weights == "q8_0" and array.shape[-1] % 32 == 0:
        q8 = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(array.astype(np.float32), q8), q8
    return array.astype(np.float16), None


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
