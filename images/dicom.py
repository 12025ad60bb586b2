"""DICOM chest X-rays rendered the way the standard says, for every reader of images.

Hospital teams export from PACS, so DICOM is the usual input. `render` turns one
file's bytes into the 8-bit grey picture a radiologist's viewer shows, in the
order of PS3.3 C.11 (the grayscale pipeline): stored values -> Modality LUT
(Rescale Slope/Intercept or a Modality LUT Sequence) -> VOI LUT (a VOI LUT
Sequence, else the first window, else the pixels' own range with padding left
out) -> MONOCHROME1 / Presentation LUT inversion -> 0..255. `image_io` calls it,
so ingest, the TFRecord writer and `pipeline.score` all see the same pixels.

pydicom decodes the pixel data (the plugins in BUILD.md, "DICOM decoders"); the
LUT steps are written here rather than taken from `pydicom.pixels`, whose
`apply_voi` indexes with the LUT's own dtype (an 8-bit VOI LUT with more than
256 entries wraps), whose Modality LUT builds `uint12` for a 12-bit descriptor,
and whose windowing returns the stored range rather than 0..1.

`DicomFacts` carries what screening and reports need and nothing that names a
patient (no names, IDs, dates, UIDs or institution).
"""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pydicom.errors
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLossless, \
    JPEGLosslessSV1

# pydicom's checks of a value against its VR warn with the value itself (a name, a date, an id), into logs a
# hospital may share: a value that breaks rendering is refused by name instead (`render`).
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

from images import checks, gdcm_buffer

# Screening reasons: files that are DICOM and readable but not the study's input (frontal chest
# radiographs for presentation). Ingest filters, counts and names them; they are not errors.
DICOM_SCREEN_REASONS = ("dicom_lateral_view", "dicom_not_chest", "dicom_not_xray_modality",
                        "dicom_for_processing")
XRAY_MODALITIES = ("CR", "DX")
LATERAL_VIEWS = ("LL", "RL", "LATERAL", "LAT", "L")

_PREAMBLE_LENGTH = 128
_MAGIC = b"DICM"
# A file without the preamble starts with its first element's group, little endian: the file meta
# group (0002) or, with no meta either, the identifying group (0008).
_HEADERLESS_FIRST_GROUPS = (b"\x02\x00", b"\x08\x00")
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
_MAX_VALUE_TABLE = 1 << 20  # stored values spanning more than this are rendered pixel by pixel
_LOOKUP_BLOCK = 1 << 16  # pixels looked up at a time (their indices: 512 KiB, within a core's cache)
# JPEG 2000 Lossless through OpenJPEG (pylibjpeg) rather than pydicom's first choice, GDCM: both give the
# codestream's exact values, but OpenJPEG decodes on one thread with ~20% less CPU, and where every core
# already runs a decoder (ingest's workers), GDCM's second thread only takes that time from the other core.
# JPEG Lossless through GDCM still, but read out of GDCM as bytes (`images.gdcm_buffer`), not as pydicom's GDCM
# plugin reads it (through a Python string): the same values, a third less time.
_PREFERRED_PLUGINS = {JPEG2000Lossless: "pylibjpeg", JPEGLosslessSV1: "gdcm_buffer", JPEGLossless: "gdcm_buffer"}
_AGE_UNIT_YEARS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


@dataclasses.dataclass(frozen=True)
class DicomFacts:
    """What a DICOM header says about the picture, without anything identifying the patient."""

    view_position: str | None
    body_part: str | None
    modality: str | None
    presentation_intent: str | None
    burned_in_annotation: str | None
    photometric: str
    bits_stored: int
    patient_age_years: float | None
    patient_sex: str | None
    transfer_syntax: str


@dataclasses.dataclass(frozen=True)
class RenderedDicom:
    """What every reader gets: the displayed picture and the header facts to screen and report it by."""

    pixels: np.ndarray  # uint8 [rows, columns], 0 black
    facts: DicomFacts


