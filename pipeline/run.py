"""`python -m pipeline.run`: the whole pipeline for one variant, from absl flags."""

from __future__ import annotations

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # first: before any import below loads TensorFlow

import os
import platform
import sys
from pathlib import Path

from absl import app, flags, logging

from components import export, report
from common.errors import PipelineError
from components import configs
from pipeline import flags as pipeline_flags, local_runner
from pipeline.pipeline import create_pipeline
from pipeline.provenance import git_commit
from serving import push

FLAGS = flags.FLAGS
pipeline_flags.define_flags(FLAGS)  # one flag per configs.flag(...) field: --data_dir, --variant, --seed, ...
flags.adopt_module_key_flags(pipeline_flags)  # listed by --help as this module's own
flags.DEFINE_enum("stop_after", None, list(configs.STAGES), "Stop after this stage.")


def config_from_flags(sample_defaults: dict | None = None) -> configs.PipelineConfig:
    return pipeline_flags.config_from_flags(FLAGS, provenance=provenance(sample_defaults or {}))


def provenance(sample_defaults: dict) -> tuple[tuple[str, str], ...]:
    """The exact command, seed and code version (and the embedded sample's own defaults), for the report."""
    return (("command", " ".join(["python", "-m", "pipeline.run", *sys.argv[1:]])),
            *((("embedded-sample defaults", _as_flags(sample_defaults)),) if sample_defaults else ()),
            ("seed", str(FLAGS.seed)),
            ("git commit", git_commit()),
            ("machine", f"{platform.machine()}, {os.cpu_count()} CPU cores, TensorFlow {_tf_version()}"))


def _as_flags(values: dict) -> str:
    return " ".join(f"--{k}={v}" for k, v in values.items())


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__

def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines would bury the progress
    sample_defaults = pipeline_flags.apply_sample_defaults(FLAGS)
    if sample_defaults:
        print(f"note: the embedded sample: {_as_flags(sample_defaults)} instead of the study's defaults "
              "(give a flag to override)")
    config = config_from_flags(sample_defaults)
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
        where = decision["pushed_to"] or artifacts["export"].path / export.SAVED_MODEL_DIR
        print(f"Report: {artifacts['report'].path / report.REPORT_NAME}\nSavedModel: {where}\n  {decision['status']}")
        if decision["pushed_to"]:
            serving_dir = Path(decision["pushed_to"]).parent.parent
            print(f"Serve it (docs/serving.md): docker run -p 8501:8501 -v \"{serving_dir}:/models\" "
                  f"-e MODEL_NAME={decision['model_name']} {push.SERVING_IMAGE}")
    return 0

if __name__ == "__main__":
    app.run(main)
