"""DICOM rendering by the standard's grayscale pipeline, refusals and screening, on real and written files."""

import dataclasses
import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLossless,
                         JPEGLosslessSV1, MPEG2MPML, RLELossless)

from images import dicom, image_io, preprocessing
from tests.images import dicom_files
from tests.images.dicom_files import dataset, sample_gray, to_bytes, write


def _render(ds: Dataset) -> np.ndarray:
    return dicom.render(to_bytes(ds), "test.dcm").pixels


def _stretched(values: np.ndarray) -> np.ndarray:
    """What the pixels' own range maps to: minimum black, maximum white."""
    values = values.astype(np.float64)
    return np.round((values - values.min()) / (values.max() - values.min()) * 255)


def _max_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _rejected(raw: bytes) -> str:
    with pytest.raises(image_io.ImageRejected) as caught:
        dicom.render(raw, "bad.dcm")
    return caught.value.reason


# ---------------------------------------------------------------- a real CR chest
@pytest.fixture(scope="module")
def rg1_uncr() -> bytes:
    """pydicom-data's CR chest PA: MONOCHROME1, 15 bits stored, a window in the header."""
    return open(get_testdata_file("RG1_UNCR.dcm", download=False), "rb").read()


def test_a_real_monochrome1_chest_renders_with_the_lungs_dark(rg1_uncr):
    rendered = dicom.render(rg1_uncr, "RG1_UNCR.dcm")
    pixels = rendered.pixels
    height, width = pixels.shape
    assert pixels.dtype == np.uint8 and (height, width) == (1955, 1841)
    right_lung = pixels[2 * height // 5:3 * height // 5, width // 5:2 * width // 5]
    mediastinum = pixels[2 * height // 5:3 * height // 5, 9 * width // 20:11 * width // 20]
    assert right_lung.mean() + 30 < mediastinum.mean()  # air dark, the spine and heart bright
    as_monochrome2 = dcmread(get_testdata_file("RG1_UNCR.dcm", download=False))
    as_monochrome2.PhotometricInterpretation = "MONOCHROME2"
    assert _max_difference(_render(as_monochrome2), 255 - pixels.astype(int)) <= 1
    assert rendered.facts == dicom.DicomFacts(
        view_position="PA", body_part="CHEST", modality="CR", presentation_intent=None, burned_in_annotation=None,
        photometric="MONOCHROME1", bits_stored=15, patient_age_years=None, patient_sex="F",
        transfer_syntax=ExplicitVRLittleEndian)


def test_facts_hold_nothing_that_identifies_a_patient():
    names = {field.name for field in dataclasses.fields(dicom.DicomFacts)}
    assert not names & {"patient_name", "patient_id", "study_date", "institution", "sop_instance_uid"}
    facts = dicom.render(to_bytes(dataset(sample_gray())), "x.dcm").facts
    values = " ".join(str(v) for v in dataclasses.asdict(facts).values())
    assert "TEST" not in values.upper() and "1.2.826" not in values  # the name, ID and pydicom's UID root
    assert facts.patient_age_years == 65 and facts.patient_sex == "F"


def test_load_standard_image_gives_a_gray_png_with_the_facts(tmp_path, rg1_uncr):
    path = tmp_path / "1.2.840.113619.2.55.3"  # named by its UID, no suffix, as PACS exports often are
    path.write_bytes(rg1_uncr)
    standard = image_io.load_standard_image(path)
    assert (standard.format, standard.converted, standard.source_mode) == ("png", True, "DICOM MONOCHROME1 15-bit")
    assert (standard.width, standard.height) == (1841, 1955) and standard.dicom.modality == "CR"
    decoded = preprocessing.decode_image(standard.encoded).numpy()
    expected = dicom.render(rg1_uncr, path.name).pixels
    assert np.array_equal(decoded, np.repeat(expected[..., None], 3, axis=2))


def test_the_format_is_told_by_content_not_by_suffix(tmp_path):
    gray = sample_gray()
    disguised = write(dataset(gray, WindowCenter=128, WindowWidth=256), tmp_path / "x-ray.jpg")
    assert image_io.load_standard_image(disguised).dicom is not None
    png_named_dcm = tmp_path / "image.dcm"
    png_named_dcm.write_bytes((dicom_files.SAMPLE_IMAGES / sorted(p.name for p in dicom_files.SAMPLE_IMAGES.iterdir())[0]).read_bytes())
    assert image_io.load_standard_image(png_named_dcm).dicom is None
    assert not dicom.is_dicom(png_named_dcm.read_bytes()) and not dicom.is_dicom(b"\x02\x00 not a header" * 20)


# ---------------------------------------------------------------- lossless encodings
@pytest.mark.parametrize("syntax", dicom_files.LOSSLESS_SYNTAXES, ids=lambda s: s.name.split(" ")[0])
@pytest.mark.parametrize("bits", [8, 16])
def test_every_lossless_encoding_renders_back_the_source_pixels(tmp_path, syntax, bits):
    gray = sample_gray()
    if bits == 8:  # a window that maps 0..255 onto itself
        ds = dataset(gray, WindowCenter=128, WindowWidth=256)
        expected = gray
    else:  # no window: the pixels' own range, as 16-bit PNGs are stretched
        ds = dataset(gray.astype(np.uint16) * 257 + 3)
        expected = _stretched(gray)
    path = write(ds, tmp_path / f"{bits}.dcm", syntax)
    rendered = dicom.render(path.read_bytes(), path.name)
    assert rendered.facts.transfer_syntax == syntax
    assert _max_difference(rendered.pixels, expected) <= 1


# ---------------------------------------------------------------- the grayscale pipeline
def test_monochrome1_is_inverted_after_the_window():
    gray = sample_gray()
    assert _max_difference(_render(dataset(gray, "MONOCHROME1", WindowCenter=128, WindowWidth=256)),
                           255 - gray.astype(int)) <= 1


def test_presentation_lut_inverse_inverts_and_with_monochrome1_inverts_once():
    gray = sample_gray()
    window = {"WindowCenter": 128, "WindowWidth": 256}
    inverse = _render(dataset(gray, PresentationLUTShape="INVERSE", **window))
    assert _max_difference(inverse, 255 - gray.astype(int)) <= 1
    monochrome1 = _render(dataset(gray, "MONOCHROME1", **window))
    both = _render(dataset(gray, "MONOCHROME1", PresentationLUTShape="INVERSE", **window))
    assert np.array_equal(both, monochrome1)
    identity = _render(dataset(gray, PresentationLUTShape="IDENTITY", **window))
    assert _max_difference(identity, gray) <= 1


def test_a_negative_rescale_slope_is_applied_before_the_window():
    gray = sample_gray()
    stored = (1000 - gray.astype(np.uint16) * 2)  # modality value = -0.5 * stored + 500 = gray
    windowed = _render(dataset(stored, RescaleSlope=-0.5, RescaleIntercept=500, WindowCenter=128, WindowWidth=256))
    assert _max_difference(windowed, gray) <= 1
    own_range = _render(dataset(stored, RescaleSlope=-0.5, RescaleIntercept=500))
    assert _max_difference(own_range, _stretched(gray)) <= 1  # bright stays bright, not inverted


def test_signed_pixels_render_from_their_signed_values():
    gray = sample_gray()
    stored = (gray.astype(np.int16) * 16 - 2048)  # 12 bits, two's complement, half of them negative
    assert stored.min() < 0
    assert _max_difference(_render(dataset(stored, bits_stored=12)), _stretched(gray)) <= 1
    windowed = _render(dataset(stored, bits_stored=12, WindowCenter=-8, WindowWidth=4097))
    assert _max_difference(windowed, gray) <= 1


def test_a_voi_lut_sequence_comes_before_the_window_and_its_descriptor_is_checked():
    gray = sample_gray()
    stored = gray.astype(np.uint16) * 16  # 12 bits
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new("LUTData", "US", [4095 - i for i in range(4096)])  # an inverting LUT, output 12 bits in a 16-bit descriptor
    ds = dataset(stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096, VOILUTSequence=[item])
    expected = np.round((4095 - stored.astype(np.float64)) / 65535 * 255)
    assert _max_difference(_render(ds), expected) <= 1
    item.LUTDescriptor = [4096, 0, 8]  # a descriptor claiming 8 bits for 12-bit data: the data decide
    assert _max_difference(_render(ds), 255 - gray.astype(int)) <= 1
    item.LUTDescriptor = [0, 0, 16]  # 0 entries means 65536; so many entries only fit in OW
    item.add_new("LUTData", "OW", np.arange(65536, dtype="<u2").tobytes())
    assert _max_difference(_render(ds), np.round(stored / 65535 * 255)) <= 1


def test_a_modality_lut_sequence_replaces_slope_and_intercept():
    gray = sample_gray()
    item = Dataset()
    item.LUTDescriptor = [256, 0, 12]  # 12 output bits: pydicom's own lookup would build a `uint12` dtype
    item.add_new("LUTData", "US", [4095 - 16 * i for i in range(256)])
    ds = dataset(gray, ModalityLUTSequence=[item], RescaleSlope=5, RescaleIntercept=7, WindowCenter=2048,
                 WindowWidth=4096)
    assert _max_difference(_render(ds), 255 - gray.astype(int)) <= 1


def test_colour_is_refused_by_name():
    rgb = np.repeat(sample_gray()[..., None], 3, axis=2)
    assert _rejected(to_bytes(dataset(rgb, "RGB"))) == "dicom_not_grayscale"


def test_a_sigmoid_window_follows_the_standard_formula():
    ramp = np.tile(np.arange(0, 1024, 4, dtype=np.uint16), (32, 1))
    rendered = _render(dataset(ramp, WindowCenter=512, WindowWidth=256, VOILUTFunction="SIGMOID"))
    expected = np.round(255 / (1 + np.exp(-4 * (ramp - 512.0) / 256)))
    assert _max_difference(rendered, expected) <= 1
    linear = _render(dataset(ramp, WindowCenter=512, WindowWidth=256))
    assert _max_difference(linear, np.round(np.clip((ramp - 511.5) / 255 + 0.5, 0, 1) * 255)) <= 1
    assert _max_difference(rendered, linear) > 10
    exact = _render(dataset(ramp, WindowCenter=512, WindowWidth=256, VOILUTFunction="LINEAR_EXACT"))
    assert _max_difference(exact, np.round(np.clip((ramp - 512.0) / 256 + 0.5, 0, 1) * 255)) <= 1


def test_an_invalid_window_falls_back_to_the_pixels_range_and_a_broken_header_is_named():
    gray = sample_gray()
    assert _max_difference(_render(dataset(gray, WindowCenter=128, WindowWidth=0)), _stretched(gray)) <= 1
    number_of_frames = b"\x28\x00\x08\x00IS\x02\x007 "  # (0028,0008) IS "7 ", explicit VR little endian
    raw = to_bytes(dataset(gray, NumberOfFrames=7))
    assert number_of_frames in raw
    assert _rejected(raw.replace(number_of_frames, number_of_frames[:-2] + b"x ")) == "truncated_or_corrupt"


def test_pixel_padding_is_left_out_of_the_range():
    gray = sample_gray()
    stored = gray.astype(np.uint16) * 4 + 1000
    stored[:, :10] = 0  # a collimator border the modality filled with padding
    padded = _render(dataset(stored, PixelPaddingValue=0))
    assert _max_difference(padded[:, 10:], _stretched(gray[:, 10:])) <= 1
    unmarked = _render(dataset(stored))
    assert _max_difference(unmarked[:, 10:], _stretched(gray[:, 10:])) > 50  # what ignoring it would do
    stored[:, :10] = np.arange(10, dtype=np.uint16)  # a padding range 0..9
    ranged = _render(dataset(stored, PixelPaddingValue=0, PixelPaddingRangeLimit=9))
    assert _max_difference(ranged[:, 10:], _stretched(gray[:, 10:])) <= 1


# ---------------------------------------------------------------- files without a preamble
def _lut_item(entries: int, first_mapped: int, bits: int, data: np.ndarray) -> Dataset:
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [entries, first_mapped, bits])
    item.add_new("LUTData", "US", [int(v) for v in data])
    return item


_CURVE = (np.sin(np.linspace(0, 3, 4096)) ** 2 * 4095).astype(np.uint16)  # not monotonic


@pytest.mark.parametrize("elements", [
    {"WindowCenter": 2048, "WindowWidth": 1500},
    {"WindowCenter": 1800, "WindowWidth": 900, "VOILUTFunction": "SIGMOID"},
    {"WindowCenter": 1000, "WindowWidth": 0.5, "VOILUTFunction": "LINEAR_EXACT"},
    {"WindowCenter": 2048, "WindowWidth": 1500, "PhotometricInterpretation": "MONOCHROME1"},
    {"RescaleSlope": -2, "RescaleIntercept": 100, "WindowCenter": -3000, "WindowWidth": 4000},
    {"RescaleSlope": -2, "RescaleIntercept": 100, "PresentationLUTShape": "INVERSE"},
    {"PixelPaddingValue": 0, "PixelPaddingRangeLimit": 9},
    {"PixelPaddingValue": 0, "PixelPaddingRangeLimit": 9, "PhotometricInterpretation": "MONOCHROME1"},
    {"VOILUTSequence": [_lut_item(4096, 0, 12, _CURVE)]},
    {"ModalityLUTSequence": [_lut_item(4096, 0, 12, _CURVE)]},
    {"ModalityLUTSequence": [_lut_item(4096, 0, 12, _CURVE)], "WindowCenter": 2000, "WindowWidth": 1000},
], ids=["window", "sigmoid", "linear_exact", "window_monochrome1", "slope_window", "slope_inverse",
        "padding_own_range", "padding_monochrome1", "voi_lut_sequence", "modality_lut_own_range",
        "modality_lut_window"])
@pytest.mark.parametrize("bits", [12, 16])
def test_rendering_once_per_value_gives_the_bytes_of_every_pixel_through_the_pipeline(elements, bits):
    """Whether the table covers the values present or the whole range between them, every pixel gets the
    byte the float pipeline gives it, unsigned and signed, with values absent inside the range."""
    stored = np.random.default_rng(bits).integers(200, 2 ** bits - 96, (64, 72)).astype(np.uint16)
    stored[:, :5] = np.arange(5, dtype=np.uint16)  # padding there, else just dark values
    ds = dataset(stored, bits_stored=bits, **elements)
    assert np.array_equal(dicom._displayed_per_value(ds, stored), dicom.displayed(ds, stored))
    signed = (stored.astype(np.int32) - 2 ** (bits - 1)).astype(np.int16)
    ds = dataset(signed, bits_stored=bits, PixelRepresentation=1, **elements)
    assert np.array_equal(dicom._displayed_per_value(ds, signed), dicom.displayed(ds, signed))


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLosslessSV1, JPEGLossless], ids=lambda s: s.name[:20])
def test_the_preferred_decoder_reads_what_every_other_decoder_reads(tmp_path, monkeypatch, syntax):
    import pydicom.pixels
    plugins = pydicom.pixels.get_decoder(syntax).available_plugins
    # Without the preferred plugin the preferred path is never taken and the comparison below would be of one
    # decoder with itself.
    assert dicom._PREFERRED_PLUGINS[syntax] in plugins and len(plugins) > 1, plugins
    gray = sample_gray().astype(np.uint16) * 16 + np.arange(136 * 128).reshape(136, 128).astype(np.uint16) % 16
    wide = gray.astype(np.uint16) * 16 + 5  # all 16 bits used
    for name, stored, bits, elements in (
            ("unsigned 12 bits", gray, 12, {}),
            ("signed 12 bits", (gray.astype(np.int32) - 2048).astype(np.int16), 12, {"PixelRepresentation": 1}),
            ("8 bits", sample_gray(), 8, {}), ("16 bits", wide, 16, {})):
        path = write(dataset(stored, bits_stored=bits, **elements), tmp_path / f"{name}.dcm",
                     JPEGLosslessSV1 if syntax == JPEGLossless else syntax)
        if syntax == JPEGLossless:  # GDCM encodes SV1 only; a first-order predictor is one of process 14's seven
            relabelled = dcmread(path)
            relabelled.file_meta.TransferSyntaxUID = JPEGLossless
            relabelled.save_as(path, enforce_file_format=True)
        raw = path.read_bytes()
        for plugin in plugins:  # each decoder, named explicitly, reads the lossless pixels as they were stored
            decoded = pydicom.pixels.pixel_array(dcmread(io.BytesIO(raw)), decoding_plugin=plugin)
            assert decoded.dtype == stored.dtype and np.array_equal(decoded, stored), (name, plugin)
        preferred = dicom.render(raw, "x.dcm").pixels
        monkeypatch.setattr(dicom, "_PREFERRED_PLUGINS", {})
        assert np.array_equal(preferred, dicom.render(raw, "x.dcm").pixels), name
        monkeypatch.undo()
        ds = dcmread(io.BytesIO(raw))
        assert np.array_equal(dicom._decoded(ds, ds.file_meta.TransferSyntaxUID), stored), name


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
def test_the_gdcm_buffer_decoder_reads_pydicoms_jpeg_lossless_files_as_its_gdcm_plugin_does(name):
    import pydicom.pixels
    ds = dcmread(get_testdata_file(name))  # signed 16-bit 1024 x 256; unsigned 8-bit 768 x 1024
    by_gdcm = pydicom.pixels.pixel_array(ds, decoding_plugin="gdcm")
    by_buffer = pydicom.pixels.pixel_array(ds, decoding_plugin="gdcm_buffer")
    assert by_buffer.dtype == by_gdcm.dtype and np.array_equal(by_buffer, by_gdcm)


