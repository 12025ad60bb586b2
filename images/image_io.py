"""Open an image file safely and bring it to one 8-bit RGB-decodable form.

Ingest uses this to check every image before anything is written; the
TFRecord writer uses it again to get the bytes it stores. Common files (8-bit
gray or RGB JPEG/PNG) keep their original bytes; anything else (16-bit PNG,
RGBA, palette, CMYK JPEG, other formats) is converted once here to a lossless
8-bit RGB PNG, so the one TensorFlow decode in `preprocessing.py` handles all;
high-bit-depth gray is stretched by `preprocessing.stretch_to_uint8`, the
function serving applies to a 16-bit PNG it receives. DICOM files, recognised by
content whatever their name, are rendered by `dicom.render` (the standard's
grayscale pipeline) and stored as a lossless 8-bit gray PNG with their header
facts beside it.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from images import dicom
from images.checks import (MAX_PIXELS, MAX_SIDE, MIN_SIDE, ImageRejected,  # noqa: F401  (image_io's own names)
                           check_dimensions)


_KEEP_AS_IS = {("JPEG", "L"), ("JPEG", "RGB"), ("PNG", "L"), ("PNG", "RGB")}


@dataclasses.dataclass(frozen=True, eq=False)
class StandardImage:
    content: bytes | np.ndarray  # the file's bytes, or a DICOM's rendered uint8 grey pixels (see `encoded`)
    format: str  # "jpeg" or "png"
    width: int
    height: int
    source_mode: str
    converted: bool
    dicom: dicom.DicomFacts | None = None  # for a DICOM file: its header facts, for screening and reports

    @functools.cached_property
    def encoded(self) -> bytes:
        """The bytes TensorFlow decodes. A rendered DICOM is PNG-encoded here, on first use: ingest only
        checks that an image decodes, and the encoding costs as much as a compressed file's decode."""
        if isinstance(self.content, bytes):
            return self.content
        buffer = io.BytesIO()
        # zlib level 1: 5x faster than PIL's default 6 on a 2000 px radiograph (0.11 vs 0.58 s), 17% more bytes
        Image.fromarray(self.content).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


def resolve_inside(images_dir: Path, filename: str) -> Path:
    """Return the file's path, refusing names that leave `images_dir`."""
    if not filename or filename != filename.strip():
        raise ImageRejected("bad_filename", f"filename {filename!r} is empty or padded with spaces")
    relative = Path(filename)
    if relative.is_absolute() or ".." in relative.parts:
        raise ImageRejected("path_escape", f"filename {filename!r} points outside the images folder")
    root = Path(os.path.realpath(images_dir))
    real = Path(os.path.realpath(root / relative))
    if root != real and root not in real.parents:
        raise ImageRejected("path_escape", f"filename {filename!r} resolves to {real}, outside {root}")
    return root / relative


def load_standard_image(path: Path) -> StandardImage:
    """Decode `path` fully and return bytes TensorFlow decodes to 8-bit RGB."""
    if not path.exists():
        raise ImageRejected("missing_file", f"{path.name} does not exist")
    if not path.is_file():
        raise ImageRejected("not_a_file", f"{path.name} is not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as error:  # permissions, a vanished network share: named, and the run goes on
        raise ImageRejected("unreadable", f"{path.name}: {error.strerror or type(error).__name__}") from None
    if not raw:
        raise ImageRejected("empty_file", f"{path.name} has 0 bytes")
    if dicom.is_dicom(raw):
        return _rendered_dicom(raw, path.name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            check_dimensions(path.name, width, height)
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected("absurd_dimensions", f"{path.name}: {error}") from None
    except Image.UnidentifiedImageError:
        raise ImageRejected("not_an_image", f"{path.name} is not a readable image") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected("truncated_or_corrupt", f"{path.name}: {error}") from None

    fmt, mode = image.format or "", image.mode
    if (fmt, mode) in _KEEP_AS_IS:
        return StandardImage(raw, fmt.lower(), width, height, mode, converted=False)
    rgb = to_rgb8(image)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return StandardImage(buffer.getvalue(), "png", width, height, mode, converted=True)


def _rendered_dicom(raw: bytes, name: str) -> StandardImage:
    rendered = dicom.render(raw, name)
    height, width = rendered.pixels.shape
    facts = rendered.facts
    return StandardImage(rendered.pixels, "png", width, height, f"DICOM {facts.photometric} {facts.bits_stored}-bit",
                         converted=True, dicom=facts)


def to_rgb8(image: Image.Image) -> Image.Image:
    """Any PIL image to 8-bit RGB; high-bit-depth gray is stretched to its own range."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Imported here: it loads TensorFlow, which ingest's image-checking processes otherwise never need.
        from images import preprocessing
        gray = preprocessing.stretch_to_uint8(np.asarray(image, dtype=np.float64)).numpy()
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")
