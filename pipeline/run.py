"""`python -m pipeline.run`: the whole pipeline for one variant, from absl flags."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
from pathlib import Path

from absl import app, flags, logging

from components import export, report
from common.errors import PipelineError
from components import configs
from pipeline import local_runner
from pipeline.pipeline import create_pipeline

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", str(configs.SAMPLE_DATA_DIR),
                    "Folder in the layout of ieee8023/covid-chestxray-dataset (metadata.csv + images/).")
flags.DEFINE_string("output_dir", str(configs.DEFAULT_OUTPUT_DIR), "Where artifacts are written and reused.")
flags.DEFINE_enum("variant", "original_weights", list(configs.VARIANTS), "The study's variant to train.")
flags.DEFINE_enum("stop_after", None, list(configs.STAGES), "Stop after this stage.")
flags.DEFINE_integer("seed", 0, "Seed for imputation's forest, the folds, initialisation and batches.")
flags.DEFINE_integer("num_shards", configs.TFRecordConfig.num_shards, "TFRecord shards.")
flags.DEFINE_float("max_offset_days", configs.IngestConfig.max_offset_days,
                   "Keep only X-rays whose metadata offset (days since symptom onset or admission; negative = "
                   "before) is at most this; X-rays without an offset are left out. Default: all X-rays.")

# Training (issue #4); defaults live in configs.TrainConfig.
_T = configs.TrainConfig
flags.DEFINE_string("weights", None, "Pretrained body: torchvision .pth/.safetensors/.npz or Keras .weights.h5. "
                    "Default: none (training from scratch, which the run says).")
flags.DEFINE_enum("weights_mode", _T.weights_mode, ["auto", "strict", "partial"], "How --weights must match the body.")
flags.DEFINE_string("arch", _T.arch, "Architecture from models.ARCHITECTURES.")
flags.DEFINE_enum("split", _T.split, ["patient", "image"],
                  "patient: stratified group K-fold by patient; image: stratified K-fold over images (the study's).")
flags.DEFINE_integer("folds", _T.folds, "Cross-validation folds.")
flags.DEFINE_integer("epochs_frozen", _T.epochs_frozen, "One-cycle epochs with the body frozen.")
flags.DEFINE_integer("epochs_unfrozen", _T.epochs_unfrozen, "One-cycle epochs with the body unfrozen.")
flags.DEFINE_integer("batch_size", _T.batch_size, "Global batch size (whatever the number of replicas).")
flags.DEFINE_integer("lr_finder_steps", _T.lr_finder_steps, "Steps of each LR sweep (fastai: 100).")
flags.DEFINE_float("lr_finder_start", _T.lr_finder_start, "First learning rate of the LR sweep.")
flags.DEFINE_float("lr_finder_end", _T.lr_finder_end, "Last learning rate of the LR sweep.")
flags.DEFINE_float("lr_mult", _T.lr_mult, "Unfrozen: discriminative rates slice(lr/lr_mult, lr); 1 = one rate.")
flags.DEFINE_float("pct_start", _T.pct_start, "One-cycle: fraction of steps warming up.")
flags.DEFINE_float("div", _T.div, "One-cycle: initial lr = lr_max / div.")
flags.DEFINE_float("div_final", _T.div_final, "One-cycle: final lr = lr_max / div_final.")
flags.DEFINE_float("weight_decay", _T.weight_decay, "Decoupled weight decay (AdamW), not on BN/bias.")
flags.DEFINE_float("resample_target", _T.resample_target, "Fraction of deaths fed by *_resample variants.")
flags.DEFINE_boolean("recompute_batch_norm", _T.recompute_batch_norm,
                     "After training, set batch-norm moving statistics from the training images (precise BN); "
                     "off = the study's procedure.")
_A = configs.AugmentConfig
flags.DEFINE_enum("augment", _A.method, list(configs.AUGMENT_METHODS),
                  "fused: zoom+rotation+warp as one projective transform (fastai); keras_layers: Keras core layers.")
flags.DEFINE_float("max_zoom", _A.max_zoom, "Zoom in by up to this factor.")
flags.DEFINE_float("max_rotate", _A.max_rotate, "Rotate by up to this many degrees.")
flags.DEFINE_float("max_warp", _A.max_warp, "Perspective warp magnitude (fastai's max_warp).")
flags.DEFINE_float("max_lighting", _A.max_lighting, "Brightness change (fastai's max_lighting).")
flags.DEFINE_float("p_affine", _A.p_affine, "Probability of each of zoom, rotation, warp.")
flags.DEFINE_float("p_lighting", _A.p_lighting, "Probability of the brightness change.")
flags.DEFINE_integer("image_size", _T.image_size, "Training image size (pixels, square).")
flags.DEFINE_enum("precision", _T.precision, ["auto", "fp32", "bf16"],
                  "bf16 = mixed bfloat16; auto = bf16 on GPUs and AVX512-BF16/AMX CPUs, else fp32.")
flags.DEFINE_enum("strategy", _T.strategy, ["auto", "default", "mirrored", "multi_worker"],
                  "auto: MirroredStrategy on GPUs, default on CPU; multi_worker reads TF_CONFIG.")
flags.DEFINE_boolean("deterministic", _T.deterministic, "Enable TF op determinism (exact resume).")

# Evaluation and export (issue #5); defaults live in configs.EvaluateConfig / ExportConfig.
_E, _X = configs.EvaluateConfig, configs.ExportConfig
flags.DEFINE_float("threshold", _E.threshold, "Probability of death above which a case counts as 'died'.")
flags.DEFINE_integer("bootstrap_resamples", _E.bootstrap_resamples, "Bootstrap resamples for the 95% CIs.")
flags.DEFINE_integer("gradcam_images", _E.gradcam_images, "Validation images of each class shown with Grad-CAM.")
flags.DEFINE_integer("tta_views", _E.tta_views, "Test-time augmentation in evaluate: the plain view plus "
                     "tta_views - 1 training-augmented views, probabilities averaged; 0 = off.")
flags.DEFINE_string("serving_dir", None, "TF Serving model base folder (default: <output_dir>/serving).")
flags.DEFINE_string("model_name", _X.model_name, "Served model name (folder under --serving_dir).")
flags.DEFINE_float("bless_min_roc_auc", _X.bless_min_roc_auc,
                   "Push only if the evaluation's fold-mean ROC AUC is at least this.")
flags.DEFINE_string("export_members", _X.members, "'all': mean of the k fold models; an integer k: fold k alone.")


def config_from_flags() -> configs.PipelineConfig:
    return configs.PipelineConfig(
        data_dir=Path(FLAGS.data_dir),
        output_dir=Path(FLAGS.output_dir),
        variant=FLAGS.variant,
        ingest=configs.IngestConfig(max_offset_days=FLAGS.max_offset_days),
        impute=configs.ImputeConfig(seed=FLAGS.seed),
        tfrecords=configs.TFRecordConfig(num_shards=FLAGS.num_shards),
        train=configs.TrainConfig(**{
            field.name: FLAGS[field.name].value for field in dataclasses.fields(configs.TrainConfig)
            if field.name != "weights" and field.name in FLAGS},
            weights=str(Path(FLAGS.weights).resolve()) if FLAGS.weights else None,
            augmentation=configs.AugmentConfig(
                method=FLAGS.augment, max_zoom=FLAGS.max_zoom, max_rotate=FLAGS.max_rotate, max_warp=FLAGS.max_warp,
                max_lighting=FLAGS.max_lighting, p_affine=FLAGS.p_affine, p_lighting=FLAGS.p_lighting)),
        evaluate=configs.EvaluateConfig(threshold=FLAGS.threshold, bootstrap_resamples=FLAGS.bootstrap_resamples,
                                        seed=FLAGS.seed, gradcam_images=FLAGS.gradcam_images,
                                        tta_views=FLAGS.tta_views),
        export=configs.ExportConfig(serving_dir=Path(FLAGS.serving_dir).resolve() if FLAGS.serving_dir else None,
                                    model_name=FLAGS.model_name, bless_min_roc_auc=FLAGS.bless_min_roc_auc,
                                    threshold=FLAGS.threshold, members=FLAGS.export_members),
        provenance=provenance(),
    )


def provenance() -> tuple[tuple[str, str], ...]:
    """The exact command, seed and code version, for the report."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=configs.REPO_ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=configs.REPO_ROOT,
                           capture_output=True, text=True)
    return (("command", " ".join(["python", "-m", "pipeline.run", *sys.argv[1:]])),
            ("seed", str(FLAGS.seed)),
            ("git commit", (commit.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty.stdout.strip() else "")),
            ("machine", f"{platform.machine()}, {os.cpu_count()} CPU cores, TensorFlow {_tf_version()}"))


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__

def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines would bury the progress
    config = config_from_flags()
    if config.train.strategy == "multi_worker":  # must exist before TensorFlow runs any op
        from components.train import strategy
        strategy.get_strategy("multi_worker")
    if not config.train.weights:
        print("note: no --weights given: the classifier trains from scratch (no pretrained body)")
    try:
        artifacts = local_runner.run_pipeline(create_pipeline(config), FLAGS.stop_after)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Artifacts: {', '.join(f'{k}={v.path}' for k, v in artifacts.items() if k != 'data')}")
    if "report" in artifacts:
        decision = export.read_export(artifacts["export"])
        where = decision["pushed_to"] or f"{artifacts['export'].path / export.SAVED_MODEL_DIR} (not pushed: {decision['reason']})"
        print(f"Report: {artifacts['report'].path / report.REPORT_NAME}\nSavedModel: {where}")
    return 0

if __name__ == "__main__":
    app.run(main)
