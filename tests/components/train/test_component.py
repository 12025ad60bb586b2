import dataclasses

import numpy as np
import pytest

from common.errors import PipelineError
from components import base
from components.train import component, fold, in_fold_imputation, input_pipeline
from components import configs


def test_train_config_and_train_params_agree():
    pipeline_fields = {f.name: f.default for f in dataclasses.fields(configs.TrainConfig)}
    params = {f.name: f.default for f in dataclasses.fields(fold.TrainParams)}
    assert pipeline_fields == {k: v for k, v in params.items() if k not in ("variant", "labels", "rebalance")}
    for labels, rebalance in configs.VARIANTS.values():
        assert labels in input_pipeline.LABEL_SETS and rebalance in ("none", "class_weights", "resample")


def _examples(n, offset=0):
    ids = np.array([f"img{i + offset}" for i in range(n)])
    return input_pipeline.Examples(images=np.zeros((n, 2, 2, 3), np.float32), labels=np.arange(n) % 2,
                                   label_sources=np.array(["observed"] * n), source_ids=ids, patients=ids, sha256=ids,
                                   clinical=np.full((n, 5), -1), sites=np.array([""] * n),
                                   aux=np.zeros((n, 0), np.int64))


def test_fold_key_follows_what_the_fold_computes():
    p = fold.TrainParams()
    train, val = _examples(10), _examples(4, 100)
    key = component.fold_key(p, "fp32", train, val, 0)
    assert component.fold_key(dataclasses.replace(p, strategy="mirrored", split="image", parallel_folds=3), "fp32", train, val, 0) == key
    assert component.fold_key(dataclasses.replace(p, epochs_unfrozen=3), "fp32", train, val, 0) != key
    assert component.fold_key(p, "bf16", train, val, 0) != key
    other = _examples(10)
    other.labels = 1 - other.labels
    assert component.fold_key(p, "fp32", other, val, 0) != key


def test_fold_key_of_repeat_0_is_the_single_splits_and_later_repeats_have_their_own():
    p = fold.TrainParams()
    train, val = _examples(10), _examples(4, 100)
    key = component.fold_key(p, "fp32", train, val, 0)
    # --repeats is not in the key: the single split's finished folds are repeat 0's.
    assert component.fold_key(dataclasses.replace(p, repeats=3), "fp32", train, val, 0, repeat=0) == key
    assert component.fold_key(p, "fp32", train, val, 0, repeat=1) != key
    assert component.fold_key(p, "fp32", train, val, 0, repeat=1) != component.fold_key(p, "fp32", train, val, 0, 2)


def test_a_component_with_a_work_dir_gets_one_that_outlives_its_artifacts(tmp_path):
    seen = []

    def run(inputs, params, out_dir, work_dir):
        seen.append(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / f"x{params['x']}").write_text("kept")
        return {}

    spec = base.ComponentSpec(name="resumable", run=run, uses_work_dir=True)
    a, _ = base.execute(spec, {}, {"x": 1}, tmp_path)
    b, _ = base.execute(spec, {}, {"x": 2}, tmp_path)
    assert a.path != b.path and seen[0] == seen[1] == tmp_path / "resumable" / base.WORK_DIR_NAME
    assert sorted(p.name for p in seen[0].iterdir()) == ["x1", "x2"]


def _imputed_params(**overrides):
    return fold.TrainParams(variant="imputed", labels="observed+imputed", image_size=32, folds=3, imputation_trees=20,
                            **overrides)


def test_the_imputed_variant_validates_observed_rows_and_trains_on_labels_imputed_inside_each_fold(
        sample_tfrecords, tmp_path):
    p = _imputed_params()
    examples, plan = component._plan(p, "fp32", sample_tfrecords, tmp_path)
    unlabelled = set(examples.source_ids[examples.label_sources == "imputed"])
    assert unlabelled
    for _, _, train, val, _ in plan:
        assert set(val.label_sources) == {"observed"}
        assert not set(train.patients[train.label_sources == "observed"]) & set(val.patients)
        assert unlabelled - set(val.source_ids) <= set(train.source_ids)
        in_fold = train.labels[train.label_sources == "imputed"]
        expected = in_fold_imputation.impute_training_labels(
            dataclasses.replace(train, labels=np.where(train.label_sources == "imputed", -1, train.labels)),
            p.seed, p.imputation_trees).labels[train.label_sources == "imputed"]
        np.testing.assert_array_equal(in_fold, expected)


def test_tfrecords_without_the_forests_features_refuse_the_imputed_variants(sample_tfrecords, tmp_path):
    import json
    import shutil

    copy = tmp_path / "tfrecords"
    shutil.copytree(sample_tfrecords, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["features"] = [key for key in manifest["features"] if not key.startswith("clinical/")]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PipelineError, match="without the forest's features"):
        component._plan(_imputed_params(), "fp32", copy, tmp_path / "work")


def test_the_imputed_variant_validates_the_original_variants_folds(sample_tfrecords, tmp_path):
    _, imputed = component._plan(_imputed_params(), "fp32", sample_tfrecords, tmp_path / "imputed")
    original = fold.TrainParams(variant="original", labels="observed", image_size=32, folds=3)
    _, observed = component._plan(original, "fp32", sample_tfrecords, tmp_path / "original")
    assert [val.source_ids.tolist() for *_, val, _ in imputed] == [val.source_ids.tolist() for *_, val, _ in observed]


def test_the_site_split_refuses_shards_written_without_sites(tmp_path):
    (tmp_path / "manifest.json").write_text('{"shards": [], "features": ["patient/id"]}')
    with pytest.raises(PipelineError, match="--split=site: .* without the patients' sites"):
        component._plan(fold.TrainParams(split="site"), "fp32", tmp_path, tmp_path / "work")
