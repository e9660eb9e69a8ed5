"""Whether every node of a Ray cluster can read a model's files at the path this store has them.

Each Serve replica loads its model from the path its spec names, on whichever node Ray placed
it, so on a cluster cove's store must sit on a folder shared at the same path on every node (or
the files be copied there). Ray does not ship files this big to replicas (a runtime_env
`working_dir` is capped at 512 MiB by default, and the object store would hold the model in
memory on every node), so `cove ray serve` checks each alive node with a small task pinned to it
before deploying, and names those that lack a file, instead of leaving replicas to fail and
restart forever.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..engine.base import LoadSpec

#: How long the whole check may take: a node that cannot run a task by then is named as such.
CHECK_TIMEOUT_S = 60.0


def files_of(spec: LoadSpec) -> dict[str, int]:
    """The files a replica of `spec` opens (model, adapter, draft model), with their sizes."""
    paths = [spec.model_path, spec.adapter_path, spec.draft_path]
    return {str(p): Path(p).stat().st_size for p in paths if p}


def missing_here(files: dict[str, int]) -> list[str]:
    """The files absent from this machine, or of another size than the store's (another file)."""
    missing = []
    for path, size in files.items():
        try:
            found = os.stat(path).st_size
        except OSError:
            missing.append(f"{path} is missing")
            continue
        if found != size:
            missing.append(f"{path} has {found} bytes, not {size}")
    return missing


@ray.remote(num_cpus=0)
def _check(files: dict[str, int]) -> list[str]:
    return missing_here(files)


def nodes_lacking(files: dict[str, int], timeout_s: float = CHECK_TIMEOUT_S) -> list[str]:
    """One line per alive node that cannot read the files as this store has them."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    checks = {
        _where(node): _check.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(files)
        for node in nodes
    }
    ready, _ = ray.wait(list(checks.values()), num_returns=len(checks), timeout=timeout_s)
    lacking = []
    for where, ref in checks.items():
        if ref not in ready:
            lacking.append(f"{where}: did not answer within {timeout_s:g} s")
            continue
        found: list[str] = ray.get(ref)
        if found:
            lacking.append(f"{where}: {'; '.join(found)}")
    return lacking


def _where(node: dict[str, Any]) -> str:
    return f"node {node.get('NodeManagerAddress') or node['NodeID'][:12]}"
