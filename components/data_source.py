"""The data folder as the pipeline's first input (TFX's Importer role), with its source (`sources/`).

Its fingerprint is the sha256 of the source's table and of every image file it
covers (the upstream collection: all of `images/`; a manifest: every file it
names, wherever it lies, and the pseudonym key's id), so editing a row or
replacing an image re-runs ingest and all that follows, while an untouched
folder reuses every cached stage.

Hashing a large collection on every run is slow, so each image's sha256 is
remembered in a cache file by (path, size, mtime): a file whose size and
modification time are unchanged is not read again (the rule `make` and
`rsync` use). The table is small and always hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable

import sources
from common import files
from components import base


@dataclasses.dataclass(frozen=True)
class DataArtifact(base.Artifact):
    """The folder's artifact and the source that reads it (which ingest and the TFRecord writer use)."""

    source: sources.Source


def import_data_dir(data_dir: Path, sha256_cache: Path | None = None,
                    pseudonym_key: Callable[[], bytes] | None = None) -> DataArtifact:
    """The data folder as an artifact; `sha256_cache` (a JSON file, created if missing) spares re-hashing;
    `pseudonym_key` gives the key a manifest needs (sources.open_source)."""
    data_dir = Path(data_dir).resolve()
    source = sources.open_source(data_dir, pseudonym_key)
    known = _read_cache(sha256_cache)
    seen = {}
    digest = hashlib.sha256()
    digest.update(files.sha256_file(source.table).encode())
    if source.key_id:
        digest.update(source.key_id.encode())
    image_files = source.image_files()
    for name, path, key in image_files:
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = known.get(key)
        sha = entry[2] if entry and entry[:2] == stamp else files.sha256_file(path)
        seen[key] = [*stamp, sha]
        digest.update(name.encode())
        digest.update(sha.encode())
    if sha256_cache is not None and seen != {k: v for k, v in known.items() if k in seen}:
        Path(sha256_cache).parent.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(sha256_cache, {**known, **seen})
    record = {"component": "data_source", "fingerprint": digest.hexdigest(),
              "counts": {"image_files": len(image_files)}}
    return DataArtifact(data_dir, record, source)


def _read_cache(path: Path | None) -> dict:
    if path is None or not Path(path).is_file():
        return {}
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        return {}  # a damaged cache only costs a re-hash
