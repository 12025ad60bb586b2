"""A generated hospital folder: sample X-rays as PNG (or DICOM) under DICOM-UID names, sentinel patient ids,
and, in DICOM, every identifying header attribute filled with a sentinel."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from components import configs
from tests.images import dicom_files

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


# PS3.15 Annex E's basic profile: attributes whose values identify a patient, a visit or a device, as
# (keyword, a sentinel value valid for its VR). Dates and times carry an improbable date, UIDs a made-up root.
SENTINEL_DATE, SENTINEL_UID_ROOT = "19010203", "1.2.826.0.1.3680043.99999"
BASIC_PROFILE = (
    ("PatientName", "PHI-SENTINEL^NAME"), ("OtherPatientNames", "PHI-SENTINEL^OTHER"),
    ("OtherPatientIDs", "PHI-SENTINEL-OTHERID"), ("PatientBirthDate", SENTINEL_DATE),
    ("PatientAddress", "PHI-SENTINEL-ADDRESS"), ("PatientTelephoneNumbers", "PHI-SENTINEL-PHONE"),
    ("MedicalRecordLocator", "PHI-SENTINEL-MRL"), ("PatientComments", "PHI-SENTINEL-COMMENT"),
    ("AdditionalPatientHistory", "PHI-SENTINEL-HISTORY"), ("AccessionNumber", "PHI-SENTINEL-ACC"),
    ("StudyID", "PHI-SENTINEL-SID"), ("StudyDate", SENTINEL_DATE), ("SeriesDate", SENTINEL_DATE),
    ("AcquisitionDate", SENTINEL_DATE), ("ContentDate", SENTINEL_DATE), ("StudyTime", "010203.040506"),
    ("InstitutionName", "PHI-SENTINEL-HOSPITAL"), ("InstitutionAddress", "PHI-SENTINEL-STREET"),
    ("InstitutionalDepartmentName", "PHI-SENTINEL-DEPT"), ("ReferringPhysicianName", "PHI-SENTINEL^REFERRER"),
    ("PerformingPhysicianName", "PHI-SENTINEL^PERFORMER"), ("NameOfPhysiciansReadingStudy", "PHI-SENTINEL^READER"),
    ("RequestingPhysician", "PHI-SENTINEL^REQUESTER"), ("OperatorsName", "PHI-SENTINEL^OPERATOR"),
    ("StationName", "PHI-SENTINEL-STN"), ("DeviceSerialNumber", "PHI-SENTINEL-SERIAL"),
    ("StudyDescription", "PHI-SENTINEL-STUDY"), ("SeriesDescription", "PHI-SENTINEL-SERIES"),
    ("StudyInstanceUID", SENTINEL_UID_ROOT + ".1"), ("SeriesInstanceUID", SENTINEL_UID_ROOT + ".2"),
    ("FrameOfReferenceUID", SENTINEL_UID_ROOT + ".3"),
)


def _identified_dicom(pixels: np.ndarray, patient_id: str, index: int) -> Dataset:
    """A CR chest image whose every basic-profile attribute, its ids and a private block hold sentinels."""
    ds = dicom_files.dataset(pixels, PatientID=patient_id, ViewPosition="")
    for keyword, value in BASIC_PROFILE:
        setattr(ds, keyword, value)
    ds.SOPInstanceUID = f"{SENTINEL_UID_ROOT}.4.{index}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    block = ds.private_block(0x0099, "PHI-SENTINEL-CREATOR", create=True)
    block.add_new(0x01, "LO", "PHI-SENTINEL-PRIVATE")
    return ds


def hospital(data_dir: Path, images: int = 18, clinical: bool = True, dicom: bool = False) -> list[dict[str, str]]:
    """`images` sample X-rays of images // 2 patients (one in three died, the last one's outcome unknown),
    saved as PNG (`dicom`: every other one as DICOM with identifying headers, `_identified_dicom`, as a PACS
    export beside older PNGs) named by UIDs, some in a folder named by the patient id; returns the manifest's
    rows."""
    sample = sorted((configs.SAMPLE_DATA_DIR / "images").iterdir())[:images]
    rows = []
    for i, source in enumerate(sample):
        patient = i // 2
        folder = data_dir / ("export" if i % 3 else SENTINEL.format(patient))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = Image.open(source).convert("L").resize((64, 64))
        if dicom and i % 2:
            target = folder / UID.format(i)  # as PACS exports name files: the UID, no suffix
            dicom_files.write(_identified_dicom(np.asarray(pixels), SENTINEL.format(patient), i), target)
        else:
            target = folder / f"{UID.format(i)}.png"
            pixels.save(target)
        died = "" if patient == images // 2 - 1 else "1" if patient % 3 == 0 else "0"
        rows.append({"image": str(target.relative_to(data_dir)), "patient_id": SENTINEL.format(patient),
                     "died": died, "age": str(50 + 5 * patient), "sex": "MF"[patient % 2], "site": "ward-7",
                     "view": "" if i % 4 == 0 else "PA", "offset_days": str(i % 5),
                     **(CLINICAL if clinical else {}), "referring_doctor": "Dr. Nobody"})
    write_manifest(data_dir, rows)
    return rows


def identifiers(rows: list[dict[str, str]]) -> list[bytes]:
    """What must never leave the hospital: patient ids, the UIDs of the file names and every header sentinel."""
    headers = {value.encode() for _, value in BASIC_PROFILE} | {SENTINEL_UID_ROOT.encode(), b"010203.040506"}
    return sorted({row["patient_id"].encode() for row in rows} | {Path(row["image"]).stem.encode() for row in rows}
                  | headers | {b"PHI-SENTINEL", b"1.2.840.113619"})
