"""The errors a fine-tuning run can meet: each says what went wrong and what to do instead."""

from __future__ import annotations

from ..errors import BadRequest, CoveError


class TuneError(BadRequest):
    """A fine-tuning request cove cannot carry out as asked."""


class BadTrainingData(TuneError):
    """Training data that is missing, unreadable, or too little once bad lines are left out."""


class CannotTrain(TuneError):
    """A base model whose architecture the trainer cannot load from its GGUF."""


class TooBigForMachine(TuneError):
    """A run that needs more memory (or time) than this machine has; the message says what would fit."""

    status = 507


class TuneExtraMissing(CoveError):
    """torch, transformers or peft are not installed."""

    status = 501
