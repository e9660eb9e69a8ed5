"""The model store: manifests by `name:tag` pointing at verified blobs, and the operations on them."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidModelFile, InvalidName, InvalidTemplate, ModelNotFound
from ..recipe import Recipe
from ..templates import check_template
from . import catalog
from .atomic import atomic_write_bytes
from .blobs import STALE_PARTIAL_S, Blobs
from .gguf import GGUFInfo, read_gguf
from .names import ModelName, closest, parse_name

MANIFEST_SCHEMA = 1
#: The folder a PyPI-wheel pull downloads into, inside COVE_HOME; a pull killed mid-way leaves it.
WHEEL_FOLDER_PREFIX = "wheel-"
#: Architectures llama.cpp runs only as embedders: chatting with them is a client error.
EMBEDDING_ARCHITECTURES = {
    "bert",
    "nomic-bert",
    "nomic-bert-moe",
    "jina-bert-v2",
    "jina-bert-v3",
    "t5encoder",
    "modern-bert",
    "neo-bert",
}


@dataclass
class Manifest:
    """What the store knows about one named model."""

    name: str
    digest: str
    size: int
    source: str
    info: dict[str, Any]
    recipe: dict[str, Any] = field(default_factory=dict)
    adapter_digest: str | None = None
    modified: str = ""

    @property
    def short_id(self) -> str:
        return self.digest[:12]

    @property
    def manifest_digest(self) -> str:
        """sha256 of what decides how the model runs: weights, adapter and recipe (canonical JSON).

        Like Ollama's manifest digest it tells models apart that share one GGUF (a `create`d
        model with its own system prompt), while a plain copy keeps its source's. Name, source
        and modification time are not part of it.
        """
        body = {
            "schema": MANIFEST_SCHEMA,
            "digest": self.digest,
            "adapter_digest": self.adapter_digest,
            "recipe": self.recipe,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def recipe_obj(self) -> Recipe:
        data = dict(self.recipe) or {"base": self.name}
        data.setdefault("base", self.name)
        return Recipe.from_dict(data)

    @property
    def is_embedding(self) -> bool:
        return bool(self.info.get("embedding_only"))

    @property
    def is_remote(self) -> bool:
        """A model served by OpenAI-compatible upstreams (FROM openai+https://…): it has no blob."""
        return bool(self.info.get("remote"))


def remote_base(recipe: Recipe) -> Manifest:
    """The base a remote recipe stands on: no file, named by its upstreams. Its digest is theirs
    (the URLs and models, hashed) so `cove ps` and the scheduler tell two remote models apart."""
    refs = recipe.remote
    urls = [f"{r.base_url}#{r.model}" for r in refs]
    digest = hashlib.sha256("\n".join(urls).encode()).hexdigest()
    first = refs[0]
    name = first.where if len(refs) == 1 else f"{first.where} and {len(refs) - 1} more"
    info = {"remote": urls, "architecture": "remote", "context_length": None}
    return Manifest(name=name, digest=digest, size=0, source="remote", info=info, recipe=recipe.to_dict())


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class ModelStore:
    """`COVE_HOME/blobs` and `COVE_HOME/manifests`; never loads a model."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.blobs = Blobs(home / "blobs")
        self.manifests = home / "manifests"
        self.manifests.mkdir(parents=True, exist_ok=True)

    def manifest_path(self, name: ModelName) -> Path:
        path = self.manifests.joinpath(*name.segments, f"{name.tag}.json")
        if not path.resolve().is_relative_to(self.manifests.resolve()):
            raise InvalidName(f"invalid model name {str(name)!r}")
        return path

    def get(self, raw: str | ModelName) -> Manifest:
        name = raw if isinstance(raw, ModelName) else parse_name(raw)
        path = self.manifest_path(name)
        if not path.is_file():
            raise ModelNotFound(self.not_found(str(name)))
        try:
            return self._read(path)
        except (ValueError, TypeError) as exc:
            raise InvalidModelFile(
                f"the manifest of '{name}' is damaged: `cove rm {name}` removes it"
            ) from exc

    def not_found(self, name: str) -> str:
        """Why `name` is not here and what would work: the stored or catalog name it resembles."""
        if catalog.find(name) is not None:
            return f"model '{name}' is not in the store yet: `cove pull {name}` fetches it"
        stored = {m.name for m in self._iter()}
        guess = closest(name, stored | set(catalog.names()))
        if guess in stored:
            return f"model '{name}' not found; did you mean '{guess}'? (see `cove list`)"
        if guess is not None:
            return f"model '{name}' not found; did you mean '{guess}'? `cove pull {guess}` fetches it"
        return f"model '{name}' not found: see `cove list`, or `cove list --available` for models to pull"

    def has(self, raw: str) -> bool:
        return self.manifest_path(parse_name(raw)).is_file()

    def _read(self, path: Path) -> Manifest:
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict):  # valid JSON but not a manifest (a string, a list)
            raise ValueError(f"{path.name} is not a manifest")
        data.pop("schema", None)
        return Manifest(**data)

    def save(self, manifest: Manifest) -> Manifest:
        name = parse_name(manifest.name)
        manifest = replace(manifest, name=str(name), modified=manifest.modified or now_iso())
        body = {"schema": MANIFEST_SCHEMA, **asdict(manifest)}
        atomic_write_bytes(self.manifest_path(name), json.dumps(body, indent=2).encode())
        return manifest

    def list(self) -> list[Manifest]:
        return sorted(self._iter(), key=lambda m: m.name)

    def _iter(self) -> Iterator[Manifest]:
        for path in self.manifests.rglob("*.json"):
            try:
                yield self._read(path)
            except (ValueError, TypeError, OSError):
                continue  # a foreign or damaged file is not a model; never crash `list` over it

    def remove(self, raw: str) -> Manifest:
        name = parse_name(raw)
        try:
            manifest = self.get(name)
        except InvalidModelFile:
            # A damaged manifest must still be removable, or its name is stuck for good.
            manifest = Manifest(name=str(name), digest="", size=0, source="damaged manifest", info={})
        path = self.manifest_path(name)
        path.unlink()
        self._prune_empty(path.parent)
        self.collect_garbage()
        return manifest

    def _prune_empty(self, folder: Path) -> None:
        while folder != self.manifests and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def copy(self, source: str, destination: str) -> Manifest:
        manifest = self.get(source)
        return self.save(replace(manifest, name=str(parse_name(destination)), modified=""))

    def collect_garbage(self) -> None:
        """Remove blobs no manifest points at (after `rm`), and partial downloads no pull is
        writing that were left alone for an hour (a failed or abandoned pull's)."""
        used = set()
        for manifest in self._iter():
            used.add(manifest.digest)
            if manifest.adapter_digest:
                used.add(manifest.adapter_digest)
            draft = manifest.recipe.get("draft")
            if isinstance(draft, str) and draft.startswith("sha256:"):  # a DRAFT file's blob
                used.add(draft.removeprefix("sha256:"))
        for digest in self.blobs.all_digests() - used:
            self.blobs.remove(digest)
        self.blobs.remove_stale()
        self._remove_stale_wheel_folders()

    def _remove_stale_wheel_folders(self) -> None:
        """A wheel pull killed mid-way (kill -9, a power cut) cannot remove its download folder."""
        for folder in self.home.glob(f"{WHEEL_FOLDER_PREFIX}*"):
            if folder.is_dir() and time.time() - _newest_change(folder) > STALE_PARTIAL_S:
                shutil.rmtree(folder, ignore_errors=True)

    def model_path(self, manifest: Manifest) -> Path:
        return self.blobs.path(manifest.digest)

    def gguf(self, manifest: Manifest) -> GGUFInfo:
        """Everything the model's GGUF says about itself, read again from the stored blob."""
        return read_gguf(self.model_path(manifest))

    def import_gguf(self, path: Path, name: str, source: str, expected: str | None = None) -> Manifest:
        """Validate a GGUF file and copy it in under `name`."""
        target = parse_name(name)
        info = validate_gguf(path)
        digest = self.blobs.add_file(path, expected)
        return self.save_model(str(target), digest, info, source)

    def save_model(
        self, name: str, digest: str, info: GGUFInfo, source: str, recipe: Recipe | None = None
    ) -> Manifest:
        manifest = Manifest(
            name=name,
            digest=digest,
            size=info.file_size,
            source=source,
            info=describe(info),
            recipe=recipe.to_dict() if recipe else {},
        )
        return self.save(manifest)


def _newest_change(folder: Path) -> float:
    """The latest modification time in the folder: pip writes there as long as it downloads."""
    times = [folder.stat().st_mtime]
    for path in folder.rglob("*"):
        try:
            times.append(path.stat().st_mtime)
        except FileNotFoundError:  # removed as we looked: its owner is alive
            return time.time()
    return max(times)


def describe(info: GGUFInfo) -> dict[str, Any]:
    return {
        **info.summary(),
        "embedding_only": info.architecture in EMBEDDING_ARCHITECTURES,
        **catalog.kind_from_metadata(info.architecture, info.metadata),
    }


def validate_gguf(path: Path) -> GGUFInfo:
    """Everything we check before a file may enter the store: header, tensors, template."""
    if not path.is_file():
        raise InvalidModelFile(f"no such file: {path.name}")
    info = read_gguf(path)
    if info.chat_template:
        try:
            check_template(info.chat_template)
        except InvalidTemplate as exc:
            raise InvalidModelFile(f"the model's chat template is unsafe or broken: {exc}") from exc
    return info
