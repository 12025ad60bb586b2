"""What makes an image file unusable, shared by every reader (image_io for PNG/JPEG, dicom for DICOM): the
named rejection and the size limits checked from a header before anything is decoded."""

from __future__ import annotations

# A chest X-ray is at most a few thousand pixels a side; anything far larger is
# a decompression bomb or a broken header, and is refused before decoding.
MAX_PIXELS = 60_000_000
MAX_SIDE = 20_000
MIN_SIDE = 16


class ImageRejected(Exception):
    """An image that cannot be used, with a short reason code and detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_dimensions(name: str, width: int, height: int) -> None:
    """Refuse decompression bombs and broken headers before decoding, and images too small to be X-rays."""
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise ImageRejected(
            "absurd_dimensions",
            f"{name} claims {width}x{height} pixels (limit {MAX_PIXELS} pixels, {MAX_SIDE} a side)",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageRejected("absurd_dimensions", f"{name} is only {width}x{height} pixels")
