"""Measured on this machine: each load's peak memory and each answer's speeds, kept in cove's
database so `cove fit` predicts from what it saw, and can say how far its guesses were."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any

from .db import Database, db_path, many
from .migrations import migrate
from .times import now

#: The latest runs a model's figures are the median of: recent enough to follow an upgrade.
RECENT = 20
KINDS = ("load", "answer")


@dataclass(frozen=True)
class Measurement:
    """One load (peak memory once loaded) or one answer (its speeds, and the peak after it)."""

    model: str
    digest: str
    kind: str
    num_ctx: int | None = None
    parallel: int | None = None
    kv_type: str | None = None
    threads: int | None = None
    peak_bytes: int | None = None
    predicted_bytes: int | None = None
    decode_tps: float | None = None
    predicted_decode_tps: float | None = None
    prompt_tps: float | None = None
    tokens: int | None = None
    load_average: float | None = None
    #: The formula that made `predicted_decode_tps` (engine/planner.DECODE_MODEL).
    decode_model: int | None = None


COLUMNS = tuple(f.name for f in fields(Measurement))


@dataclass(frozen=True)
class Measured:
    """A model's recent measurements, summed up as medians."""

    model: str
    digest: str
    runs: int
    peak_bytes: int | None
    decode_tps: float | None
    prompt_tps: float | None
    num_ctx: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _median(values: list[Any]) -> Any:
    known = [v for v in values if v]
    return statistics.median(known) if known else None


class Measurements:
    """The measurements table of one cove database (several processes may share it)."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path)
        migrate(self._db)

    @classmethod
    def of_home(cls, home: Path) -> Measurements:
        return cls(db_path(home))

    @classmethod
    def if_any(cls, home: Path) -> Measurements | None:
        """The home's measurements when it has a database; a look never creates one."""
        return cls(db_path(home)) if db_path(home).exists() else None

    def record(self, m: Measurement) -> None:
        if m.kind not in KINDS:
            raise ValueError(f"a measurement is one of {KINDS}, not {m.kind!r}")
        values = tuple(getattr(m, name) for name in COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        with self._db.write() as conn:
            conn.execute(
                f"INSERT INTO measurements (at, {', '.join(COLUMNS)}) VALUES (?, {marks})", (now(), *values)
            )

    def of(self, digest: str, num_ctx: int | None = None) -> Measured | None:
        """The model's recent figures; memory only from runs at `num_ctx` when given (the KV
        cache grows with it), speeds from every run."""
        with self._db.read() as conn:
            rows = many(
                conn,
                "SELECT model, kind, num_ctx, peak_bytes, decode_tps, prompt_tps FROM measurements "
                "WHERE digest = ? ORDER BY id DESC LIMIT ?",
                (digest, RECENT * 2),
            )
        if not rows:
            return None
        peaks = [r[3] for r in rows if num_ctx is None or r[2] == num_ctx]
        answers = [r for r in rows if r[1] == "answer"]
        return Measured(
            model=rows[0][0],
            digest=digest,
            runs=len(answers) or len(rows),  # answers; a model only ever loaded counts its loads
            peak_bytes=int(_median(peaks)) if _median(peaks) else None,
            decode_tps=_median([r[4] for r in answers]),
            prompt_tps=_median([r[5] for r in answers]),
            num_ctx=num_ctx if num_ctx is not None else rows[0][2],
        )

    def decode_efficiency(
        self, decode_model: int, *, besides: str | None = None, threads: int | None = None
    ) -> float | None:
        """Measured over predicted decode speed, the median over recent answers of every
        model (but the digest `besides`) that the formula `decode_model` predicted: the factor
        that carries what this machine showed to models it has not run. Predicted: the
        planner's own figure, before any such factor. Another formula's ratios would scale this
        one's by its errors: a store checked before an upgrade read smollm2:135m 19-28% fast.
        With `threads`, the answers on that many engine threads, where there are any: one
        thread and two are different regimes (on a 2.25 GHz Zen 2 one thread's arithmetic
        held gemma3:270m to 34 tokens/s, 0.68x the prediction, while two read it at 0.98x), so
        a factor from one would mislead the other."""
        query = (
            "SELECT decode_tps, predicted_decode_tps FROM measurements WHERE kind = 'answer' "
            "AND decode_tps > 0 AND predicted_decode_tps > 0 AND digest IS NOT ? "
            "AND decode_model = ? {} ORDER BY id DESC LIMIT ?"
        )
        with self._db.read() as conn:
            rows = []
            if threads is not None:
                rows = many(
                    conn, query.format("AND threads = ?"), (besides, decode_model, threads, RECENT * 5)
                )
            if not rows:
                rows = many(conn, query.format(""), (besides, decode_model, RECENT * 5))
        ratios = [measured / predicted for measured, predicted in rows]
        return round(statistics.median(ratios), 3) if ratios else None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Measurements:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
