"""Encoding and inspecting images in Python (Pillow) for the keras_face writers."""

import io

import numpy as np
from PIL import Image

_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)
IMAGE_FORMATS = ("jpeg", "png")


def image_format_of(data):
    """Returns `"jpeg"`, `"png"`, `"gif"`, `"bmp"`, `"webp"` or `None` from the leading bytes."""
    data = bytes(data[:16])
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_image_format(image_format):
    image_format = str(image_format).lower()
    if image_format == "jpg":
        image_format = "jpeg"
    if image_format not in IMAGE_FORMATS:
        raise ValueError(
            f"`image_format` must be one of {IMAGE_FORMATS}. "
            f"Received: image_format={image_format!r}"
        )
    return image_format


def check_quality(quality):
    if not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"`quality` must be an int in [1, 100]. Received: quality={quality!r}")
    return int(quality)


def as_uint8_rgb(image, what="image"):
    """Validates an (H, W, 3) or (H, W) array of 0..255 values and returns it as uint8 RGB."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(
            f"Each {what} must be an (H, W, 3) or (H, W) array. Received: shape={array.shape}"
        )
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise ValueError(f"The {what} contains NaN or infinite values.")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"The {what} must hold values in 0..255. "
                f"Received: min={array.min()}, max={array.max()}"
            )
        array = np.round(array).astype(np.uint8)
    return np.ascontiguousarray(array)


def encode_image(image, image_format="jpeg", quality=95):
    """Encodes an (H, W, 3) uint8 array as JPEG (at `quality`) or PNG bytes."""
    image_format = check_image_format(image_format)
    array = as_uint8_rgb(image)
    buffer = io.BytesIO()
    if image_format == "jpeg":
        Image.fromarray(array).save(buffer, format="JPEG", quality=check_quality(quality))
    else:
        Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def to_encoded(image, image_format="jpeg", quality=95):
    """Returns encoded bytes: bytes-like input passes through, arrays are encoded."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, np.ndarray) and image.dtype.kind in "SO" and image.ndim == 0:
        return bytes(image.item())
    return encode_image(image, image_format=image_format, quality=quality)


def decode_image(data):
    """Decodes encoded bytes to an (H, W, 3) uint8 array with Pillow; raises on bad data."""
    with Image.open(io.BytesIO(bytes(data))) as image:
        image.load()
        return np.asarray(image.convert("RGB"))


def image_size_of(data):
    """Returns `(height, width)` from the header of encoded bytes (no full decode)."""
    with Image.open(io.BytesIO(bytes(data))) as image:
        width, height = image.size
    return height, width


def try_image_size_of(data):
    """`image_size_of`, or `None` when the bytes are not a readable image header."""
    try:
        return image_size_of(data)
    except Exception:  # Pillow raises several types on bad input
        return None
