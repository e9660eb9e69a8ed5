"""What the engine tests share: the bundled model loaded straight into the in-process engine."""

from __future__ import annotations

from pathlib import Path

from cove.engine.base import LoadSpec
from cove.engine.llamacpp import LlamaCppModel
from cove.store.models import ModelStore


def load_gemma(model_home: Path, num_ctx: int) -> LlamaCppModel:
    """gemma3:270m with its recipe's template, as the scheduler would load it (the caller closes it)."""
    store = ModelStore(model_home)
    manifest = store.get("gemma3:270m")
    spec = LoadSpec(
        name=manifest.name,
        model_path=store.model_path(manifest),
        digest=manifest.digest,
        num_ctx=num_ctx,
        template=manifest.recipe_obj().template,
    )
    return LlamaCppModel(spec)