def is_dicom(raw: bytes) -> bool:
    """Whether `raw` is a DICOM file, by content: `DICM` after the preamble, or a preamble-less
    stream whose header parses to a real image dataset."""
    if raw[_PREAMBLE_LENGTH:_PREAMBLE_LENGTH + 4] == _MAGIC:
        return True
    if raw[:2] not in _HEADERLESS_FIRST_GROUPS:
        return False
    try:
        return _is_image_dataset(_parse(raw, stop_before_pixels=True))
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return False


def is_dicom_file(path: Path) -> bool:
    """`is_dicom` of the file at `path`, reading only its first bytes unless it may be a preamble-less
    stream (whose header is then parsed whole): how files named by their UID, without a suffix, are found."""
    with open(path, "rb") as handle:
        start = handle.read(_PREAMBLE_LENGTH + len(_MAGIC))
        if start[_PREAMBLE_LENGTH:] == _MAGIC:
            return True
        return start[:2] in _HEADERLESS_FIRST_GROUPS and is_dicom(start + handle.read())


def render(raw: bytes, name: str) -> RenderedDicom:
    """The 8-bit grey picture of a single-frame DICOM file (PS3.3 C.11), or `ImageRejected`."""
    if not is_dicom(raw):
        raise checks.ImageRejected("not_an_image", f"{name} is not a DICOM file")
    try:
        dataset = _parse(raw, stop_before_pixels=False)
        facts = dicom_facts(dataset)
        stored = _stored_values(dataset, facts, raw, name)
        pixels = _displayed_per_value(dataset, stored)
        if pixels is None:
            pixels = displayed(dataset, stored)
    except checks.ImageRejected:
        raise
    except Exception as error:  # noqa: BLE001 - a vendor's broken header must be named, never crash a run
        # The error's type only: pydicom's messages can quote a header's values (names, dates, ids).
        raise checks.ImageRejected("truncated_or_corrupt",
                                   f"{name}: DICOM header unusable ({type(error).__name__})") from None
    return RenderedDicom(pixels, facts)


def displayed(dataset: Dataset, stored: np.ndarray) -> np.ndarray:
    """Stored values -> the uint8 picture shown: the grayscale pipeline on every pixel."""
    shown = voi_lut(dataset, modality_lut(dataset, stored), _padding_mask(dataset, stored))
    if _inverted(dataset):
        shown = 1.0 - shown
    return np.round(np.clip(shown, 0.0, 1.0) * 255.0).astype(np.uint8)


def _displayed_per_value(dataset: Dataset, stored: np.ndarray) -> np.ndarray | None:
    """`displayed`, computed once per stored value and looked up per pixel: the same bytes (every step
    maps a pixel by its value alone, and the pixels' own range is the range of the values they hold), a
    few times faster on a 12-bit radiograph than float64 on each of its millions of pixels. None for float
    data or a value span too wide for a table."""
    if stored.dtype.kind not in "iu" or stored.size == 0:
        return None
    low, high = int(stored.min()), int(stored.max())
    if high - low >= _MAX_VALUE_TABLE:
        return None
    if _maps_values_alone(dataset):
        values = np.arange(high - low + 1)  # every value in the range: a value absent changes nothing
    else:  # the values the pixels hold, for the range they span
        index = np.subtract(stored, low, dtype=np.intp)
        values = np.flatnonzero(np.bincount(index.ravel(), minlength=high - low + 1))
    table = np.zeros(high - low + 1, dtype=np.uint8)
    table[values] = displayed(dataset, (values + low).astype(stored.dtype))
    return _looked_up(table, stored, low)


def _looked_up(table: np.ndarray, stored: np.ndarray, low: int) -> np.ndarray:
    """`table[stored - low]`, in blocks of pixels whose int64 indices stay in the CPU's cache: the whole
    picture's (8 bytes a pixel) would go out to memory and back, twice the time of the lookup itself."""
    flat = stored.reshape(-1)
    shown = np.empty(flat.shape, dtype=table.dtype)
    index = np.empty(min(_LOOKUP_BLOCK, flat.size), dtype=np.intp)
    for start in range(0, flat.size, _LOOKUP_BLOCK):
        block = flat[start:start + _LOOKUP_BLOCK]
        np.subtract(block, low, out=index[:block.size], dtype=np.intp)
        # mode="clip": every index is inside the table already; clipping costs less than the check that raises
        np.take(table, index[:block.size], out=shown[start:start + block.size], mode="clip")
    return shown.reshape(stored.shape)


