"""`python -m pipeline.study`: the study's Table 1 (variants) or Table 2 (architectures), ours beside the paper's.

Runs the pipeline once per variant (and per `--archs` entry) with every other
flag of `pipeline.run`, reusing cached stages and finished folds, then writes
`table1_<split>.csv/.md` (or `table2_<split>.*`: each metric's pooled out-of-fold estimate, its
bootstrap interval and the fold mean +- sd), `beyond_table1_<split>.*` (patient-level ROC AUC,
first-week images, test-time augmentation, age and sex with and without the X-ray, calibration),
`imputation_effect_<split>.*`
(each imputed variant against its original on the same observed labels, when both ran),
with `--repeats`, `repeated_table1_<split>.*` (each metric's mean over repeats of the pooled
estimate, its interval and spread, beside the admission baselines refitted on the same folds) and
`provenance.json` into `--results_dir`. `--compare=<folders>` trains nothing: it puts the
repeated-CV rows of earlier studies (e.g. one per model) into one `comparison_<split>.*`, or two studies
without repeats, the earlier first, side by side into `rerun_<split>.*` (each variant both ran, paired on the
same observed images: what a change of code did).
`--audit=<folders>` trains nothing either: the shortcut audit of issue #34 (results/README.md, "Rules for the
shortcut audit") on those studies' stored predictions and the frozen features of `--weights`, written as
`shortcut_audit.*` with `provenance_shortcut_audit.json`; `--audit_site=<folders>` adds `--split=site` studies.
Nothing is tuned here: each cell is what its run produced.
"""

from __future__ import annotations

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # first: before any import below loads TensorFlow

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from absl import app, flags

from common.errors import PipelineError
from common.files import sha256_file, write_json_atomic
from components import configs
from components.evaluate import comparisons, shortcut_audit, shortcut_tables, study_tables
from components.evaluate import component as evaluate
from components.evaluate.outputs import EVALUATION_NAME
from components.train import input_pipeline
from pipeline import local_runner
from pipeline import run as run_flags  # noqa: F401  (defines the shared flags)
from pipeline.pipeline import create_pipeline
from pipeline.provenance import git_commit, machine

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", list(configs.VARIANTS), "Variants to run (Table 1).")
flags.DEFINE_list("archs", None, "Architectures to run on the first variant (Table 2); default: Table 1 only.")
flags.DEFINE_string("results_dir", "results", "Where the tables and provenance are written.")
flags.DEFINE_list("compare", None, "Results folders of earlier studies, training nothing: of studies with --repeats, "
                  "their repeated-CV rows as one table, comparison_<split>.csv/.md; of two without, the earlier "
                  "first, each variant both ran side by side, rerun_<split>.csv/.md; into --results_dir.")
flags.DEFINE_list("audit", None, "Results folders of earlier studies with --split=patient --repeats (the comparison's "
                  "models): train nothing, write the shortcut audit (issue #34), shortcut_audit.csv/.md, into "
                  "--results_dir; reads --data_dir, --weights and the cached stages in --output_dir.")
flags.DEFINE_list("audit_site", [], "With --audit: results folders of --split=site studies (leave one site out) to "
                  "add to the audit.")


def data_provenance(artifacts: Mapping[str, Any]) -> dict[str, Any]:
    """Which snapshot the runs read (sha256 over metadata.csv and every image) and what ingest kept of it."""
    return {"fingerprint": artifacts["data"].fingerprint, "ingest_counts": artifacts["ingest"].record["counts"]}


def committed_runs(results_dir: Path) -> list[dict[str, Any]]:
    """The runs a study wrote into `results_dir` (its provenance files and each run's evaluation.json), each
    with the command line and commit that made it."""
    if not results_dir.is_dir():
        raise PipelineError(f"--compare: {results_dir} is not a folder")
    runs = []
    for provenance_path in sorted(results_dir.glob("provenance_table*_*.json")):
        provenance = json.loads(provenance_path.read_text())
        for run in provenance["runs"]:
            evaluation_path = results_dir / f"{run['variant']}_{run['arch']}_{run['split']}" / EVALUATION_NAME
            if not evaluation_path.is_file():
                raise PipelineError(f"--compare: {evaluation_path} is missing, though {provenance_path.name} lists "
                                    f"the run")
            runs.append({**run, "evaluation": json.loads(evaluation_path.read_text()),
                         "command": provenance["command"], "git_commit": provenance["git_commit"],
                         "results_dir": str(results_dir), "run_dir": evaluation_path.parent})
    if not runs:
        raise PipelineError(f"--compare: {results_dir} holds no study provenance (provenance_table*_*.json)")
    return runs


