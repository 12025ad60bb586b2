import pytest

from components import configs
from pipeline import local_runner
from pipeline.pipeline import create_pipeline


@pytest.fixture(scope="session")
def sample_tfrecords(tmp_path_factory):
    """The embedded sample taken through ingest, impute and tfrecords once per test session."""
    out = tmp_path_factory.mktemp("sample_run")
    artifacts = local_runner.run_pipeline(create_pipeline(configs.PipelineConfig(output_dir=out)), "tfrecords",
                                          log=lambda _: None)
    return artifacts["tfrecords"].path
