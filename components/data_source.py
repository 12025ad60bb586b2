"""The upstream data folder as the pipeline's first input (TFX's Importer role).

Its fingerprint is the sha256 of `metadata.csv` and of every file under
`images/`, so editing a row or replacing an image re-runs ingest and all that
follows, while an untouched folder reuses every cached stage.

Hashing a large collection on every run is slow, so each image's sha256 is
remembered in a cache file by (path, size, mtime): a file whose size and
modification time are unchanged is not read again (the rule `make` and
`rsync` use). `metadata.csv` is small and always hashed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from common import files
from common.errors import PipelineError
from components import base
from components.ingest import IMAGES_DIR, METADATA_NAME


def import_data_dir(data_dir: Path, sha256_cache: Path | None = None) -> base.Artifact:
    """The data folder as an artifact; `sha256_cache` (a JSON file, created if missing) spares re-hashing."""
    data_dir = Path(data_dir).resolve()
    metadata = data_dir / METADATA_NAME
    if not metadata.is_file():
        raise PipelineError(
            f"--data_dir={data_dir}: no {METADATA_NAME} there (expected the layout of "
            "ieee8023/covid-chestxray-dataset: metadata.csv + images/)"
        )
    known = _read_cache(sha256_cache)
    seen = {}
    digest = hashlib.sha256()
    digest.update(files.sha256_file(metadata).encode())
    images = data_dir / IMAGES_DIR
    image_files = sorted(p for p in images.rglob("*") if p.is_file()) if images.is_dir() else []
    for path in image_files:
        stat = path.stat()
        key, stamp = str(path), [stat.st_size, stat.st_mtime_ns]
        entry = known.get(key)
        sha = entry[2] if entry and entry[:2] == stamp else files.sha256_file(path)
        seen[key] = [*stamp, sha]
        digest.update(str(path.relative_to(images)).encode())
        digest.update(sha.encode())
    if sha256_cache is not None and seen != {k: v for k, v in known.items() if k in seen}:
        Path(sha256_cache).parent.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(sha256_cache, {**known, **seen})
    record = {"component": "data_source", "fingerprint": digest.hexdigest(),
              "counts": {"image_files": len(image_files)}}
    return base.Artifact(data_dir, record)


def _read_cache(path: Path | None) -> dict:
    if path is None or not Path(path).is_file():
        return {}
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        return {}  # a damaged cache only costs a re-hash
