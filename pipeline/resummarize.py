"""`python -m pipeline.resummarize RESULTS_FOLDER...`: the evaluation of stored study results done again from
their out-of-fold predictions, without retraining.

For each folder `pipeline.study` wrote, each run's `fold_<k>/predictions.csv` (and `predictions_tta.csv`; with
`--repeats`, every `repeat_<r>/fold_<k>/predictions.csv` too) is evaluated again by `components.evaluate` with
the original run's seed, threshold, bootstrap resamples and test-time-augmentation views; age, sex and offsets
come from ingest's table of the snapshot the provenance names (ingest runs, cached, in `--output_dir`; its data
fingerprint must equal the recorded one). Each run's
`evaluation.json`, metric tables, summary figures and the evaluation's sections of `report.html` are rewritten
(the report's data, imputation and provenance sections are the run's own and stay), then the folder's tables.
Nothing that was chosen can change: the fold means (and means over repeats) recomputed must equal the stored
ones, else it stops.
"""

from __future__ import annotations

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # first: before any import below loads TensorFlow

import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Mapping

from absl import app, flags

from common.errors import PipelineError
from common.files import write_text_atomic
from components import configs, report
from components.evaluate import component as evaluate
from components.evaluate import study_tables
from components.evaluate import metrics as evaluate_metrics
from components.published import published_rows
from components.train import outputs as train_outputs
from pipeline import local_runner
from pipeline import run as run_flags  # noqa: F401  (defines --output_dir: where ingest's artifact is reused)
from pipeline.pipeline import create_pipeline

FLAGS = flags.FLAGS
PROVENANCE = re.compile(r"provenance_table(\d)_(\w+)\.json")


def _examples(provenance: Mapping[str, Any], output_dir: Path) -> tuple[dict[str, dict[str, str]], bool]:
    """Ingest's rows by source_id, of the data folder the provenance names (relative to the repository), and
    whether that folder is the upstream collection (the study's numbers are shown beside it, not a manifest)."""
    data_dir = (configs.REPO_ROOT / provenance["data_dir"]).resolve()
    config = configs.PipelineConfig(data_dir=data_dir, output_dir=output_dir)
    artifacts = local_runner.run_pipeline(create_pipeline(config), "ingest", log=lambda _: None)
    recorded = (provenance.get("data") or {}).get("fingerprint")
    if recorded and artifacts["data"].fingerprint != recorded:
        raise PipelineError(f"{data_dir}: data fingerprint {artifacts['data'].fingerprint[:12]} is not the "
                            f"{recorded[:12]} the results were made from")
    upstream = artifacts["ingest"].counts.get("schema") != "manifest"
    return evaluate.examples_by_source_id(artifacts["ingest"]), upstream


def _stored_numbers(stored: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """(metric, key in the new headline) -> value of a stored headline: a re-summarised one's estimate and fold
    mean, or the first summary's `mean` (the fold mean of a score, the summed-confusion rate of TPR-FNR)."""
    numbers = {}
    for name, value in stored["metrics"].items():
        if "estimate" in value:
            numbers.update({(name, "estimate"): value["estimate"], (name, "fold_mean"): value["fold_mean"]})
        else:
            numbers[name, "fold_mean" if name in evaluate_metrics.SCORES else "estimate"] = value["mean"]
    return numbers


def _check_unchanged(run_dir: Path, stored: Mapping[str, Any], record: Mapping[str, Any]) -> None:
    """What the stored headline (and mean over repeats) holds must be what the new record computes."""
    pairs = [((name, key), value, record["metrics"][name][key])
             for (name, key), value in _stored_numbers(stored).items()]
    if "repeated_cv" in stored:
        new_repeats = record.get("repeated_cv", {}).get("metrics", {})
        pairs += [((name, "mean over repeats"), value["mean"], new_repeats.get(name, {}).get("mean", math.nan))
                  for name, value in stored["repeated_cv"]["metrics"].items()]
    for (name, key), value, new in pairs:
        if not (math.isclose(value, new, abs_tol=1e-12) or (math.isnan(value) and math.isnan(new))):
            raise PipelineError(f"{run_dir}: {name} ({key}) was {value} and is now {new}: not the same predictions")


def resummarize_run(run_dir: Path, examples: Mapping[str, Mapping[str, str]], seed: int,
                    upstream: bool = True) -> dict[str, Any]:
    """Evaluate one run folder again from its stored predictions; returns the new evaluation record. The
    study's published numbers stand beside a run on the upstream collection only."""
    stored = json.loads((run_dir / evaluate.EVALUATION_NAME).read_text())
    observed = stored["sets"][evaluate.OBSERVED]
    tta_views = stored["sets"].get(evaluate.OBSERVED_TTA, {}).get("tta_views", 0)
    params = {"threshold": stored["threshold"], "bootstrap_resamples": observed["bootstrap"]["resamples"],
              "seed": seed, "tta_views": tta_views}
    summary = train_outputs.read_summary(run_dir)
    predictions = evaluate.with_row_facts(train_outputs.read_predictions(run_dir), examples)
    tta = evaluate.read_tta_predictions(run_dir / evaluate.TTA_PREDICTIONS_NAME, predictions) if tta_views else None
    record = evaluate.evaluation_record(predictions, summary["variant"], summary["split"], summary["weights"],
                                        params, tta, summary.get("site_of_fold"))
    evaluate.add_repeated_cv(record, run_dir, summary, predictions, params, run_dir)
    _check_unchanged(run_dir, stored, record)
    evaluate.write_summary(run_dir, record)
    page = (run_dir / report.REPORT_NAME).read_text()
    sections = report.summary_sections(record, published_rows(record["variant"]) if upstream else None, run_dir)
    write_text_atomic(run_dir / report.REPORT_NAME, report.replace_sections(page, sections))
    return record


def resummarize_folder(folder: Path, output_dir: Path) -> list[Path]:
    """Every run of every provenance file in `folder`, then its tables; returns the tables' path stems."""
    stems = []
    for provenance_path in sorted(folder.glob("provenance_table*.json")):
        table, split = PROVENANCE.fullmatch(provenance_path.name).groups()
        provenance = json.loads(provenance_path.read_text())
        examples, upstream = _examples(provenance, output_dir)
        runs = []
        for run in provenance["runs"]:
            run_dir = folder / f"{run['variant']}_{run['arch']}_{run['split']}"
            record = resummarize_run(run_dir, examples, provenance["seed"], upstream)
            runs.append({**run, "evaluation": record, "artifacts": {"train": str(run_dir)},
                         "command": provenance.get("command", "")})
        resamples = runs[0]["evaluation"]["sets"][evaluate.OBSERVED]["bootstrap"]["resamples"]
        stems.append(study_tables.write_tables(folder, table, split, runs, resamples, provenance["seed"]))
    return stems


def main(argv):
    folders = [Path(arg) for arg in argv[1:]]
    if not folders:
        print("usage: python -m pipeline.resummarize RESULTS_FOLDER...", file=sys.stderr)
        return 2
    try:
        for folder in folders:
            for stem in resummarize_folder(folder, Path(FLAGS.output_dir)):
                print(f"wrote {stem}.csv and {stem}.md")
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main)