def model_name(train: configs.TrainConfig) -> str:
    """The model as tables and results folders name it: the architecture, then the method and the auxiliary
    targets where they are not the defaults, so runs that differ only in those never share a row's name."""
    return "+".join([train.arch] + ([train.method] if train.method != "fine_tune" else [])
                    + (["aux"] if train.aux_targets else []))


def compare(folders: Sequence[str], results_dir: Path, command: str, resamples: int, seed: int) -> Path:
    """Earlier studies side by side, training nothing: the repeated-CV rows of several (`comparison_<split>`),
    or two single-CV studies of the same variants, the earlier first, e.g. before and after a change of code
    (`rerun_<split>`, paired on the same images); with what made each. Returns the table's path stem."""
    commit = git_commit()  # before the tables below are written over their committed versions
    by_folder = [committed_runs(Path(folder)) for folder in folders]
    sourced = [(folder, run) for folder, runs in zip(folders, by_folder) for run in runs]
    splits = sorted({run["split"] for _, run in sourced})
    if len(splits) > 1:
        raise PipelineError(f"--compare: the folders hold runs of other splits ({', '.join(splits)}); "
                            f"compare runs of one split")
    single = [f"{run['variant']} {run['arch']} ({folder})" for folder, run in sourced
              if "repeated_cv" not in run["evaluation"]]
    if not single:
        name, rows = "comparison", study_tables.repeated_rows([run for _, run in sourced])
        render = study_tables.repeated_markdown
    elif len(single) < len(sourced):
        raise PipelineError(f"--compare: no repeated cross-validation in {', '.join(single)}; compare studies "
                            f"run with --repeats, or two without")
    elif len(folders) != 2:
        raise PipelineError(f"--compare: studies without --repeats are compared two at a time, the earlier first "
                            f"(got {len(folders)})")
    else:
        name, render = "rerun", study_tables.rerun_markdown
        rows = comparisons.rerun_effect(*by_folder, resamples, seed)
        if not rows:
            raise PipelineError(f"--compare: {folders[0]} and {folders[1]} share no variant of one model")
    stem = results_dir / f"{name}_{splits[0]}"
    results_dir.mkdir(parents=True, exist_ok=True)
    study_tables.write_table(stem, rows, render)
    write_json_atomic(results_dir / f"provenance_{name}_{splits[0]}.json", {
        "command": command, "git_commit": commit, "bootstrap_resamples": resamples, "bootstrap_seed": seed,
        "sources": [{"results_dir": folder, **{k: run[k] for k in ("arch", "variant", "command", "git_commit",
                                                                  "train_seconds")}} for folder, run in sourced]})
    return stem


def _audited_runs(folders: Sequence[str]) -> tuple[list[shortcut_audit.ModelRun], list[dict[str, Any]]]:
    """The runs of the studies in `folders` as the audit reads them, and what made each (for the provenance)."""
    runs, sources = [], []
    for folder in folders:
        found = committed_runs(Path(folder))  # first: it names a folder that holds no study
        provenance = json.loads(next(Path(folder).glob("provenance_table*_*.json")).read_text())
        for run in found:
            run_dir = Path(folder) / f"{run['variant']}_{run['arch']}_{run['split']}"
            runs.append(shortcut_audit.ModelRun(run["arch"], run_dir, run["evaluation"]))
            sources.append({"results_dir": folder, "arch": run["arch"], "command": run["command"],
                            "git_commit": run["git_commit"], "weights_sha256": provenance.get("weights_sha256"),
                            "data_fingerprint": (provenance.get("data") or {}).get("fingerprint")})
    return runs, sources