def _maps_values_alone(dataset: Dataset) -> bool:
    """Whether `displayed` maps each value without looking at the others: a VOI LUT or a window, after
    Rescale Slope/Intercept (monotonic: the lowest and highest modality values are those of the lowest
    and highest stored values). The pixels' own range and a Modality LUT Sequence (whose output range
    may lie inside the table) depend on which values the picture holds."""
    return not dataset.get("ModalityLUTSequence") and (bool(dataset.get("VOILUTSequence"))
                                                       or _window_of(dataset) is not None)


def screen(facts: DicomFacts) -> str | None:
    """The reason a readable DICOM is not a frontal chest radiograph for presentation, or None."""
    if facts.modality and facts.modality not in XRAY_MODALITIES:
        return "dicom_not_xray_modality"
    if facts.body_part and facts.body_part != "CHEST":
        return "dicom_not_chest"
    if facts.view_position and facts.view_position in LATERAL_VIEWS:
        return "dicom_lateral_view"
    if facts.modality == "DX" and facts.presentation_intent == "FOR PROCESSING":
        return "dicom_for_processing"
    return None


def dicom_facts(dataset: Dataset) -> DicomFacts:
    """The header's screening and reporting facts; upper-case, None where absent or empty."""
    return DicomFacts(
        view_position=_text(dataset, "ViewPosition"),
        body_part=_text(dataset, "BodyPartExamined"),
        modality=_text(dataset, "Modality"),
        presentation_intent=_text(dataset, "PresentationIntentType"),
        burned_in_annotation=_text(dataset, "BurnedInAnnotation"),
        photometric=_text(dataset, "PhotometricInterpretation") or "",
        bits_stored=int(dataset.get("BitsStored") or dataset.get("BitsAllocated") or 0),
        patient_age_years=age_in_years(_text(dataset, "PatientAge")),
        patient_sex=_text(dataset, "PatientSex") if _text(dataset, "PatientSex") in ("M", "F") else None,
        transfer_syntax=str(dataset.file_meta.TransferSyntaxUID),
    )


def age_in_years(value: str | None) -> float | None:
    """A DICOM Age String (`065Y`, `018M`, `010W`, `003D`) in years; anything else None."""
    match = re.fullmatch(r"(\d{1,3})([YMWD])", (value or "").strip().upper())
    return int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)] if match else None


# ---------------------------------------------------------------- reading
def _parse(raw: bytes, stop_before_pixels: bool) -> Dataset:
    """The dataset, with a transfer syntax even when the file had no meta header (as pydicom guessed it)."""
    # pydicom's warnings on a vendor's lenient header are left to show: `warnings.catch_warnings` would
    # change the process's filters under the other reader threads of `pipeline.score`.
    dataset = pydicom.dcmread(io.BytesIO(raw), force=True, stop_before_pixels=stop_before_pixels)
    if "TransferSyntaxUID" not in dataset.file_meta:
        implicit, little_endian = dataset.original_encoding
        if not little_endian:
            raise pydicom.errors.InvalidDicomError("big endian without a transfer syntax")
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return dataset


def _is_image_dataset(dataset: Dataset) -> bool:
    return "Rows" in dataset or "SOPClassUID" in dataset


def _text(dataset: Dataset, keyword: str) -> str | None:
    """An element's (first) value, stripped and upper-case; None when absent or empty."""
    value = dataset.get(keyword)
    if isinstance(value, (list, MultiValue)):
        value = value[0] if len(value) else None
    text = str(value).strip().upper() if value is not None else ""
    return text or None


