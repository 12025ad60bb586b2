"""`python -m pipeline.run`: the whole pipeline for one variant, from absl flags."""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

from components.base import PipelineError
from pipeline import configs, local_runner
from pipeline.pipeline import create_pipeline

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", str(configs.SAMPLE_DATA_DIR),
                    "Folder in the layout of ieee8023/covid-chestxray-dataset (metadata.csv + images/).")
flags.DEFINE_string("output_dir", str(configs.DEFAULT_OUTPUT_DIR), "Where artifacts are written and reused.")
flags.DEFINE_enum("variant", "original_weights", list(configs.VARIANTS), "The study's variant to train.")
flags.DEFINE_enum("stop_after", None, list(configs.STAGES), "Stop after this stage.")
flags.DEFINE_integer("seed", 0, "Seed for imputation's forest and CV.")
flags.DEFINE_integer("num_shards", configs.TFRecordConfig.num_shards, "TFRecord shards.")


def config_from_flags() -> configs.PipelineConfig:
    return configs.PipelineConfig(
        data_dir=Path(FLAGS.data_dir),
        output_dir=Path(FLAGS.output_dir),
        variant=FLAGS.variant,
        impute=configs.ImputeConfig(seed=FLAGS.seed),
        tfrecords=configs.TFRecordConfig(num_shards=FLAGS.num_shards),
    )


def main(argv):
    del argv
    config = config_from_flags()
    stop_after = FLAGS.stop_after
    last_implemented = configs.IMPLEMENTED_STAGES[-1]
    if stop_after and stop_after not in configs.IMPLEMENTED_STAGES:
        print(f"note: stage {stop_after!r} is not implemented yet (issue {configs.PENDING_STAGES_ISSUE[stop_after]}); "
              f"running up to {last_implemented!r}")
        stop_after = None
    try:
        artifacts = local_runner.run_pipeline(create_pipeline(config), stop_after)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if (stop_after or last_implemented) == last_implemented:
        pending = ", ".join(f"{s} ({configs.PENDING_STAGES_ISSUE[s]})" for s in configs.STAGES
                            if s not in configs.IMPLEMENTED_STAGES)
        print(f"Stopped after {last_implemented!r}, the last stage implemented so far. Not yet built: {pending}. "
              f"Variant {config.variant!r} will be trained by the train stage.")
    print(f"Artifacts: {', '.join(f'{k}={v.path}' for k, v in artifacts.items() if k != 'data')}")
    return 0


if __name__ == "__main__":
    app.run(main)
