"""`create_pipeline`: wires the components; reads nothing, runs nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from components import base, impute, ingest, write_tfrecords
from pipeline.configs import PipelineConfig

DATA = "data"  # the name under which nodes receive the upstream data folder


@dataclasses.dataclass(frozen=True)
class Node:
    spec: base.ComponentSpec
    inputs: Mapping[str, str]  # input name -> producing node's name (or DATA)
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name


@dataclasses.dataclass(frozen=True)
class Pipeline:
    data_dir: Path
    output_dir: Path
    nodes: tuple[Node, ...]


def create_pipeline(config: PipelineConfig) -> Pipeline:
    nodes = (
        # Checked table of usable COVID-19 frontal X-rays and their observed labels.
        Node(ingest.SPEC, {"data": DATA}, {"frontal_views": list(config.ingest.frontal_views)}),
        # The study's RandomForest fills missing labels; CV report beside a baseline.
        Node(impute.SPEC, {"examples": "ingest"}, dataclasses.asdict(config.impute)),
        # Every usable image once, with observed/imputed labels, in verified shards.
        Node(write_tfrecords.SPEC, {"data": DATA, "examples": "ingest", "labels": "impute"},
             dataclasses.asdict(config.tfrecords)),
    )
    return Pipeline(Path(config.data_dir), Path(config.output_dir), nodes)