def _stored_values(dataset: Dataset, facts: DicomFacts, raw: bytes, name: str) -> np.ndarray:
    """The decoded stored values (signed when Pixel Representation says so), or a named refusal."""
    if not any(keyword in dataset for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if _PIXEL_DATA_TAG in raw:  # pydicom drops an encapsulated element that the file's end cuts short
            raise checks.ImageRejected("dicom_truncated_pixel_data", f"{name}: the file ends inside its pixel data")
        raise checks.ImageRejected("dicom_no_pixel_data", f"{name} holds no pixel data (a report or "
                                     "structured document?)")
    frames = int(dataset.get("NumberOfFrames") or 1)
    if frames > 1:
        raise checks.ImageRejected("dicom_multi_frame", f"{name} holds {frames} frames; a radiograph has one")
    rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
    checks.check_dimensions(name, columns, rows)
    if facts.photometric not in ("MONOCHROME1", "MONOCHROME2") or int(dataset.get("SamplesPerPixel") or 1) != 1:
        raise checks.ImageRejected("dicom_not_grayscale", f"{name} is {facts.photometric or 'of no stated'} "
                                     "colour; radiographs are MONOCHROME1 or MONOCHROME2")
    syntax = UID(facts.transfer_syntax)
    if syntax.is_compressed and not _decoder_available(syntax):
        raise checks.ImageRejected("dicom_undecodable", f"{name} is encoded as {syntax.name} ({syntax}), "
                                     "which no installed decoder reads")
    if not syntax.is_compressed and "PixelData" in dataset:
        expected = rows * columns * int(dataset.get("BitsAllocated") or 16) // 8
        if len(dataset.PixelData) < expected:
            raise checks.ImageRejected("dicom_truncated_pixel_data", f"{name} has {len(dataset.PixelData)} bytes "
                                         f"of pixel data; {rows}x{columns} pixels need {expected}")
    try:
        return np.asarray(_decoded(dataset, syntax))
    except Exception as error:  # noqa: BLE001 - the decoders raise many types on damaged data
        raise checks.ImageRejected("dicom_undecodable" if syntax.is_compressed else "truncated_or_corrupt",
                                     f"{name}: the installed decoders cannot decode its {syntax.name} pixel "
                                     f"data: {error}") from None


def _decoded(dataset: Dataset, syntax: UID) -> np.ndarray:
    """The pixel array, decoded by the plugin `_PREFERRED_PLUGINS` names where it is installed and reads the
    file, else in pydicom's own order of plugins."""
    plugin = _PREFERRED_PLUGINS.get(syntax)
    if plugin and plugin in pydicom.pixels.get_decoder(syntax).available_plugins:
        try:
            return pydicom.pixels.pixel_array(dataset, decoding_plugin=plugin)
        except Exception:  # noqa: BLE001 - the other plugins may read what this one refuses
            pass
    return dataset.pixel_array


def _register_gdcm_buffer() -> None:
    """`images.gdcm_buffer` added to pydicom's JPEG Lossless decoders (after its own: pydicom's order is unchanged)."""
    for syntax in gdcm_buffer.DECODER_DEPENDENCIES:
        try:
            pydicom.pixels.get_decoder(syntax).add_plugin("gdcm_buffer", (gdcm_buffer.__name__, "decode_frame"))
        except ValueError:  # added already: this module imported again (importlib.reload)
            pass


_register_gdcm_buffer()


def _decoder_available(syntax: UID) -> bool:
    try:
        return pydicom.pixels.get_decoder(syntax).is_available
    except NotImplementedError:
        return False


# ---------------------------------------------------------------- the grayscale pipeline
def _padding_mask(dataset: Dataset, stored: np.ndarray) -> np.ndarray | None:
    """Pixels outside the picture (PS3.3 C.7.5.1.1.2): Pixel Padding Value, or the range it spans with
    Pixel Padding Range Limit, both in stored values."""
    if "PixelPaddingValue" not in dataset:
        return None
    value = int(dataset.PixelPaddingValue)
    limit = int(dataset.get("PixelPaddingRangeLimit", value))
    return (stored >= min(value, limit)) & (stored <= max(value, limit))


def modality_lut(dataset: Dataset, stored: np.ndarray) -> np.ndarray:
    """Stored values -> modality values (C.11.1): the Modality LUT Sequence, else slope and intercept."""
    if dataset.get("ModalityLUTSequence"):
        values, _ = _lookup(dataset, dataset.ModalityLUTSequence[0], stored)
        return values
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    return stored.astype(np.float64) * slope + intercept


def voi_lut(dataset: Dataset, values: np.ndarray, padding: np.ndarray | None = None) -> np.ndarray:
    """Modality values -> 0..1 (C.11.2): the first VOI LUT, else the first window, else the pixels' own
    range without the padding (as 16-bit PNGs are stretched)."""
    if dataset.get("VOILUTSequence"):
        lut_values, bits = _lookup(dataset, dataset.VOILUTSequence[0], values)
        return lut_values / float(2**bits - 1)
    first_window = _window_of(dataset)
    if first_window is not None:
        return window(values, *first_window)
    picture = values if padding is None or padding.all() else values[~padding]
    low, high = float(picture.min()), float(picture.max())
    return (values - low) / (high - low) if high > low else np.zeros(values.shape)


def _window_of(dataset: Dataset) -> tuple[float, float, str] | None:
    """The first window (center, width, VOI LUT Function) when it is one the formulas can apply, else None."""
    center, width = _first(dataset.get("WindowCenter")), _first(dataset.get("WindowWidth"))
    function = _text(dataset, "VOILUTFunction") or "LINEAR"
    if center is not None and width is not None and width > 0 and (width >= 1 or function != "LINEAR"):
        return center, width, function
    return None


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """A window to 0..1 by the formulas of C.11.2.1.2 (LINEAR, width >= 1), C.11.2.1.3.2 (LINEAR_EXACT)
    and C.11.2.1.3.1 (SIGMOID)."""
    values = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width == 1:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _inverted(dataset: Dataset) -> bool:
    """Whether the VOI output is shown with its minimum white.

    MONOCHROME1: "The minimum sample value is intended to be displayed as white after any VOI gray
    scale transformations have been performed" (C.7.6.3.1.2). Presentation LUT Shape INVERSE: "output
    after inversion is in P-Values" (C.11.6.1.2). Both name the one inversion of the VOI output, not
    two: the DX Image Module (C.8.11.3) says IDENTITY "shall be used if Photometric Interpretation is
    MONOCHROME2" and INVERSE "shall be used if Photometric Interpretation is MONOCHROME1", so a file
    carrying both is inverted once; INVERSE on a MONOCHROME2 file inverts it.
    """
    return (_text(dataset, "PhotometricInterpretation") == "MONOCHROME1"
            or _text(dataset, "PresentationLUTShape") == "INVERSE")


def _lookup(dataset: Dataset, item: Dataset, values: np.ndarray) -> tuple[np.ndarray, int]:
    """Apply a LUT item (C.11.1.1.1 and C.11.2.1.1) and return (output values, output bits).

    Descriptor traps met in real files are handled: 0 entries means 65536; a first mapped value stored
    unsigned for signed input (65535 for -1); an output bit depth below what the data reach (taken from
    the data then). Inputs below the first mapped value take the first entry, above the last the last.
    """
    entries, first_mapped, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536
    if first_mapped > 32767 and values.min() < 0:
        first_mapped -= 65536
    data = item.LUTData
    if isinstance(data, bytes):
        little = dataset.original_encoding[1] is not False
        dtype = np.dtype("<u2" if little else ">u2") if len(data) >= 2 * entries else np.uint8
        table = np.frombuffer(data, dtype=dtype)[:entries].astype(np.float64)
    else:
        table = np.asarray(data if isinstance(data, (list, MultiValue)) else [data],
                           dtype=np.float64)
    index = np.clip(np.round(values).astype(np.int64) - first_mapped, 0, len(table) - 1)
    bits = max(bits, int(table.max()).bit_length())
    return table[index], bits


def _first(value) -> float | None:
    """The first of a multi-valued number (Window Center may list several windows), or None."""
    if isinstance(value, (list, MultiValue)):
        value = value[0] if len(value) else None
    return float(value) if value is not None and str(value).strip() != "" else None