def test_the_gdcm_buffer_decoder_is_the_one_used_for_jpeg_lossless(tmp_path, monkeypatch):
    import pydicom.pixels
    used = []
    real = pydicom.pixels.pixel_array
    monkeypatch.setattr(pydicom.pixels, "pixel_array",
                        lambda ds, **kw: used.append(kw.get("decoding_plugin")) or real(ds, **kw))
    path = write(dataset(sample_gray(), WindowCenter=128, WindowWidth=256), tmp_path / "x.dcm", JPEGLosslessSV1)
    assert _max_difference(dicom.render(path.read_bytes(), "x.dcm").pixels, sample_gray()) <= 1
    assert used == ["gdcm_buffer"]


def test_a_header_without_preamble_is_read(rg1_uncr):
    whole = dicom.render(rg1_uncr, "RG1_UNCR.dcm").pixels
    without_preamble = rg1_uncr[132:]  # the file meta group first, as some exporters write
    assert dicom.is_dicom(without_preamble)
    assert np.array_equal(dicom.render(without_preamble, "x").pixels, whole)
    ds = dataset(sample_gray(), WindowCenter=128, WindowWidth=256)
    bare = io.BytesIO()
    ds.save_as(bare, enforce_file_format=False, implicit_vr=False, little_endian=True)  # no meta at all
    raw = bare.getvalue()
    assert raw[128:132] != b"DICM" and dicom.is_dicom(raw)
    assert _max_difference(dicom.render(raw, "x").pixels, sample_gray()) <= 1


