import numpy as np
import tensorflow_datasets as tfds

from components import impute, ingest
from components import configs
import pipeline.covid_cxr  # noqa: F401  (registers the builder)


def test_tfds_load_gives_the_pipelines_examples_and_labels(tmp_path, sample_dir):
    dataset = tfds.load(
        "covid_cxr", split="train", data_dir=str(tmp_path),
        download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=str(sample_dir))},
    )
    loaded = {ex["source_id"].decode(): ex for ex in tfds.as_numpy(dataset)}
    rows = ingest.example_rows(ingest.ingest(sample_dir, configs.FRONTAL_VIEWS)["examples"])
    defaults = configs.ImputeConfig()
    labels = impute.impute(rows, defaults.seed, defaults.n_estimators, defaults.cv_folds)["labels"]
    assert set(loaded) == {row["source_id"] for row in rows}
    for label in labels:
        example = loaded[label["source_id"]]
        assert example["mortality"] == label["mortality"]
        assert example["mortality_observed"] == label["mortality_observed"]
        assert example["label_source"] == ("observed", "imputed").index(label["label_source"])
        assert example["image"].ndim == 3 and example["image"].shape[2] == 3


def test_the_beam_builder_gives_the_same_examples(tmp_path, sample_dir):
    def load(name, **beam):
        config = tfds.download.DownloadConfig(manual_dir=str(sample_dir), **beam)
        dataset = tfds.load(name, split="train", data_dir=str(tmp_path),
                            download_and_prepare_kwargs={"download_config": config})
        return {ex["source_id"].decode(): ex for ex in tfds.as_numpy(dataset)}

    local, beam = load("covid_cxr"), load("covid_cxr_beam", beam_runner="FnApiRunner")
    assert set(beam) == set(local) and len(local) == 42
    for source_id, example in local.items():
        assert set(beam[source_id]) == set(example)
        for key, value in example.items():
            np.testing.assert_array_equal(beam[source_id][key], value, err_msg=f"{source_id} {key}")
