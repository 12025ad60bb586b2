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
