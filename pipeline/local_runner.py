"""Runs a pipeline's nodes in order in this process, reusing cached artifacts."""

from __future__ import annotations

import functools
import time
from typing import Callable

from common import files, pseudonym
from components import base, data_source
from pipeline.pipeline import DATA, Pipeline

RUN_RECORD = "latest_run.json"
SHA256_CACHE = "data_source/sha256_cache.json"  # image hashes by (path, size, mtime), under --output_dir


def run_pipeline(
    pipeline: Pipeline, stop_after: str | None = None, log: Callable[[str], None] = print
) -> dict[str, base.Artifact]:
    """Execute nodes up to and including `stop_after`; return each node's artifact."""
    key = functools.partial(pseudonym.load_or_create_key, pipeline.pseudonym_key, pipeline.output_dir, log)
    artifacts = {DATA: data_source.import_data_dir(pipeline.data_dir, pipeline.output_dir / SHA256_CACHE, key)}
    pipeline.output_dir.mkdir(parents=True, exist_ok=True)
    total = len(pipeline.nodes)
    for position, node in enumerate(pipeline.nodes, start=1):
        inputs = {name: artifacts[source] for name, source in node.inputs.items()}
        log(f"[{position}/{total}] {node.name} ...")
        started = time.time()
        artifact, cached = base.execute(node.spec, inputs, node.params, pipeline.output_dir)
        how = "cached" if cached else f"done in {time.time() - started:.1f}s"
        log(f"[{position}/{total}] {node.name}: {how} -> {artifact.path}")
        if node.spec.summary:
            log(f"    {node.spec.summary(artifact)}")
        artifacts[node.name] = artifact
        if node.name == stop_after:
            break
    files.write_json_atomic(pipeline.output_dir / RUN_RECORD, {
        "data_dir": str(pipeline.data_dir),
        "artifacts": {name: str(a.path) for name, a in artifacts.items() if name != DATA},
    })
    return artifacts
