"""Every name, path and default of the pipeline in one place, as typed dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = REPO_ROOT / "sample_data" / "covid-chestxray-sample"
DEFAULT_OUTPUT_DIR = REPO_ROOT / "runs"

# Stages in pipeline order; `--stop_after` takes one of these names.
STAGES = ("ingest", "impute", "tfrecords", "train", "evaluate", "export")
# The stages this version implements; the others belong to later issues.
IMPLEMENTED_STAGES = ("ingest", "impute", "tfrecords")
PENDING_STAGES_ISSUE = {"train": "#4 (Training)", "evaluate": "#5 (Evaluate, report, export)",
                        "export": "#5 (Evaluate, report, export)"}

# The study's six variants: which labels (observed only / observed + imputed)
# and which rebalancing (none / class weights / rejection resampling).
VARIANTS = {
    "original": ("observed", "none"),
    "original_weights": ("observed", "class_weights"),
    "original_resample": ("observed", "resample"),
    "imputed": ("observed+imputed", "none"),
    "imputed_weights": ("observed+imputed", "class_weights"),
    "imputed_resample": ("observed+imputed", "resample"),
}

FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "AP semi erect", "AP Erect")


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    frontal_views: tuple[str, ...] = FRONTAL_VIEWS


@dataclasses.dataclass(frozen=True)
class ImputeConfig:
    seed: int = 0
    n_estimators: int = 100
    cv_folds: int = 5


@dataclasses.dataclass(frozen=True)
class TFRecordConfig:
    num_shards: int = 4


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data_dir: Path = SAMPLE_DATA_DIR
    output_dir: Path = DEFAULT_OUTPUT_DIR
    variant: str = "original_weights"
    ingest: IngestConfig = IngestConfig()
    impute: ImputeConfig = ImputeConfig()
    tfrecords: TFRecordConfig = TFRecordConfig()

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r} is not one of {', '.join(VARIANTS)}")
