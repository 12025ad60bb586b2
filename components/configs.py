"""Every name, path and default of the pipeline in one place, as typed dataclasses.

A field made with `flag(...)` is also a flag of `python -m pipeline.run`: its name, default, help and
choices are stated here once, and pipeline/flags.py defines the flags and builds the config from them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common import pseudonym

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = REPO_ROOT / "sample_data" / "covid-chestxray-sample"
DICOM_SAMPLE_DIR = REPO_ROOT / "sample_data" / "covid-chestxray-dicom"  # its DICOM twin, with a manifest
DEFAULT_OUTPUT_DIR = REPO_ROOT / "runs"
# On the embedded sample (42 images, 19 patients) or its DICOM twin, flags the user does not give take these values instead of
# the study's: a fold trains on ~28 images, one full-data step per sweep step, so 100-step LR sweeps were
# 80% of the run while the sample is for seeing the pipeline work, not for numbers. The run says so.
SAMPLE_RUN_DEFAULTS = {"folds": 3, "lr_finder_steps": 30}

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


def flag(default, help: str, *, name: str | None = None, choices=None, absolute: bool = False,
         in_fold_key: bool = True):
    """A field that is also a command-line flag (pipeline/flags.py defines it): `--<name>` (the field's name
    by default) with this default and help, an enum of `choices` if given; `absolute`: a path resolved
    against the working directory. Fields sharing one flag (e.g. --seed) give the same name and help.
    `in_fold_key=False` (train settings only): the setting cannot change what a fold computes, so changing it
    reuses trained folds (components/train/component.py: `fold_key`)."""
    return dataclasses.field(default=default, metadata={"flag": name, "help": help, "choices": choices,
                                                        "absolute": absolute, "in_fold_key": in_fold_key})


def outside_fold_key(default):
    """A train setting that is not a flag and cannot change what a fold computes (see `flag`)."""
    return dataclasses.field(default=default, metadata={"in_fold_key": False})


def fold_key_fields(config_class) -> tuple[str, ...]:
    """The fields of a train config that name a fold's work (every field unless marked otherwise)."""
    return tuple(field.name for field in dataclasses.fields(config_class) if field.metadata.get("in_fold_key", True))


SEED_HELP = "Seed for imputation's forest, the folds, initialisation and batches."
IMPUTATION_TREES_HELP = ("Trees of the imputation forest: the impute stage's (its report and labels.csv) and the one "
                         "the imputed variants fit inside each training fold.")
THRESHOLD_HELP = "Probability of death at or above which a case counts as 'died'."


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    frontal_views: tuple[str, ...] = FRONTAL_VIEWS
    max_offset_days: float | None = flag(
        None, "Keep only X-rays whose metadata offset (days since symptom onset or admission; negative = "
        "before) is at most this; X-rays without an offset are left out. Default: all X-rays.")


@dataclasses.dataclass(frozen=True)
class ImputeConfig:
    seed: int = flag(0, SEED_HELP)
    n_estimators: int = flag(100, IMPUTATION_TREES_HELP, name="imputation_trees")
    cv_folds: int = 5


TFRECORD_WRITERS = ("local", "beam")


@dataclasses.dataclass(frozen=True)
class TFRecordConfig:
    num_shards: int = flag(4, "TFRecord shards.")
    # Both write the same bytes (tests/tfrecords/test_beam_writer.py).
    writer: str = flag("local", "local: in this process; beam: an Apache Beam pipeline on --beam_runner "
                       "(image reading spread over its workers).", name="tfrecord_writer", choices=TFRECORD_WRITERS)
    # Beam 2.77's DirectRunner first tries to download the Prism runner from GitHub; FnApiRunner is the
    # in-process engine it then falls back to.
    beam_runner: str = flag("FnApiRunner", "Beam runner of --tfrecord_writer=beam: FnApiRunner (in this process), "
                            "DataflowRunner, FlinkRunner, SparkRunner, PortableRunner, ...")
    beam_options: str = flag("", "More Beam pipeline options for --tfrecord_writer=beam, as one string, e.g. "
                             "'--project=p --region=r --temp_location=gs://b/tmp' (BUILD.md, \"Beam\").")

    def __post_init__(self):
        if self.writer not in TFRECORD_WRITERS:
            raise ValueError(f"tfrecord writer {self.writer!r} not in {TFRECORD_WRITERS}")