def audit(config: configs.PipelineConfig, results_dir: Path, command: str) -> Path:
    """The shortcut audit of the studies in --audit (and --audit_site) on the data and weights they were run on;
    returns the tables' path stem."""
    started, commit = time.time(), git_commit()
    model_runs, sources = _audited_runs(FLAGS.audit)
    site_runs, site_sources = _audited_runs(FLAGS.audit_site)
    weights = config.train.weights
    if not weights:
        raise PipelineError("--audit: give --weights, the file the linear probe's features were computed from")
    weights_sha = sha256_file(Path(weights))
    artifacts = local_runner.run_pipeline(create_pipeline(config), "tfrecords")
    for source in sources + site_sources:
        if source["weights_sha256"] not in (None, weights_sha):
            raise PipelineError(f"--audit: {source['results_dir']} ran with other weights than {weights}")
        if source["data_fingerprint"] not in (None, artifacts["data"].fingerprint):
            raise PipelineError(f"--audit: {source['results_dir']} ran on other data than {config.data_dir}")
    examples = input_pipeline.load_examples(artifacts["tfrecords"].path, "observed", config.train.image_size)
    record = shortcut_audit.run(examples, evaluate.examples_by_source_id(artifacts["ingest"]), config.data_dir,
                                model_runs, site_runs, weights, config.evaluate.bootstrap_resamples,
                                config.evaluate.seed)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = shortcut_tables.write(results_dir, record)
    write_json_atomic(results_dir / "provenance_shortcut_audit.json", {
        "command": command, "git_commit": commit, "fold_seed": record["fold_params"]["seed"],
        "bootstrap_seed": config.evaluate.seed, "weights": weights, "weights_sha256": weights_sha,
        "weights_description": record["weights_description"], "data_dir": str(config.data_dir),
        "data": data_provenance(artifacts), "machine": machine(), "python": platform.python_version(),
        "seconds": {**record["seconds"], "total": round(time.time() - started, 1)},
        "feature_check_max_probability_difference": record["feature_check_max_probability_difference"],
        "sources": sources, "site_split_sources": site_sources})
    return stem


def main(argv):
    del argv
    command = " ".join([Path(sys.executable).name, "-m", "pipeline.study", *sys.argv[1:]])
    if FLAGS.audit_site and not FLAGS.audit:
        print("error: --audit_site adds studies to --audit: give --audit too (nothing was run)", file=sys.stderr)
        return 2
    if FLAGS.audit:
        try:
            stem = audit(run_flags.config_from_flags(), Path(FLAGS.results_dir), command)
        except PipelineError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {stem}.csv and {stem}.md")
        return 0
    if FLAGS.compare:
        try:
            evaluate_config = run_flags.config_from_flags().evaluate
            stem = compare(FLAGS.compare, Path(FLAGS.results_dir), command, evaluate_config.bootstrap_resamples,
                           evaluate_config.seed)
        except PipelineError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {stem}.csv and {stem}.md")
        return 0
    base_config = run_flags.config_from_flags()
    commit = git_commit()  # the code that runs, read before any later edit of the tree
    unknown = [v for v in FLAGS.variants if v not in configs.VARIANTS]
    if unknown:
        print(f"error: --variants: unknown {unknown}; choose from {list(configs.VARIANTS)}", file=sys.stderr)
        return 2
    plan = [(variant, base_config.train.arch) for variant in FLAGS.variants]
    table = "1"
    if FLAGS.archs:
        table = "2"
        plan = [(FLAGS.variants[0], arch) for arch in FLAGS.archs]
    results_dir = Path(FLAGS.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    runs, data = [], None
    for position, (variant, arch) in enumerate(plan, start=1):
        print(f"=== [{position}/{len(plan)}] variant {variant}, arch {arch}, split {base_config.train.split}")
        config = dataclasses.replace(base_config, variant=variant,
                                     train=dataclasses.replace(base_config.train, arch=arch))
        started = time.time()
        try:
            artifacts = local_runner.run_pipeline(create_pipeline(config))
        except PipelineError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        evaluation = json.loads((artifacts["evaluate"].path / EVALUATION_NAME).read_text())
        model = model_name(config.train)
        study_tables.keep_run_files(artifacts, results_dir / f"{variant}_{model}_{config.train.split}")
        data = data_provenance(artifacts)
        runs.append({"variant": variant, "arch": model, "split": config.train.split, "evaluation": evaluation,
                     "command": command,
                     "wall_seconds_this_invocation": round(time.time() - started, 1),
                     "train_seconds": artifacts["train"].record.get("seconds"),
                     "artifacts": {k: str(a.path) for k, a in artifacts.items() if k != "data"}})
    stem = study_tables.write_tables(results_dir, table, base_config.train.split, runs,
                                     base_config.evaluate.bootstrap_resamples, base_config.evaluate.seed)
    weights = base_config.train.weights
    write_json_atomic(results_dir / f"provenance_table{table}_{base_config.train.split}.json", {
        "command": command, "git_commit": commit, "seed": base_config.train.seed,
        "weights": weights, "weights_sha256": sha256_file(Path(weights)) if weights else None,
        "data_dir": str(base_config.data_dir), "data": data, "machine": machine(),
        "python": platform.python_version(),
        "runs": [{k: v for k, v in r.items() if k not in ("evaluation", "command")} for r in runs],
    })
    print(f"wrote {stem}.csv and {stem}.md")
    return 0


if __name__ == "__main__":
    app.run(main)
