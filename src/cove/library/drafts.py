"""A recipe's DRAFT model (speculative decoding): a file beside the recipe is stored as a blob at
`cove create` and named by its digest in the stored recipe; a stored model is named as it is.
At each load the draft is found again, with the figures the memory plan needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import BadRequest, InvalidRecipe, ModelNotFound
from ..recipe import Recipe, looks_like_path
from ..store.blobs import Blobs
from ..store.models import Manifest, ModelStore, describe, validate_gguf
from ..store.names import parse_digest

DIGEST_PREFIX = "sha256:"


def is_blob_ref(ref: str) -> bool:
    return ref.startswith(DIGEST_PREFIX)


def store_draft(recipe: Recipe, folder: Path, blobs: Blobs, source: str = "recipe") -> Recipe:
    """The recipe with a DRAFT file (relative to the recipe's folder) stored as a blob and named
    `sha256:<digest>`, so the model still loads after the file moves. parse_recipe has already
    refused a path that names no file, and checked a model name against the store."""
    if recipe.draft is None:
        return recipe
    if is_blob_ref(recipe.draft):
        _blob_draft(blobs, recipe.draft, lambda why: InvalidRecipe(f"{source}: DRAFT {why}"))
        return recipe
    path = (folder / recipe.draft).expanduser().resolve()
    if not path.is_file():
        if looks_like_path(recipe.draft, slash_is_path=False):
            raise InvalidRecipe(f"{source}: DRAFT file {recipe.draft!r} does not exist")
        return recipe  # a stored model's name
    validate_gguf(path)
    return replace(recipe, draft=f"{DIGEST_PREFIX}{blobs.add_file(path)}")


def check_api_draft(recipe: Recipe, blobs: Blobs) -> None:
    """A remote caller's DRAFT: a stored model or an uploaded blob, never a path on this disk
    (even "exists or not" would tell it about the server's files)."""
    if recipe.draft is None:
        return
    if is_blob_ref(recipe.draft):
        upload = "upload it to /api/blobs first"
        _blob_draft(blobs, recipe.draft, lambda why: BadRequest(f"DRAFT {why}; {upload}"))
    elif looks_like_path(recipe.draft, slash_is_path=False):
        raise BadRequest("DRAFT a file path works only from the CLI; upload it with /api/blobs")


def find_draft(ref: str, blobs: Blobs, lookup: Callable[[str], Manifest]) -> Manifest:
    """The draft model a stored recipe names: a stored model, or the blob `cove create` kept."""
    if not is_blob_ref(ref):
        return lookup(ref)

    def missing(why: str) -> ModelNotFound:
        return ModelNotFound(f"the draft model {why}; create the model again from its recipe")

    return _blob_draft(blobs, ref, missing)


def draft_of(manifest: Manifest, store: ModelStore) -> Manifest | None:
    """The draft model a stored local model loads with, if its recipe names one."""
    ref = manifest.recipe.get("draft")
    if not isinstance(ref, str) or manifest.is_remote or manifest.is_embedding:
        return None
    return find_draft(ref, store.blobs, store.get)


def _blob_draft(blobs: Blobs, ref: str, error: Callable[[str], Exception]) -> Manifest:
    try:
        digest = parse_digest(ref)
    except Exception as exc:
        raise error(f"{ref!r} is not a digest (sha256:<64 hex digits>)") from exc
    path = blobs.path(digest)
    if not path.is_file():
        raise error(f"blob {ref[:19]}… is not in the store")
    size, info = _figures(path, path.stat().st_mtime_ns)
    return Manifest(name=f"draft {ref[:19]}", digest=digest, size=size, source="draft", info=info)


@lru_cache(maxsize=16)
def _figures(path: Path, _mtime: int) -> tuple[int, dict[str, Any]]:
    """Size and header summary of a stored draft: read once, not on every turn."""
    return path.stat().st_size, describe(validate_gguf(path))