AUGMENT_METHODS = ("fused", "keras_layers", "none")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The training augmentation and its strengths (images/augment.py applies them)."""

    method: str = flag("fused", "fused: zoom+rotation+warp as one projective transform (fastai); "
                       "keras_layers: Keras core layers.", name="augment", choices=AUGMENT_METHODS)
    # Zoom in by a factor uniform in [1, max_zoom], anywhere in the image.
    max_zoom: float = flag(1.1, "Zoom in by up to this factor.")
    # Degrees, uniform in [-max_rotate, max_rotate].
    max_rotate: float = flag(10.0, "Rotate by up to this many degrees.")
    # fastai's keystone warp magnitude, uniform in [-max_warp, max_warp] per axis.
    max_warp: float = flag(0.2, "Perspective warp magnitude (fastai's max_warp).")
    # Brightness change in logit space, uniform in [0.5 +- max_lighting].
    max_lighting: float = flag(0.2, "Brightness change (fastai's max_lighting).")
    p_affine: float = flag(0.75, "Probability of each of zoom, rotation, warp.")
    p_lighting: float = flag(0.75, "Probability of the brightness change.")

    def __post_init__(self):
        if self.method not in AUGMENT_METHODS:
            raise ValueError(f"augmentation method {self.method!r} not in {AUGMENT_METHODS}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The study's schedule and its settings (components/train/fold.py documents each).

    A fold's work folder is named by its settings, except those marked `in_fold_key=False`: how it is run
    (strategy, checkpoints, memory), what names it apart already (the weights file, by its sha256; the split,
    folds, repeats and site pooling, by the fold's own rows) (components/train/component.py: `fold_key`)."""

    arch: str = flag("resnet18", "Architecture from models.ARCHITECTURES.")
    method: str = flag("fine_tune", "fine_tune: the study's schedule; linear_probe: L2 logistic regression on the "
                       "frozen body's pooled stage 1-3 features, C by an inner patient-grouped CV of each training "
                       "fold (components/train/linear_probe.py); lp_ft: that probe as the head of stages 1-3, then "
                       "the unfrozen phase (LR finder + one-cycle) with batch norm frozen in inference mode.",
                       choices=("fine_tune", "linear_probe", "lp_ft"))
    image_size: int = flag(224, "Training image size (pixels, square).")
    weights: str | None = flag(None, "Pretrained body: torchvision .pth/.safetensors/.npz or Keras .weights.h5. "
                               "Default: none (training from scratch, which the run says).", absolute=True,
                               in_fold_key=False)
    weights_mode: str = flag("auto", "How --weights must match the body.", choices=("auto", "strict", "partial"))
    split: str = flag("patient", "patient: stratified group K-fold by patient; image: stratified K-fold over images "
                      "(the study's); site: leave one site out (internal-external validation), sites with fewer "
                      "than --min_site_patients pooled as 'other sites'.", choices=("patient", "image", "site"),
                      in_fold_key=False)
    folds: int = flag(5, "Cross-validation folds (ignored by --split=site: one fold per site group).",
                      in_fold_key=False)
    # sources/origin.py's MIN_SITE_PATIENTS (not imported: sources/ loads TensorFlow; a test checks they agree).
    # Outside the fold key: the fold's rows are in its key already.
    min_site_patients: int = flag(5, "--split=site: a site with fewer patients with an "
                                  "observed label than this is pooled into one 'other sites' fold.",
                                  in_fold_key=False)
    # Repeat 0 is the single split; each repeat trains `folds` more fold models (components/train/splits.py).
    repeats: int = flag(1, "Repeated cross-validation: the folds drawn anew this many times, with seeds derived "
                        "from --seed (repeat 0 = the single split); evaluate adds the mean over repeats.",
                        in_fold_key=False)
    seed: int = flag(0, SEED_HELP)
    # Outside the fold key: the labels it gives a fold's rows are in the key already.
    imputation_trees: int = flag(100, IMPUTATION_TREES_HELP, in_fold_key=False)
    # Targets, never inputs: they are outcome-adjacent (components/train/aux_targets.py).
    aux_targets: str = flag("", "Comma-separated clinical flags (went_icu, intubation_present, "
                            "needed_supplemental_O2, extubated) each trained as an extra head beside death, its "
                            "loss masked where unknown; images with one of them but no survival label join every "
                            "training fold. Only death is evaluated and served. Default: none.")
    epochs_frozen: int = flag(5, "One-cycle epochs with the body frozen.")
    epochs_unfrozen: int = flag(30, "One-cycle epochs with the body unfrozen.")
    batch_size: int = flag(64, "Global batch size (whatever the number of replicas).")
    # Shorter sweeps are noisy (bench/results/lr_sweep_length.txt).
    lr_finder_steps: int = flag(100, "Steps of each LR sweep (fastai: 100).")
    lr_finder_start: float = flag(1e-7, "First learning rate of the LR sweep.")
    lr_finder_end: float = flag(10.0, "Last learning rate of the LR sweep.")
    lr_mult: float = flag(100.0, "Unfrozen: discriminative rates slice(lr/lr_mult, lr); 1 = one rate.")
    pct_start: float = flag(0.25, "One-cycle: fraction of steps warming up.")
    div: float = flag(25.0, "One-cycle: initial lr = lr_max / div.")
    div_final: float = flag(1e5, "One-cycle: final lr = lr_max / div_final.")
    weight_decay: float = flag(0.01, "Decoupled weight decay (AdamW), not on BN/bias.")
    resample_target: float = flag(0.5, "Fraction of deaths fed by *_resample variants.")
    # Precise BN: components/train/batch_norm_stats.py.
    recompute_batch_norm: bool = flag(False, "After training, set batch-norm moving statistics from the training "
                                      "images (precise BN); off = the study's procedure.")
    augmentation: AugmentConfig = AugmentConfig()
    precision: str = flag("auto", "bf16 = mixed bfloat16; auto = bf16 on GPUs and AVX512-BF16/AMX CPUs, else fp32.",
                          choices=("auto", "fp32", "bf16"))
    strategy: str = flag("auto", "auto: MirroredStrategy on GPUs, default on CPU; multi_worker reads TF_CONFIG.",
                         choices=("auto", "default", "mirrored", "multi_worker"), in_fold_key=False)
    deterministic: bool = flag(True, "Enable TF op determinism (exact resume).", in_fold_key=False)
    memory_budget_gb: float = flag(8.0, "Decoded training images (float32) up to this size stay in memory; past it "
                                   "they are streamed from the TFRecords and decoded on every pass.",
                                   in_fold_key=False)
    shuffle_buffer: int = flag(10_000, "Rows in the shuffle buffer of streamed images (memory: this many encoded "
                               "images); at least the rows of a fold, streaming feeds the in-memory batches.",
                               in_fold_key=False)
    checkpoint_every_s: float = flag(60.0, "Least seconds between a fold's resume checkpoints (a phase's last epoch "
                                     "always writes one; 0 = every epoch). A kill re-runs the epochs since the last.",
                                     in_fold_key=False)
    parallel_folds: int = flag(1, "Folds trained side by side in this many processes on this machine (each fold "
                               "under a lock, so machines sharing --output_dir split the folds too).",
                               in_fold_key=False)
    eval_batch_size: int = outside_fold_key(64)

    def __post_init__(self):
        if self.repeats < 1:
            raise ValueError(f"--repeats must be at least 1, not {self.repeats}")
        if self.split == "site" and self.repeats > 1:
            raise ValueError("--split=site leaves each site out once: there is nothing to draw again, so --repeats "
                             "must be 1")
        # A stage's params arrive as plain dicts (dataclasses.asdict): rebuild the nested config.
        if isinstance(self.augmentation, dict):
            object.__setattr__(self, "augmentation", AugmentConfig(**self.augmentation))
        if self.parallel_folds < 1:
            raise ValueError(f"--parallel_folds must be at least 1, not {self.parallel_folds}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"--shuffle_buffer must be at least 1, not {self.shuffle_buffer}")
        if self.memory_budget_gb < 0 or self.checkpoint_every_s < 0:
            raise ValueError(f"--memory_budget_gb and --checkpoint_every_s must not be negative, not "
                             f"{self.memory_budget_gb:g} and {self.checkpoint_every_s:g}")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    threshold: float = flag(0.5, THRESHOLD_HELP)
    # Patients are resampled under --split=patient.
    bootstrap_resamples: int = flag(1000, "Bootstrap resamples for the 95% CIs.")
    seed: int = flag(0, SEED_HELP)
    gradcam_images: int = flag(2, "Validation images of each class shown with Grad-CAM.")
    tta_views: int = flag(0, "Test-time augmentation in evaluate: the plain view plus tta_views - 1 "
                          "training-augmented views, probabilities averaged; 0 = off.")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    serving_dir: Path | None = flag(None, "TF Serving model base folder (default: <output_dir>/serving).",
                                    absolute=True)
    model_name: str = flag("covid_cxr_mortality", "Served model name (folder under --serving_dir); only a blessed "
                           "model is pushed to it.")
    # A model that is not blessed (the sample run, random weights) is served under this name only.
    demo_model_name: str = flag("covid_cxr_mortality_demo", "Where a model that is not blessed is pushed, marked "
                                "'DEMO - not blessed for use', when --push_demo; must differ from --model_name.")
    push_demo: bool = flag(True, "Push a model that is not blessed to --demo_model_name (never to --model_name), so "
                           "every run ends with a servable model; --nopush_demo pushes only blessed models.")
    bless_min_roc_auc: float = flag(0.7, "Push to --model_name only if the lower end of the evaluation's 95% "
                                    "bootstrap interval of the pooled out-of-fold ROC AUC (with --repeats > 1: of "
                                    "the mean over repeats) is at least this; a point estimate is not evidence "
                                    "enough.")
    # Logistic recalibration of the out-of-fold predictions, applied inside the served graph (components/export.py).
    recalibrate: bool = flag(True, "Fit logistic recalibration on the logit of the out-of-fold probabilities and "
                             "serve recalibrated probabilities (the threshold then applies to them); skipped, with "
                             "the reason in the model card, when the fit fails or its slope is not positive. "
                             "--norecalibrate serves the plain ensemble mean.")
    # Served class = 1 (died) at probability >= threshold (common.decision).
    threshold: float = flag(0.5, THRESHOLD_HELP)
    members: str = flag("all", "'all': mean of the k fold models; an integer k: fold k alone.",
                        name="export_members")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data_dir: Path = flag(SAMPLE_DATA_DIR, "Folder in the layout of ieee8023/covid-chestxray-dataset "
                          "(metadata.csv + images/), or holding your own manifest.csv (docs/data.md).")
    # Read only for a manifest; never inside --output_dir (common/pseudonym.py).
    pseudonym_key: Path = flag(pseudonym.DEFAULT_KEY_PATH, "With a manifest: the key of the patient and image "
                               "pseudonyms, kept outside --output_dir; created if missing.")
    output_dir: Path = flag(DEFAULT_OUTPUT_DIR, "Where artifacts are written and reused.")
    variant: str = flag("original_weights", "The study's variant to train.", choices=tuple(VARIANTS))
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
        if self.export.serving_dir is None:  # the default: beside the run's artifacts
            object.__setattr__(self, "export", dataclasses.replace(self.export,
                                                                   serving_dir=Path(self.output_dir) / "serving"))
