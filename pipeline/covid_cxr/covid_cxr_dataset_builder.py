"""`covid_cxr`: the pipeline's data stages as a TensorFlow Datasets builder.

For users who want `tfds.load` rather than the pipeline: the manual_dir is the
upstream folder (metadata.csv + images/), and the builder runs the same ingest
checks and the same RandomForest imputation as the pipeline, so the examples,
labels and label sources are the ones the pipeline's TFRecords hold.

    import tensorflow_datasets as tfds
    import pipeline.covid_cxr  # registers the builder
    ds = tfds.load("covid_cxr", split="train", data_dir="~/tfds",
                   download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(
                       manual_dir="path/to/covid-chestxray-dataset")})

`covid_cxr_beam` is the same data set built by an Apache Beam pipeline, for a cluster: pass
`beam_runner=` and `beam_options=` in the DownloadConfig (BUILD.md, "Beam"). Ingest and imputation
still run in this process (the forest is fitted on every row); reading and checking the images is
spread over the workers, which must see the manual_dir at the same path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from common.ages import parse_age
from components import impute, ingest
from components import configs
from images import image_io
from sources import upstream
from tfrecords import schema


class Builder(tfds.core.GeneratorBasedBuilder):
    """Frontal COVID-19 chest X-rays with observed and imputed mortality labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Ingest checks + RandomForest imputation as in the pipeline."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Clone github.com/ieee8023/covid-chestxray-dataset and pass its folder (metadata.csv + images/) "
        "as manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "source_id": text,
                "patient_id": text,
                "view": text,
                "mortality": tfds.features.ClassLabel(names=["survived", "died"]),
                "mortality_observed": tfds.features.Scalar(dtype=np.int64, doc="-1 when not recorded"),
                "label_source": tfds.features.ClassLabel(names=list(schema.LABEL_SOURCES)),
                "age": tfds.features.Scalar(dtype=np.float32, doc="NaN when not recorded"),
                "offset_days": tfds.features.Scalar(dtype=np.float32, doc="NaN when not recorded"),
            }),
            supervised_keys=("image", "mortality"),
            homepage="https://github.com/ieee8023/covid-chestxray-dataset",
            citation="Cohen et al., COVID-19 Image Data Collection: Prospective Predictions Are the Future, "
                     "arXiv:2006.11988 (2020).",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        return {"train": self._generate_examples(Path(dl_manager.manual_dir))}

    def _generate_examples(self, data_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
        images_dir = data_dir / upstream.IMAGES_DIR
        return (_example(row_and_label, images_dir) for row_and_label in _rows_and_labels(data_dir))


class CovidCxrBeam(Builder):
    """`covid_cxr` built by Apache Beam: the same examples, with the images read on the runner's workers."""

    def _generate_examples(self, data_dir: Path):
        import apache_beam as beam  # only this builder needs Beam

        return beam.Create(_rows_and_labels(data_dir)) | beam.Map(_example, data_dir / upstream.IMAGES_DIR)


def _rows_and_labels(data_dir: Path) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """The pipeline's ingest and imputation with their default settings: each usable row and its labels."""
    defaults = configs.ImputeConfig()
    rows = ingest.example_rows(ingest.ingest(data_dir, configs.FRONTAL_VIEWS)["examples"])
    labels = impute.impute(rows, defaults.seed, defaults.n_estimators, defaults.cv_folds)["labels"]
    return list(zip(rows, labels))


def _example(row_and_label: tuple[Mapping[str, str], Mapping[str, Any]], images_dir: Path) -> tuple[str, dict]:
    row, label = row_and_label
    image = image_io.load_standard_image(image_io.resolve_inside(images_dir, row["filename"]))
    return row["source_id"], {
        "image": image.encoded,
        "source_id": row["source_id"],
        "patient_id": row["patientid"],
        "view": row["view"],
        "mortality": label["mortality"],
        "mortality_observed": label["mortality_observed"],
        "label_source": label["label_source"],
        "age": schema.number_or_nan(parse_age(row["age"])),
        "offset_days": schema.number_or_nan(row["offset"]),
    }