def test_a_file_is_told_dicom_by_its_content_whatever_its_name(rg1_uncr, tmp_path):
    for name, raw in (("1.2.840.1", rg1_uncr), ("1.2.840.2", rg1_uncr[132:]), ("report", b"\x02\x00 not" * 50),
                      ("picture.dcm", b"\x89PNG\r\n\x1a\n" + bytes(200))):
        (tmp_path / name).write_bytes(raw)
    assert [dicom.is_dicom_file(tmp_path / name) for name in ("1.2.840.1", "1.2.840.2", "report", "picture.dcm")] \
        == [True, True, False, False]


# ---------------------------------------------------------------- refusals, each named
def test_no_pixel_data_is_refused():
    ds = dataset(sample_gray())
    del ds.PixelData
    assert _rejected(to_bytes(ds)) == "dicom_no_pixel_data"


def test_multi_frame_is_refused():
    frames = np.stack([sample_gray(), sample_gray()])
    ds = dataset(frames)
    assert int(ds.NumberOfFrames) == 2 and _rejected(to_bytes(ds)) == "dicom_multi_frame"


def test_truncated_pixel_data_is_refused(tmp_path):
    raw = to_bytes(dataset(sample_gray()))
    assert _rejected(raw[:-1000]) == "dicom_truncated_pixel_data"
    compressed = write(dataset(sample_gray()), tmp_path / "j2k.dcm", JPEG2000Lossless).read_bytes()
    assert _rejected(compressed[:len(compressed) // 2]) == "dicom_truncated_pixel_data"


def test_damaged_compressed_pixel_data_is_undecodable(tmp_path):
    compressed = bytearray(write(dataset(sample_gray()), tmp_path / "j2k.dcm", JPEG2000Lossless).read_bytes())
    codestream = compressed.index(b"\xff\x4f\xff\x51")  # the JPEG 2000 SOC and SIZ markers
    compressed[codestream:codestream + 64] = bytes(64)  # same lengths, no codestream header
    assert _rejected(bytes(compressed)) == "dicom_undecodable"


def test_damaged_jpeg_lossless_data_is_undecodable_through_the_gdcm_buffer_decoder(tmp_path):
    compressed = bytearray(write(dataset(sample_gray()), tmp_path / "jpeg.dcm", JPEGLosslessSV1).read_bytes())
    frame = compressed.index(b"\xff\xd8\xff")  # the JPEG SOI marker and the marker after it
    compressed[frame:frame + 64] = bytes(64)  # same lengths, no JPEG header
    assert _rejected(bytes(compressed)) == "dicom_undecodable"


def test_a_colour_jpeg_lossless_file_is_left_to_pydicoms_own_gdcm_plugin():
    import pydicom.pixels
    ds = dcmread(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))  # RGB, JPEG Lossless SV1: gdcm_buffer refuses it
    with pytest.raises(RuntimeError, match="gdcm_buffer decodes grayscale frames only"):
        pydicom.pixels.pixel_array(ds, decoding_plugin="gdcm_buffer")
    assert np.array_equal(dicom._decoded(ds, ds.file_meta.TransferSyntaxUID),
                          pydicom.pixels.pixel_array(ds, decoding_plugin="gdcm"))


def test_a_transfer_syntax_without_decoder_is_refused_by_name():
    ds = dataset(sample_gray())
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(100)])
    with pytest.raises(image_io.ImageRejected) as caught:
        dicom.render(to_bytes(ds), "video.dcm")
    assert caught.value.reason == "dicom_undecodable"
    assert "video.dcm" in caught.value.detail and "MPEG2" in caught.value.detail


