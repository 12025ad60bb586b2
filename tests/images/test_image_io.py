import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import encode, xray_like
from images import image_io


def _decode(standard: image_io.StandardImage) -> np.ndarray:
    return tf.io.decode_image(standard.encoded, channels=3, expand_animations=False).numpy()


def _png_claiming(width: int, height: int) -> bytes:
    """A valid small PNG whose header is rewritten to claim a huge size."""
    data = bytearray(encode(Image.fromarray(xray_like()), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.jpg", b"", "empty_file"),
        ("text.jpg", b"this is not an image at all\n" * 10, "not_an_image"),
        ("bomb.png", None, "absurd_dimensions"),
        ("truncated.jpg", None, "truncated_or_corrupt"),
    ],
)
def test_bad_files_are_rejected_with_their_reason(tmp_path, name, content, reason):
    if name == "bomb.png":
        content = _png_claiming(100_000, 100_000)
    if name == "truncated.jpg":
        full = encode(Image.fromarray(xray_like((400, 300))), "JPEG", quality=95)
        content = full[: len(full) // 3]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(image_io.ImageRejected) as caught:
        image_io.load_standard_image(path)
    assert caught.value.reason == reason
    assert name in caught.value.detail


def test_missing_file_is_named(tmp_path):
    with pytest.raises(image_io.ImageRejected) as caught:
        image_io.load_standard_image(tmp_path / "nowhere.png")
    assert caught.value.reason == "missing_file" and "nowhere.png" in str(caught.value)


@pytest.mark.parametrize("filename", ["../outside.jpg", "/etc/passwd", "a/../../outside.jpg"])
def test_names_leaving_the_images_folder_are_refused(tmp_path, filename):
    (tmp_path / "images").mkdir()
    with pytest.raises(image_io.ImageRejected) as caught:
        image_io.resolve_inside(tmp_path / "images", filename)
    assert caught.value.reason == "path_escape"


def test_symlink_out_of_the_images_folder_is_refused(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    secret = tmp_path / "secret.png"
    secret.write_bytes(encode(Image.fromarray(xray_like()), "PNG"))
    os.symlink(secret, images / "link.png")
    with pytest.raises(image_io.ImageRejected) as caught:
        image_io.resolve_inside(images, "link.png")
    assert caught.value.reason == "path_escape"


def test_symlink_inside_the_images_folder_is_followed(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "real.png").write_bytes(encode(Image.fromarray(xray_like()), "PNG"))
    os.symlink(images / "real.png", images / "alias.png")
    assert image_io.resolve_inside(images, "alias.png") == images / "alias.png"


def test_common_files_keep_their_bytes(tmp_path):
    path = tmp_path / "gray.jpg"
    path.write_bytes(encode(Image.fromarray(xray_like()), "JPEG"))
    standard = image_io.load_standard_image(path)
    assert not standard.converted and standard.encoded == path.read_bytes() and standard.format == "jpeg"


def _sixteen_bit_png() -> bytes:
    values = (xray_like().astype(np.uint16) * 16)  # a 12-bit range stored in 16 bits
    return encode(Image.fromarray(values), "PNG")


@pytest.mark.parametrize(
    "name,make",
    [
        ("gray16.png", _sixteen_bit_png),
        ("rgba.png", lambda: encode(Image.fromarray(xray_like()).convert("RGBA"), "PNG")),
        ("palette.png", lambda: encode(Image.fromarray(xray_like()).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG")),
        ("cmyk.jpg", lambda: encode(Image.fromarray(xray_like()).convert("CMYK"), "JPEG")),
    ],
)
def test_unusual_encodings_become_8_bit_rgb(tmp_path, name, make):
    path = tmp_path / name
    path.write_bytes(make())
    standard = image_io.load_standard_image(path)
    assert standard.converted and standard.format == "png"
    pixels = _decode(standard)
    assert pixels.dtype == np.uint8 and pixels.shape == (80, 96, 3)
    reference = xray_like().astype(np.float64)
    gray = pixels[..., 0].astype(np.float64)
    # Same picture: strongly correlated with the source, and using the 8-bit range.
    assert np.corrcoef(gray.ravel(), reference.ravel())[0, 1] > 0.95
    assert gray.max() - gray.min() > 100


def test_sixteen_bit_is_stretched_to_its_own_range(tmp_path):
    path = tmp_path / "gray16.png"
    path.write_bytes(_sixteen_bit_png())
    pixels = _decode(image_io.load_standard_image(path))
    assert pixels.min() == 0 and pixels.max() == 255
