"""Shared fixtures: the embedded sample, the shared mirror, and small generated data sets."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components import configs

# pytest.ini runs one worker per core: on a GPU each would otherwise take all of its memory at once.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

# The slowest modules, slowest first (seconds of their tests, `--durations=0`, fresh clone at acd9335, 2-core
# Intel Xeon, 2026-12-03 17:57Z; test_resume.py has run one process fewer since: 76 s at 8873b24).
# xdist hands out whole modules (`--dist loadscope`) in collection order (`--no-loadscope-reorder`): started
# first, they overlap each other instead of one of them running alone at the end while the other worker idles.
SLOWEST_MODULES = (
    "tests/components/train/test_resume.py",  # 142 s
    "tests/components/train/test_fold_lock.py",  # 82 s
    "tests/pipeline/test_dicom_twin_pipeline.py",  # 79 s (busy 2-core host, 2026-12-06), one whole run
    "tests/pipeline/test_validate.py",  # 83 s beside a pipeline run on the same 2 cores (2026-12-06)
    "tests/pipeline/test_app_page.py",  # 87 s beside a pipeline run on the same 2 cores (2026-12-06): Chromium + the page
    "tests/pipeline/test_repeated_cv.py",  # 64 s
    "tests/pipeline/test_manifest_pipeline.py",  # ~55 s (busy 2-core host, 2026-12-06), mostly one whole run
    "tests/pipeline/test_app.py",  # 47 s beside a pipeline run on the same 2 cores (2026-12-06): two servers
    "tests/components/test_export.py",  # 40 s
    "tests/components/train/test_fold.py",  # 38 s
    "tests/components/train/test_strategy.py",  # 36 s
    "tests/models/test_registry.py",  # 34 s
    "tests/components/train/test_linear_probe.py",  # 27 s
    "tests/pipeline/test_local_runner.py",  # 24 s
)


def slowest_first(items, slowest=SLOWEST_MODULES):
    """Puts the tests of `slowest` first, in its order; the rest keep theirs (the sort is stable)."""
    rank = {module: position for position, module in enumerate(slowest)}
    return sorted(items, key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_collection_modifyitems(config, items):
    missing = [module for module in SLOWEST_MODULES if not (configs.REPO_ROOT / module).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py SLOWEST_MODULES names modules that do not exist: {missing}")
    items[:] = slowest_first(items)

MIRROR_DIR = configs.REPO_ROOT.parent / "shared" / "data" / "covid-chestxray-dataset"
HEADER_2020 = (
    "patientid,offset,sex,age,finding,survival,intubated,intubation_present,went_icu,in_icu,"
    "needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,neutrophil_count,"
    "lymphocyte_count,view,modality,date,location,folder,filename,doi,url,license,clinical_notes,other_notes,"
).split(",")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return configs.SAMPLE_DATA_DIR


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    if not (MIRROR_DIR / "metadata.csv").is_file():
        pytest.skip(f"the shared data mirror is not at {MIRROR_DIR}")
    return MIRROR_DIR


def xray_row(filename: str, patientid: str = "1", survival: str = "Y", **overrides) -> dict[str, str]:
    """A metadata row for a frontal COVID-19 X-ray; override any column."""
    row = {column: "" for column in HEADER_2020}
    row.update(patientid=patientid, offset="0", sex="M", age="60", finding="COVID-19", survival=survival,
               went_icu="N", needed_supplemental_O2="N", intubation_present="N", extubated="",
               view="PA", modality="X-ray", folder="images", filename=filename)
    row.update(overrides)
    return row


def write_metadata(data_dir: Path, rows, header=HEADER_2020) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "images").mkdir(exist_ok=True)
    path = data_dir / "metadata.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def xray_like(size=(96, 80), seed=0) -> np.ndarray:
    """A smooth gray image with structure, so codecs and resizing have real work."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    image = 128 + 60 * np.sin(x / 7.0) * np.cos(y / 9.0) + rng.normal(0, 8, (size[1], size[0]))
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture
def copy_sample(tmp_path, sample_dir):
    """A writable copy of the embedded sample."""

    def make(name="data") -> Path:
        target = tmp_path / name
        shutil.copytree(sample_dir, target)
        return target

    return make
