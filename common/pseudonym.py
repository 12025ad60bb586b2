"""Keyed pseudonyms, so a hospital's patient ids and DICOM UIDs never leave its own input.

A pseudonym is the HMAC-SHA256 of the identifier under a key the user keeps outside `--output_dir`
(default `~/.covid_cxr/pseudonym.key`, created on first use). Without the key a pseudonym cannot be
traced back, nor an identifier guessed and checked; with it, `python -m pipeline.manifest --lookup` maps
pseudonyms back inside the hospital. A lost key only loses that mapping: a new key names everyone anew
(and, through `key_id`, re-runs the stages). The key itself is never written anywhere but its own file.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path
from typing import Callable

from common import files
from common.errors import PipelineError

DEFAULT_KEY_PATH = Path("~/.covid_cxr/pseudonym.key")
KEY_BYTES = 32
# A DICOM UID (PS3.5 9.1): digits and dots, e.g. 1.2.840.113619.2.55...; file names are often one.
_UID_NAME = re.compile(r"[0-9]+(\.[0-9]+)+(\.(dcm|dicom|png|jpe?g))?", re.IGNORECASE)
# Six digits or more in a row: an accession number, a medical record number or a date (A1234567.dcm).
_NUMBER_RUN = re.compile(r"[0-9]{6,}")


def keyed_hash(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def patient_pseudonym(key: bytes, patient_id: str) -> str:
    return "pt-" + keyed_hash(key, "patient:" + patient_id)[:16]


def image_pseudonym(key: bytes, image: str, suffix: str) -> str:
    """`img-<hmac prefix><suffix>`, for an image whose own name would identify (a UID, a patient id)."""
    return "img-" + keyed_hash(key, "image:" + image)[:16] + suffix.lower()


def key_id(key: bytes) -> str:
    """Names the key in artifacts without revealing it: a new key changes it, so the stages re-run."""
    return keyed_hash(key, "covid_cxr key id")[:16]


def is_identifying_name(name: str) -> bool:
    """A file name that may identify: a UID, or one holding a long run of digits (an accession number, a record
    number, a date); such an image gets a pseudonym too."""
    return _UID_NAME.fullmatch(name) is not None or _NUMBER_RUN.search(name) is not None


def load_or_create_key(path: Path, output_dir: Path, notify: Callable[[str], None] = print) -> bytes:
    """The key at `path`, created there (readable by the user only) with a one-line notice if missing;
    refused inside `output_dir`, which is meant to be shared."""
    path = Path(path).expanduser().resolve()
    output_dir = Path(output_dir).resolve()
    if path == output_dir or output_dir in path.parents:
        raise PipelineError(f"--pseudonym_key={path} lies inside --output_dir={output_dir}: keep the key "
                            "outside anything you share")
    if not path.is_file() and _create_key(path):
        notify(f"note: created the pseudonym key {path}: keep it (outside --output_dir) to map pseudonyms back "
               "to patients with `python -m pipeline.manifest --lookup`")
    return load_key(path)


def _create_key(path: Path) -> bool:
    """A new key at `path` unless one is there by then (`files.write_new`: two first runs at once agree on
    one key, the later one reading the earlier one's); True if this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return files.write_new(path, secrets.token_hex(KEY_BYTES) + "\n", private=True)


def load_key(path: Path) -> bytes:
    """The key at `path`; a missing or malformed one is refused (a new key would map nothing back)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PipelineError(f"--pseudonym_key={path}: no key there (the key the pseudonyms were made with)")
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise PipelineError(f"--pseudonym_key={path}: not a key written by this pipeline (64 hex digits)")
    return key
