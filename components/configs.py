"""Every name, path and default of the pipeline in one place, as typed dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = REPO_ROOT / "sample_data" / "covid-chestxray-sample"
DEFAULT_OUTPUT_DIR = REPO_ROOT / "runs"

# Stages in pipeline order; `--stop_after` takes one of these names.
STAGES = ("ingest", "impute", "tfrecords", "train", "evaluate", "export", "report")

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
    max_offset_days: float | None = None  # keep X-rays taken at most this many days in; None keeps all


@dataclasses.dataclass(frozen=True)
class ImputeConfig:
    seed: int = 0
    n_estimators: int = 100
    cv_folds: int = 5


@dataclasses.dataclass(frozen=True)
class TFRecordConfig:
    num_shards: int = 4


AUGMENT_METHODS = ("fused", "keras_layers", "none")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The training augmentation and its strengths (components/train/augment.py applies them)."""

    method: str = "fused"      # 'fused' (fastai-like, one interpolation), 'keras_layers', 'none'
    max_zoom: float = 1.1      # zoom in by a factor uniform in [1, max_zoom], anywhere in the image
    max_rotate: float = 10.0   # degrees, uniform in [-max_rotate, max_rotate]
    max_warp: float = 0.2      # fastai's keystone warp magnitude, uniform in [-max_warp, max_warp] per axis
    max_lighting: float = 0.2  # brightness change in logit space, uniform in [0.5 +- max_lighting]
    p_affine: float = 0.75     # probability of each of zoom, rotation, warp
    p_lighting: float = 0.75   # probability of the brightness change

    def __post_init__(self):
        if self.method not in AUGMENT_METHODS:
            raise ValueError(f"augmentation method {self.method!r} not in {AUGMENT_METHODS}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The study's schedule and its settings (components/train/fold.py documents each)."""

    arch: str = "resnet18"
    image_size: int = 224
    weights: str | None = None          # a torchvision checkpoint; None trains from scratch
    weights_mode: str = "auto"
    split: str = "patient"              # 'patient' (default) or 'image' (the study's protocol)
    folds: int = 5
    seed: int = 0
    epochs_frozen: int = 5
    epochs_unfrozen: int = 30
    batch_size: int = 64                # global batch, whatever the number of replicas
    lr_finder_steps: int = 100          # fastai's; shorter sweeps are noisy (bench/results/lr_sweep_length.txt)
    lr_finder_start: float = 1e-7
    lr_finder_end: float = 10.0
    lr_mult: float = 100.0              # discriminative rates slice(lr / lr_mult, lr) when unfrozen
    pct_start: float = 0.25
    div: float = 25.0
    div_final: float = 1e5
    weight_decay: float = 0.01
    resample_target: float = 0.5        # fraction of deaths fed under *_resample
    recompute_batch_norm: bool = False  # precise BN after training (components/train/batch_norm_stats.py)
    augmentation: AugmentConfig = AugmentConfig()
    precision: str = "auto"             # 'bf16' where the hardware has it, else 'fp32'
    strategy: str = "auto"
    deterministic: bool = True
    eval_batch_size: int = 64

    def __post_init__(self):
        # A stage's params arrive as plain dicts (dataclasses.asdict): rebuild the nested config.
        if isinstance(self.augmentation, dict):
            object.__setattr__(self, "augmentation", AugmentConfig(**self.augmentation))


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    threshold: float = 0.5              # probability of death above which a case is called "died"
    bootstrap_resamples: int = 1000     # 95% CIs; patients are resampled under --split=patient
    seed: int = 0
    gradcam_images: int = 2             # validation images of each class shown with Grad-CAM
    tta_views: int = 0                  # test-time augmentation: 1 plain + tta_views - 1 augmented views; 0 = off


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    serving_dir: Path | None = None     # None -> <output_dir>/serving
    model_name: str = "covid_cxr_mortality"
    bless_min_roc_auc: float = 0.7      # push only if the evaluation's fold-mean ROC AUC reaches this
    threshold: float = 0.5              # served class = 1 (died) when probability > threshold
    members: str = "all"                # 'all' = mean of the k fold models; 'k' = fold k alone


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data_dir: Path = SAMPLE_DATA_DIR
    output_dir: Path = DEFAULT_OUTPUT_DIR
    variant: str = "original_weights"
    ingest: IngestConfig = IngestConfig()
    impute: ImputeConfig = ImputeConfig()
    tfrecords: TFRecordConfig = TFRecordConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()
    # What the report prints under "How this was made": command line, seed, git commit.
    provenance: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r} is not one of {', '.join(VARIANTS)}")