def test_not_dicom_is_not_an_image(tmp_path):
    assert _rejected(b"just some text, not a header" * 20) == "not_an_image"
    text = tmp_path / "notes.dcm"
    text.write_text("a text file named .dcm\n" * 10)
    with pytest.raises(image_io.ImageRejected) as caught:
        image_io.load_standard_image(text)
    assert caught.value.reason == "not_an_image"


# ---------------------------------------------------------------- screening
def _facts(**changes) -> dicom.DicomFacts:
    return dataclasses.replace(dicom.render(to_bytes(dataset(sample_gray())), "x").facts, **changes)


@pytest.mark.parametrize("changes,reason", [
    ({}, None),
    ({"view_position": "AP"}, None),
    ({"view_position": None, "body_part": None, "modality": None}, None),
    ({"view_position": "LL"}, "dicom_lateral_view"),
    ({"view_position": "RL"}, "dicom_lateral_view"),
    ({"view_position": "LATERAL"}, "dicom_lateral_view"),
    ({"body_part": "ABDOMEN"}, "dicom_not_chest"),
    ({"modality": "CT"}, "dicom_not_xray_modality"),
    ({"modality": "DX", "presentation_intent": "FOR PROCESSING"}, "dicom_for_processing"),
    ({"modality": "DX", "presentation_intent": "FOR PRESENTATION"}, None),
])
def test_screening_names_what_is_not_a_frontal_chest_radiograph(changes, reason):
    assert dicom.screen(_facts(**changes)) == reason
    assert reason is None or reason in dicom.DICOM_SCREEN_REASONS


