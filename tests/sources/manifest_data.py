"""A generated hospital folder: sample X-rays as PNG under DICOM-UID names, sentinel patient ids."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from components import configs

SENTINEL = "PHI-SENTINEL-PATIENT-{:04d}"
UID = "1.2.840.113619.2.55.3.6046881{:02d}"
CLINICAL = {"went_icu": "0", "needed_supplemental_O2": "1", "intubation_present": "0", "extubated": ""}


def write_manifest(data_dir: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    header = header or list(dict.fromkeys(column for row in rows for column in row))
    path = data_dir / "manifest.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def hospital(data_dir: Path, images: int = 18, clinical: bool = True) -> list[dict[str, str]]:
    """`images` sample X-rays of images // 2 patients (one in three died, the last one's outcome unknown),
    saved as PNG named by UIDs, some in a folder named by the patient id; returns the manifest's rows."""
    sample = sorted((configs.SAMPLE_DATA_DIR / "images").iterdir())[:images]
    rows = []
    for i, source in enumerate(sample):
        patient = i // 2
        folder = data_dir / ("export" if i % 3 else SENTINEL.format(patient))
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{UID.format(i)}.png"
        Image.open(source).convert("L").resize((64, 64)).save(target)
        died = "" if patient == images // 2 - 1 else "1" if patient % 3 == 0 else "0"
        rows.append({"image": str(target.relative_to(data_dir)), "patient_id": SENTINEL.format(patient),
                     "died": died, "age": str(50 + 5 * patient), "sex": "MF"[patient % 2], "site": "ward-7",
                     "view": "" if i % 4 == 0 else "PA", "offset_days": str(i % 5),
                     **(CLINICAL if clinical else {}), "referring_doctor": "Dr. Nobody"})
    write_manifest(data_dir, rows)
    return rows


def identifiers(rows: list[dict[str, str]]) -> list[bytes]:
    """What must never leave the hospital: patient ids and the UIDs of the file names."""
    return sorted({row["patient_id"].encode() for row in rows} |
                  {Path(row["image"]).stem.encode() for row in rows} | {b"PHI-SENTINEL", b"1.2.840.113619"})
