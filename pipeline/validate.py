"""`python -m pipeline.validate`: validate an exported model on a new site's labelled X-rays, and update it.

    python -m pipeline.validate --model=runs --data_dir=path/to/site --output_dir=validation/site_a
    python -m pipeline.validate --model=runs/serving/covid_cxr_mortality --data_dir=path/to/site \\
        --output_dir=validation/site_a --update=auto --site=SITE_A --serving_dir=runs/serving

`--model` is resolved as `pipeline.score` resolves it (a run's output folder, a SavedModel, a TF Serving model
folder); `--data_dir` is any data source ingest reads, with outcomes. Its images go through ingest into
`--output_dir`, every usable labelled image is scored through the served `serving_default` (`pipeline.score`,
resumable), and `components/validate.py` writes `validation.json`, `predictions.csv` and `report.html` there.
`--update` fits an update on the site and pushes it to `<serving_dir>/<model name>/<next version>`. The flags
shared with `pipeline.run` (`--data_dir`, `--output_dir`, `--serving_dir`, `--seed`, `--bootstrap_resamples`) and
`pipeline.score` (`--model`, `--images_per_batch`, `--workers`) are theirs. Bad input: one line, exit status 2.
"""

from __future__ import annotations

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # first: before any import below loads TensorFlow

import datetime
import sys
from pathlib import Path

from absl import app, flags, logging

from common import files
from common.errors import PipelineError
from components import ingest, model_card, validation_report
from components import validate
from pipeline import flags as pipeline_flags, local_runner, score
from pipeline import run as run_flags  # noqa: F401  (defines --data_dir, --output_dir, --serving_dir, --seed, ...)
from pipeline.pipeline import create_pipeline
from pipeline.provenance import git_commit

FLAGS = flags.FLAGS
flags.DEFINE_enum("update", None, list(validate.UPDATE_CHOICES), "Fit an update on the site and push it as the next "
                  "version: intercept (recalibration-in-the-large), logistic (intercept and slope), auto (the least "
                  "extensive the site's data support, by closed testing). Needs --site and --serving_dir.")
flags.DEFINE_string("site", None, "A code naming the site, written into the report and an updated model's card.")
for shared in ("model", "data_dir", "output_dir", "serving_dir", "seed", "bootstrap_resamples", "images_per_batch",
               "workers"):
    flags.declare_key_flag(shared)  # listed by --help beside this module's own


def _checked_flags() -> tuple[Path, Path]:
    for name in ("model", "data_dir", "output_dir"):
        if not FLAGS[name].present:
            raise PipelineError(f"--{name} is required")
    if FLAGS.update and not (FLAGS.site and FLAGS.serving_dir):
        raise PipelineError("--update needs --site (the code its model card names) and --serving_dir (where the "
                            "new version is pushed)")
    data_dir, out_dir = Path(FLAGS.data_dir).resolve(), Path(FLAGS.output_dir).resolve()
    if not data_dir.is_dir():
        raise PipelineError(f"--data_dir {data_dir} is not a folder")
    return data_dir, out_dir


def main(argv) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines (saving a SavedModel) would bury the result
    try:
        data_dir, out_dir = _checked_flags()
        saved_model_dir = score.resolve_model(FLAGS.model)
        card = model_card.read(saved_model_dir) if (saved_model_dir / model_card.JSON_NAME).is_file() else None
        threshold = float(card["decision"]["threshold"]) if card else FLAGS.threshold
        out_dir.mkdir(parents=True, exist_ok=True)
        # The site's folder through the data source and ingest exactly as pipeline.run wires them.
        site_config = pipeline_flags.config_from_flags(FLAGS)
        artifacts = local_runner.run_pipeline(create_pipeline(site_config), stop_after="ingest")
        rows = validate.labelled_rows(ingest.read_examples(artifacts["ingest"]))
        if not rows:
            raise PipelineError(f"--data_dir {data_dir}: no usable image with a known outcome")
        model_sha256 = score.model_sha256(saved_model_dir)
        scores = out_dir / validate.scores_name(model_sha256)  # one per model: resumable
        score.score(validate.image_entries(artifacts["data"].source, rows), saved_model_dir, scores, FLAGS.images_per_batch,
                    FLAGS.workers)
        site = validate.scored_rows(rows, validate.read_scores(scores))
        resamples, seed = FLAGS.bootstrap_resamples, FLAGS.seed
        record = validate.validation_record(site, card, threshold, resamples, seed)
        update = pushed = None
        if FLAGS.update:
            update = validate.update_record(site["columns"], FLAGS.update, threshold, resamples, seed)
            if update["method"] != "original":
                pushed = validate.push_update(saved_model_dir, card, update, FLAGS.site, site,
                                              Path(FLAGS.serving_dir).resolve(), out_dir)
        record.update(site=FLAGS.site, data_dir=str(data_dir), update=validate.json_ready(update), pushed=pushed,
                      model=validate.model_identity(saved_model_dir, card, model_sha256),
                      provenance={"command": " ".join(["python", "-m", "pipeline.validate", *sys.argv[1:]]),
                                  "git commit": git_commit(), "seed": seed,
                                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        validate.write_predictions(out_dir / validate.PREDICTIONS_NAME, site["columns"], threshold, update)
        validate.write_figures(out_dir, record, site["columns"]["probability"])
        files.write_json_atomic(out_dir / validate.VALIDATION_NAME, record)
        files.write_text_atomic(out_dir / validation_report.REPORT_NAME, validation_report.render(record, out_dir))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    images = record["images"]
    print(f"{images['n']} images of {images['patients']} patients validated: ROC AUC "
          f"{images['estimate']['roc_auc']:.3f}, O/E {images['estimate']['o_e_ratio']:.2f}, calibration slope "
          f"{images['estimate']['calibration_slope']:.2f}\nReport: {out_dir / validation_report.REPORT_NAME}")
    if update is not None:
        print(f"Update: {update['method']} ({update['chosen_by']})"
              + (f"; pushed version {pushed['pushed_version']} to {pushed['pushed_to']}" if pushed else
                 f"; {update.get('note', 'nothing pushed')}"))
    return 0


if __name__ == "__main__":
    app.run(main)
