"""Timestamps as the database keeps them: UTC ISO-8601 text, so sorting text sorts by time."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    return to_text(datetime.now(UTC))


def to_text(moment: datetime) -> str:
    """Normalise to UTC with microseconds so every stored value has the same shape."""
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a naive datetime from a person means their local time
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)


def from_epoch(seconds: float) -> str:
    return to_text(datetime.fromtimestamp(seconds, UTC))


def normalise(text: str) -> str:
    """A timestamp from a file, in our shape; naive ones are taken as UTC. Raises ValueError."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_text(moment)
