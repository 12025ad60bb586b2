"""The upstream data folder as the pipeline's first input (TFX's Importer role).

Its fingerprint is the sha256 of `metadata.csv` and of every file under
`images/`, so editing a row or replacing an image re-runs ingest and all that
follows, while an untouched folder reuses every cached stage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from common import files
from common.errors import PipelineError
from components import base
from components.ingest import IMAGES_DIR, METADATA_NAME


def import_data_dir(data_dir: Path) -> base.Artifact:
    data_dir = Path(data_dir).resolve()
    metadata = data_dir / METADATA_NAME
    if not metadata.is_file():
        raise PipelineError(
            f"--data_dir={data_dir}: no {METADATA_NAME} there (expected the layout of "
            "ieee8023/covid-chestxray-dataset: metadata.csv + images/)"
        )
    digest = hashlib.sha256()
    digest.update(files.sha256_file(metadata).encode())
    images = data_dir / IMAGES_DIR
    image_files = sorted(p for p in images.rglob("*") if p.is_file()) if images.is_dir() else []
    for path in image_files:
        digest.update(str(path.relative_to(images)).encode())
        digest.update(files.sha256_file(path).encode())
    record = {"component": "data_source", "fingerprint": digest.hexdigest(),
              "counts": {"image_files": len(image_files)}}
    return base.Artifact(data_dir, record)
