"""`create_pipeline`: wires the components; reads nothing, runs nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from common import pseudonym
from components import base, export, impute, ingest, report, write_tfrecords
from components.evaluate import component as evaluate
from components.train import component as train
from components.configs import VARIANTS, PipelineConfig

DATA = "data"  # the name under which nodes receive the data folder (upstream collection or manifest)


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
    pseudonym_key: Path = pseudonym.DEFAULT_KEY_PATH  # read by the runner only for a manifest


def create_pipeline(config: PipelineConfig) -> Pipeline:
    nodes = (
        # Checked table of usable COVID-19 frontal X-rays and their observed labels.
        Node(ingest.SPEC, {"data": DATA}, {"frontal_views": list(config.ingest.frontal_views),
                                            "max_offset_days": config.ingest.max_offset_days}),
        # The study's RandomForest fills missing labels; CV report beside a baseline.
        Node(impute.SPEC, {"examples": "ingest"}, dataclasses.asdict(config.impute)),
        # Every usable image once, with observed/imputed labels, in verified shards.
        Node(write_tfrecords.SPEC, {"data": DATA, "examples": "ingest", "labels": "impute"},
             dataclasses.asdict(config.tfrecords)),
        # The study's schedule, cross-validated, for one variant (labels x rebalancing).
        Node(train.SPEC, {"tfrecords": "tfrecords"},
             {**dataclasses.asdict(config.train), "variant": config.variant,
              "labels": VARIANTS[config.variant][0], "rebalance": VARIANTS[config.variant][1]}),
        # The study's metrics on out-of-fold predictions, bootstrap CIs, figures, Grad-CAM; age/sex baseline.
        Node(evaluate.SPEC, {"train": "train", "tfrecords": "tfrecords", "examples": "ingest"},
             dataclasses.asdict(config.evaluate)),
        # One SavedModel averaging the fold models, with its model card; pushed to TF Serving's layout under
        # the model name when blessed, else under the demo name, marked DEMO (nowhere with --nopush_demo).
        # Recalibrated on the out-of-fold predictions inside the graph; the card holds the development case mix.
        Node(export.SPEC, {"model": "train", "evaluation": "evaluate", "data": DATA},
             dataclasses.asdict(config.export)),
        # One self-contained report.html: data, imputation, metrics beside the study, figures, provenance.
        Node(report.SPEC, {"ingest": "ingest", "impute": "impute", "train": "train", "evaluate": "evaluate",
                           "export": "export"}, {"provenance": dict(config.provenance)}),
    )
    return Pipeline(Path(config.data_dir), Path(config.output_dir), nodes, Path(config.pseudonym_key))
