"""Encoding and inspecting images in Python (Pillow) for the keras_face writers."""

import errno
import io
import os
import stat

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


# JPEG markers that stand alone (no length field): TEM and RST0..RST7.
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])
# Markers with a length field that libjpeg reads or skips: SOFn, DHT, DAC (0xC0-0xCF),
# DQT, DNL, DRI, DHP, EXP (0xDB-0xDF), APPn (0xE0-0xEF), JPGn and COM (0xF0-0xFE).
_SEGMENT_MARKERS = frozenset([*range(0xC0, 0xD0), *range(0xDB, 0xFF)])
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_START_OF_SCAN = 0xDA


def jpeg_header_problem(data):
    """Returns why a JPEG cannot be decoded from its header, or `None` when the header is sound.

    Walks the marker segments from the start-of-image marker to the first start-of-scan
    (a few segments: microseconds), checking that each marker is one libjpeg knows, each
    length stays inside the data and a frame header comes before the scan. A JPEG cut or
    damaged inside its header is rejected here, before TensorFlow's decoder sees it, so it
    is skipped and counted like any undecodable image instead of making libjpeg print
    lines such as `Improper call to JPEG library in state 201` on the console. Damage in
    the compressed image data after the header is left to the decoder.

    Args:
        data: bytes-like. Encoded image bytes starting with the JPEG start-of-image marker.

    Returns:
        str or `None`: what is wrong (with the byte offset), or `None`.

    Example:
        ```python
        keras_face.data.image_codec.jpeg_header_problem(jpeg_bytes[:10])
        # 'JPEG cut inside its header: ...'
        ```
    """
    data = memoryview(data).cast("B")
    size = len(data)
    if size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return "not a JPEG: no start-of-image marker"
    position = 2
    frame = False
    while True:
        if position >= size:
            return f"JPEG cut inside its header: {size} bytes, no image data"
        if data[position] != 0xFF:
            return f"damaged JPEG header: no marker at byte {position} (0x{data[position]:02x})"
        while position < size and data[position] == 0xFF:  # fill bytes
            position += 1
        if position >= size:
            return f"JPEG cut inside its header: {size} bytes, no image data"
        marker = data[position]
        position += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker not in _SEGMENT_MARKERS and marker != _START_OF_SCAN:
            return f"damaged JPEG header: unknown marker 0x{marker:02x} at byte {position - 1}"
        if position + 2 > size:
            return f"JPEG cut inside its header: {size} bytes, no image data"
        length = data[position] << 8 | data[position + 1]
        if length < 2 or position + length > size:
            return (
                f"JPEG cut or damaged inside its header: segment 0x{marker:02x} at byte "
                f"{position - 1} has length {length} ({size} bytes in all)"
            )
        if marker in _FRAME_MARKERS:
            frame = True
        if marker == _START_OF_SCAN:
            if not frame:
                return "damaged JPEG header: image data (SOS) before the frame header (SOF)"
            if position + length >= size:
                return f"JPEG cut right after its scan header: {size} bytes, no image data"
            return None
        position += length


def read_regular_file(path):
    """Reads a whole file, refusing anything but a regular file without ever blocking.

    The file is opened non-blocking and checked with `fstat` before reading, so a named
    pipe, socket or device called `face.jpg` is refused at once instead of hanging the
    reader, and a file swapped for one between listing and reading is caught too.

    Args:
        path: str or path-like.

    Returns:
        bytes: the file's content.

    Raises:
        OSError: the file cannot be opened or read (missing, dangling or looping symbolic
            link, permission denied) or is not a regular file (`errno.EINVAL`, with a message
            naming its type).

    Example:
        ```python
        data = keras_face.data.image_codec.read_regular_file("faces/alice/0001.jpg")
        ```
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_file_type(mode)})", path)
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            return file.read()
    finally:
        os.close(descriptor)


def _file_type(mode):
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "a special file"


def describe_os_error(error):
    """One phrase for an `OSError` met reading an image file (for skip reports)."""
    reasons = {
        errno.ENOENT: "missing (or a dangling symbolic link)",
        errno.ELOOP: "a symbolic link loop",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }
    return reasons.get(error.errno) or (error.strerror or str(error))


def describe_unusable_image(data, image_size=None):
    """Says why encoded image bytes were skipped: undecodable, or of another size.

    Args:
        data: bytes-like. The encoded image.
        image_size: `(height, width)` or `None`. The size the reader requires.

    Returns:
        str: e.g. `"empty"`, `"undecodable (cannot identify image file)"` or
        `"24x20 pixels, not image_size 16x20"`.

    Example:
        ```python
        keras_face.data.image_codec.describe_unusable_image(b"not an image")
        ```
    """
    if not len(data):
        return "empty"
    if bytes(data[:2]) == b"\xff\xd8":
        problem = jpeg_header_problem(data)
        if problem is not None:
            return problem
    try:
        height, width = decode_image(data).shape[:2]
    except Exception as error:  # Pillow raises many types for bad data
        return f"undecodable ({str(error)[:120] or type(error).__name__})"
    if image_size is not None and (height, width) != tuple(image_size):
        return f"{height}x{width} pixels, not image_size {image_size[0]}x{image_size[1]}"
    return "undecodable by TensorFlow"
