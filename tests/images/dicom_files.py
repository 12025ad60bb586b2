"""DICOM files the tests write: a grey picture as a CR image in any lossless transfer syntax."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ComputedRadiographyImageStorage, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian,
                         JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless, generate_uid)


SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "sample_data" / "covid-chestxray-sample" / "images"
LOSSLESS_SYNTAXES = (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEGLosslessSV1,
                     JPEGLSLossless, JPEG2000Lossless)


def sample_gray(side: int = 128) -> np.ndarray:
    """The first embedded sample image as 8-bit grey, small so that every encoder runs fast."""
    first = sorted(SAMPLE_IMAGES.iterdir())[0]
    return np.asarray(Image.open(first).convert("L").resize((side, side + 8)))


def dataset(stored: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
            **elements) -> Dataset:
    """A CR chest PA image dataset holding `stored` (uint8, uint16 or int16) uncompressed."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.PatientName, ds.PatientID, ds.PatientAge, ds.PatientSex = "Test^Patient", "TEST-1", "065Y", "F"
    ds.set_pixel_data(stored, photometric, bits_stored or stored.dtype.itemsize * 8, generate_instance_uid=False)
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(stored.sum()), photometric])
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write(ds: Dataset, path: Path, syntax: str = ExplicitVRLittleEndian) -> Path:
    """`ds` saved as `syntax`: deflate and the native encoders through pydicom, JPEG Lossless and JPEG-LS
    through GDCM (pydicom has no encoder for them)."""
    ds = ds.copy()
    if syntax in (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
    elif syntax in (RLELossless, JPEG2000Lossless):
        ds.compress(syntax, generate_instance_uid=False)
        ds.save_as(path, enforce_file_format=True)
    else:
        _gdcm_transcode(ds, path, syntax)
    return path


def _gdcm_transcode(ds: Dataset, path: Path, syntax: str) -> None:
    import gdcm

    plain = path.with_name(path.name + ".plain.dcm")
    ds.save_as(plain, enforce_file_format=True)
    reader = gdcm.ImageReader()
    reader.SetFileName(str(plain))
    assert reader.Read(), f"gdcm cannot read {plain}"
    change = gdcm.ImageChangeTransferSyntax()
    target = {JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
              JPEGLSLossless: gdcm.TransferSyntax.JPEGLSLossless}[syntax]
    change.SetTransferSyntax(gdcm.TransferSyntax(target))
    change.SetInput(reader.GetImage())
    assert change.Change(), f"gdcm cannot encode {syntax.name}"
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write(), f"gdcm cannot write {path}"
    plain.unlink()
    assert dcmread(path).file_meta.TransferSyntaxUID == syntax
