"""Resumable checkpoints of a training run, written atomically so a crash or a full disk keeps the last one.

A checkpoint holds the LoRA weights, the optimizer's state, the step reached, the random
state and the "before" figures, under a fingerprint of the base, the data and the settings:
the same command finds it and carries on; a changed command is told it would start over.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.atomic import atomic_write_bytes
from .data import Example
from .errors import TuneError

FILE = "checkpoint.pt"


def fingerprint(base_digest: str, settings: dict[str, Any], examples: list[Example]) -> str:
    """What makes two runs the same run: base weights, settings (but not how often to save), data."""
    digest = hashlib.sha256()
    same = {k: v for k, v in settings.items() if k not in ("checkpoint_every", "samples")}
    digest.update(json.dumps({"base": base_digest, "settings": same}, sort_keys=True).encode())
    for example in examples:
        digest.update(json.dumps([example.messages, example.text]).encode())
    return digest.hexdigest()


@dataclass
class Checkpoints:
    """The run's folder (COVE_HOME/tune/<name>) and the one checkpoint in it."""

    folder: Path
    run: str  # the fingerprint

    @property
    def path(self) -> Path:
        return self.folder / FILE

    def save(self, state: dict[str, Any]) -> None:
        """Write the checkpoint; DiskFull leaves the previous one as it was."""
        import torch

        buffer = io.BytesIO()
        torch.save({**state, "run": self.run}, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def load(self, restart: bool) -> dict[str, Any] | None:
        """The checkpoint of this same run, or None to start afresh."""
        import torch

        if not self.path.is_file():
            return None
        if restart:
            self.path.unlink()
            return None
        try:
            state: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a file damaged outside cove: say so rather than train over it
            raise TuneError(
                f"the checkpoint in {self.folder} cannot be read ({exc.__class__.__name__}); "
                "add --restart to start again"
            ) from exc
        if state.get("run") != self.run:
            raise TuneError(
                f"a checkpoint from a different run (other data, base or settings) is at step "
                f"{state.get('step')}: run the same command to resume it, or add --restart to start again"
            )
        return state

    def finished(self) -> None:
        """The run is done and stored: its folder is no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
