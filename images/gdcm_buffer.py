"""A pydicom decoder plugin, `gdcm_buffer`: JPEG Lossless (process 14) frames decoded by GDCM, as pydicom's own
GDCM plugin decodes them, but taken out of GDCM as bytes.

pydicom's plugin reads the decoded frame with `gdcm.Image.GetBuffer()`, which the Python binding returns as a
`str` (decoded as UTF-8 with surrogate escapes) that the plugin encodes back to bytes. Here GDCM decompresses the
frame to Explicit VR Little Endian and the bytes are copied once from its buffer: a 2,048 px 16-bit image in
52-56 ms against 76 ms (`bench/results/bench_dicom.txt`). The values are GDCM's, the
same as pydicom's plugin gives (`tests/images/test_dicom.py`). Grayscale only (X-rays): a colour frame is
refused, and `images.dicom` then decodes it in pydicom's own order of plugins.
"""

from __future__ import annotations

import ctypes

from pydicom import uid

DECODER_DEPENDENCIES = {uid.JPEGLosslessSV1: ("gdcm",), uid.JPEGLossless: ("gdcm",)}


def is_available(syntax: uid.UID) -> bool:
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    return syntax in DECODER_DEPENDENCIES


def decode_frame(src: bytes, runner) -> bytearray:
    """One encoded frame -> its stored values as little-endian bytes (the plugin interface pydicom calls)."""
    import gdcm

    if runner.samples_per_pixel != 1:
        raise ValueError("gdcm_buffer decodes grayscale frames only")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(
        gdcm.PhotometricInterpretation.GetPIType(runner.photometric_interpretation)))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str.__str__(runner.transfer_syntax))))
    bits_stored = runner.bits_stored
    image.SetPixelFormat(gdcm.PixelFormat(1, runner.bits_allocated, bits_stored, bits_stored - 1,
                                          runner.pixel_representation))
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.ExplicitVRLittleEndian))
    change.SetInput(image)
    image.thisown = False  # `change` holds it now and frees it by GDCM's reference count (freeing it twice crashes)
    if not change.Change():
        raise ValueError("GDCM could not decode the JPEG Lossless frame")
    value = change.GetOutput().GetDataElement().GetByteValue()
    if value is None:
        raise ValueError("GDCM decoded the JPEG Lossless frame to nothing")
    # Explicit VR pads an odd number of bytes to an even one: the frame is the pixels' bytes alone.
    length = min(int(str(value.GetLength())), runner.rows * runner.columns * ((runner.bits_allocated + 7) // 8))
    return bytearray((ctypes.c_char * length).from_address(int(value.GetVoidPointer())))
