"""The flags of pipeline.run, generated from components/configs.py (pipeline/flags.py)."""

import dataclasses
from pathlib import Path

import pytest
from absl import flags

from components import configs
from pipeline import flags as pipeline_flags


def _parse(*argv: str) -> configs.PipelineConfig:
    flag_values = flags.FlagValues()
    pipeline_flags.define_flags(flag_values)
    flag_values(["run", *argv])
    return pipeline_flags.config_from_flags(flag_values)


def _flag_default(default):
    return str(default) if isinstance(default, Path) else default


def test_every_flag_has_its_fields_default_and_help():
    flag_values = flags.FlagValues()
    pipeline_flags.define_flags(flag_values)
    items = list(pipeline_flags.flag_fields())
    for item in items:
        assert flag_values[item.name].default == _flag_default(item.field.default), item.path
        assert flag_values[item.name].help.endswith(item.field.metadata["help"]), item.path  # enums: after <a|b>:
        choices = item.field.metadata["choices"]
        if choices:
            assert flag_values[item.name].parser.enum_values == list(choices), item.path
    assert sorted(flag_values) == sorted({item.name for item in items})


def test_the_flags_are_the_ones_the_command_line_always_had():
    names = [item.name for item in pipeline_flags.flag_fields()]
    assert {"data_dir", "output_dir", "variant", "seed", "num_shards", "max_offset_days", "weights", "augment",
            "max_zoom", "p_lighting", "threshold", "export_members", "serving_dir", "tta_views", "tfrecord_writer",
            "beam_runner", "beam_options", "method", "memory_budget_gb", "shuffle_buffer",
            "checkpoint_every_s", "push_demo", "demo_model_name", "parallel_folds", "pseudonym_key",
            "recalibrate", "imputation_trees", "min_site_patients", "aux_targets"} <= set(names)
    assert len(set(names)) == 59  # pipeline.run adds --stop_after; pipeline.study --variants, --archs, --results_dir
    shared = {name: [".".join(item.path) for item in pipeline_flags.flag_fields() if item.name == name]
              for name in names if names.count(name) > 1}
    assert shared == {"seed": ["impute.seed", "train.seed", "evaluate.seed"],
                      "threshold": ["evaluate.threshold", "export.threshold"],
                      "imputation_trees": ["impute.n_estimators", "train.imputation_trees"]}
    not_flags = {"frontal_views", "cv_folds", "eval_batch_size", "provenance"}
    assert not_flags.isdisjoint(item.path[-1] for item in pipeline_flags.flag_fields())


def test_no_flags_give_the_default_config():
    assert _parse() == configs.PipelineConfig()


def test_shared_and_renamed_flags_reach_every_field_they_set():
    config = _parse("--seed=7", "--threshold=0.3", "--export_members=2", "--variant=imputed_resample",
                    "--max_offset_days=7", "--num_shards=2", "--nodeterministic", "--tfrecord_writer=beam",
                    "--beam_options=--direct_num_workers=2 --job_name=x")
    assert config.impute.seed == config.train.seed == config.evaluate.seed == 7
    assert config.evaluate.threshold == config.export.threshold == 0.3
    assert config.export.members == "2"
    assert _parse("--imputation_trees=30").impute.n_estimators == _parse("--imputation_trees=30").train.imputation_trees == 30
    assert config.variant == "imputed_resample" and config.ingest.max_offset_days == 7.0
    assert config.tfrecords.num_shards == 2 and config.train.deterministic is False
    assert config.tfrecords == dataclasses.replace(configs.TFRecordConfig(), num_shards=2, writer="beam",
                                                   beam_options="--direct_num_workers=2 --job_name=x")
    assert config.train == dataclasses.replace(configs.TrainConfig(), seed=7, deterministic=False)


def test_flat_augmentation_flags_fill_the_nested_config():
    config = _parse("--augment=keras_layers", "--max_zoom=1.5", "--p_lighting=0.1")
    assert config.train.augmentation == configs.AugmentConfig(method="keras_layers", max_zoom=1.5, p_lighting=0.1)


def test_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _parse("--weights=body.pth", "--serving_dir=serving", "--data_dir=data", "--output_dir=out")
    assert config.train.weights == str(tmp_path / "body.pth")  # absolute, still a string
    assert config.export.serving_dir == tmp_path / "serving"
    assert (config.data_dir, config.output_dir) == (Path("data"), Path("out"))  # as given
    assert _parse("--weights=", "--serving_dir=") == configs.PipelineConfig()


@pytest.mark.parametrize("argv", [["--variant=bogus"], ["--augment=bogus"], ["--split=pixel"], ["--seed=x"]])
def test_bad_values_are_refused(argv):
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(*argv)


def test_repeats_below_one_are_refused_naming_the_flag():
    assert _parse("--repeats=3").train.repeats == 3
    with pytest.raises(ValueError, match="--repeats must be at least 1, not 0"):
        _parse("--repeats=0")
    for argv, message in (("--parallel_folds=0", "--parallel_folds must be at least 1, not 0"),
                          ("--shuffle_buffer=0", "--shuffle_buffer must be at least 1, not 0"),
                          ("--memory_budget_gb=-1", "must not be negative, not -1 and 60"),
                          ("--checkpoint_every_s=-5", "must not be negative, not 8 and -5")):
        with pytest.raises(ValueError, match=message):
            _parse(argv)


def test_pipeline_run_defines_them_for_study_too():
    from pipeline import run, study  # noqa: F401  (study reuses run's flags)

    for item in pipeline_flags.flag_fields():
        assert run.FLAGS[item.name].default == _flag_default(item.field.default)
    assert run.FLAGS["stop_after"].default is None
    assert {"variants", "archs", "results_dir"} <= set(run.FLAGS)


def _sample_flags(*argv: str):
    flag_values = flags.FlagValues()
    pipeline_flags.define_flags(flag_values)
    flag_values(["run", *argv])
    return pipeline_flags.apply_sample_defaults(flag_values), pipeline_flags.config_from_flags(flag_values)


def test_the_embedded_sample_takes_its_own_defaults_unless_a_flag_is_given(tmp_path):
    applied, config = _sample_flags()
    assert applied == configs.SAMPLE_RUN_DEFAULTS
    assert (config.train.folds, config.train.lr_finder_steps) == (3, 30)
    applied, config = _sample_flags("--folds=5")
    assert applied == {"lr_finder_steps": 30} and config.train.folds == 5
    applied, config = _sample_flags(f"--data_dir={configs.DICOM_SAMPLE_DIR}")  # its DICOM twin too
    assert applied == configs.SAMPLE_RUN_DEFAULTS and config.train.folds == 3
    applied, config = _sample_flags(f"--data_dir={tmp_path}")
    assert applied == {} and config.train == configs.TrainConfig()
