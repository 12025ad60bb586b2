"""Data folders as rows for ingest: the upstream collection or a hospital's manifest, told apart by
their table (`manifest.csv` first, else `metadata.csv`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from common.errors import PipelineError
from sources.base import CLINICAL_COLUMNS, EXAMPLE_COLUMNS, Selection, Source
from sources.manifest import MANIFEST_NAME, ManifestSource
from sources.upstream import METADATA_NAME, UpstreamSource

__all__ = ["CLINICAL_COLUMNS", "EXAMPLE_COLUMNS", "Selection", "Source", "open_source"]


def open_source(data_dir: Path, pseudonym_key: Callable[[], bytes] | None = None) -> Source:
    """The source `data_dir` holds. `pseudonym_key` gives the key, asked for only by a manifest (so the
    upstream collection never creates one); every manifest row is checked here, before anything is written."""
    data_dir = Path(data_dir).resolve()
    if (data_dir / MANIFEST_NAME).is_file():
        if pseudonym_key is None:
            raise PipelineError(f"--data_dir={data_dir}: a manifest needs a pseudonym key (--pseudonym_key)")
        return ManifestSource(data_dir, pseudonym_key())
    if (data_dir / METADATA_NAME).is_file():
        return UpstreamSource(data_dir)
    raise PipelineError(f"--data_dir={data_dir}: no {METADATA_NAME} there (the layout of "
                        f"ieee8023/covid-chestxray-dataset: metadata.csv + images/) and no {MANIFEST_NAME} "
                        "(your own X-rays: docs/data.md)")
