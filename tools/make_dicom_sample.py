"""Write the DICOM twin of the embedded sample: what a hospital's PACS export of it would look like.

    python tools/make_dicom_sample.py                       # -> sample_data/covid-chestxray-dicom/

One small DICOM per usable frontal COVID-19 image of `sample_data/covid-chestxray-sample` (the rows
ingest keeps), with synthetic headers: CR or DX, ViewPosition from the metadata view, PatientAge and
PatientSex from the metadata, a synthetic PatientID (`SYNTH-0001`) and name, UIDs made
deterministically from the row. Pixels are the sample's, downsized to at most `LONGEST_SIDE` and
compressed losslessly (CR: 12 bits in JPEG 2000 Lossless, DX: 8 bits in RLE Lossless), with a window
that shows them as they are; the first file is MONOCHROME1 (stored inverted) so the sample exercises
that path. Every third file is named by its SOP Instance UID without a suffix, as PACS exports often
are. `manifest.csv` gives each file's patient, label and clinical columns; `NOTICE.md` the licences.
Running it twice gives the same bytes (no clock, no random UIDs), so the folder is committed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                         ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import files  # noqa: E402
from components import configs, ingest  # noqa: E402
from sources import upstream  # noqa: E402
from common.labels import NO_LABEL  # noqa: E402

SOURCE = configs.SAMPLE_DATA_DIR
OUTPUT = configs.DICOM_SAMPLE_DIR
LONGEST_SIDE = 256
MANIFEST_COLUMNS = ("image", "patient_id", "died", "age", "sex", "view", "offset_days", "went_icu",
                    "needed_supplemental_O2", "intubation_present", "extubated")
CLINICAL_COLUMNS = ("went_icu", "needed_supplemental_O2", "intubation_present", "extubated")
NAMED_BY_UID_EVERY = 3


def yes_no(value: str) -> str:
    """Y -> 1, N -> 0, anything else blank."""
    return {"Y": "1", "N": "0"}.get(value.strip().upper(), "")


def died(survival: str) -> str:
    label = upstream.mortality_from_survival(survival)
    return "" if label in (None, NO_LABEL) else str(label)


def dicom_age(age: str) -> str | None:
    """The metadata's age in years as a DICOM Age String (`072Y`), or None."""
    return f"{int(float(age)):03d}Y" if age.strip().replace(".", "", 1).isdigit() else None


def view_position(view: str) -> str:
    """`AP Supine`, `AP semi erect` ... -> AP; PA -> PA (DICOM's ViewPosition has no posture)."""
    return view.strip().split()[0].upper()


def _uid(*parts: str) -> str:
    return generate_uid(entropy_srcs=["covid-chestxray-dicom", *parts])


def _gray(path: Path) -> np.ndarray:
    image = Image.open(path).convert("L")
    scale = LONGEST_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return np.asarray(image)


def dicom_file(row: dict, index: int, patient_id: str, gray: np.ndarray) -> tuple[Dataset, str]:
    """(dataset, file name) of one image: CR at even positions, DX at odd ones; the first MONOCHROME1."""
    modality = "CR" if index % 2 == 0 else "DX"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage if modality == "CR" else DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = _uid(row["patientid"], row["filename"])
    ds.StudyInstanceUID = _uid(row["patientid"], row["offset"], "study")
    ds.SeriesInstanceUID = _uid(row["patientid"], row["filename"], "series")
    ds.PatientName = f"SYNTHETIC^{patient_id}"
    ds.PatientID = patient_id
    if dicom_age(row["age"]):
        ds.PatientAge = dicom_age(row["age"])
    if row["sex"].strip().upper() in ("M", "F"):
        ds.PatientSex = row["sex"].strip().upper()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = modality, "CHEST", view_position(row["view"])
    ds.BurnedInAnnotation = "NO"
    ds.InstanceNumber = 1
    if modality == "CR":  # 12 bits stored, as most CR plates
        photometric = "MONOCHROME1" if index == 0 else "MONOCHROME2"
        stored = gray.astype(np.uint16) * 16
        if photometric == "MONOCHROME1":
            stored = 4095 - stored
        ds.set_pixel_data(stored, photometric, 12, generate_instance_uid=False)
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        syntax = JPEG2000Lossless
    else:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.set_pixel_data(gray, "MONOCHROME2", 8, generate_instance_uid=False)
        ds.WindowCenter, ds.WindowWidth = 128, 256
        syntax = RLELossless
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.compress(syntax, generate_instance_uid=False)
    name = ds.SOPInstanceUID if index % NAMED_BY_UID_EVERY == NAMED_BY_UID_EVERY - 1 else \
        f"{Path(row['filename']).stem}.dcm"
    return ds, name


def make(source: Path, output: Path) -> list[dict[str, str]]:
    """Write the twin of `source` into `output` (built beside it, then renamed into place)."""
    examples = ingest.ingest(source, configs.FRONTAL_VIEWS)["examples"]
    patients: dict[str, str] = {}
    building = files.tmp_sibling(output)
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    manifest = []
    for index, (_, row) in enumerate(examples):
        patient_id = patients.setdefault(row["patientid"], f"SYNTH-{len(patients) + 1:04d}")
        ds, name = dicom_file(row, index, patient_id, _gray(source / upstream.IMAGES_DIR / row["filename"]))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        (building / name).write_bytes(buffer.getvalue())
        manifest.append({"image": name, "patient_id": patient_id, "died": died(row["survival"]),
                         "age": row["age"].strip(), "sex": ds.get("PatientSex", ""),
                         "view": row["view"].strip(), "offset_days": row["offset"].strip(),
                         **{column: yes_no(row[column]) for column in CLINICAL_COLUMNS}})
    with open(building / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(manifest)
    (building / "NOTICE.md").write_text(_notice(examples, manifest))
    if output.exists():
        retired = files.tmp_sibling(output.with_name(output.name + ".old"))
        os.replace(output, retired)
        os.replace(building, output)
        shutil.rmtree(retired)
    else:
        os.replace(building, output)
    return manifest


def _notice(examples, manifest) -> str:
    lines = [
        "# Image licences",
        "",
        f"Each file is a DICOM copy, downscaled to at most {LONGEST_SIDE} px on its longer side and stored losslessly, of an",
        "image of the embedded sample `sample_data/covid-chestxray-sample/`, under the same licence as that",
        "image (its `NOTICE.md` names each image's licence, doi and url; the sample is derived from the COVID-19",
        "Image Data Collection, Cohen et al., arXiv:2006.11988). The DICOM headers are synthetic: patient IDs",
        "(`SYNTH-0001`...), names and UIDs are made up; modality (CR or DX), age, sex and view come from the",
        "sample's `metadata.csv`. Written by `tools/make_dicom_sample.py`. Research use only; not for clinical use.",
        "",
        "| file | source image | licence |",
        "|---|---|---|",
    ]
    lines += [f"| {entry['image']} | {row['filename']} | {row['license']} |"
              for (_, row), entry in zip(examples, manifest)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    manifest = make(args.source, args.output)
    size = sum(p.stat().st_size for p in args.output.iterdir())
    print(f"{len(manifest)} DICOM files, {size / 1e6:.2f} MB -> {args.output}")


if __name__ == "__main__":
    main()