def test_screening_reads_the_header_values():
    ds = dataset(sample_gray(), ViewPosition="LL", BodyPartExamined="CHEST")
    assert dicom.screen(dicom.render(to_bytes(ds), "x").facts) == "dicom_lateral_view"
    ds = dataset(sample_gray(), Modality="DX", PresentationIntentType="FOR PROCESSING")
    assert dicom.screen(dicom.render(to_bytes(ds), "x").facts) == "dicom_for_processing"


@pytest.mark.parametrize("text,years", [("065Y", 65), ("018M", 1.5), ("002W", 14 / 365.25), ("003D", 3 / 365.25),
                                        ("", None), ("65", None), (None, None)])
def test_patient_age_strings_become_years(text, years):
    assert dicom.age_in_years(text) == pytest.approx(years) if years is not None else dicom.age_in_years(text) is None


def test_deflated_files_are_smaller_and_render_the_same(tmp_path):
    ds = dataset(sample_gray(), WindowCenter=128, WindowWidth=256)
    plain = write(ds, tmp_path / "plain.dcm", ExplicitVRLittleEndian)
    deflated = write(ds, tmp_path / "deflated.dcm", DeflatedExplicitVRLittleEndian)
    rle = write(ds, tmp_path / "rle.dcm", RLELossless)
    assert deflated.stat().st_size < plain.stat().st_size
    renders = [dicom.render(p.read_bytes(), p.name).pixels for p in (plain, deflated, rle)]
    assert all(np.array_equal(renders[0], r) for r in renders[1:])
