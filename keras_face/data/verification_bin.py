"""Verification pair files (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`, ...): safe loading and writing.

A `.bin` file is a pickle of `(images, issame)`: `images` a list of 2N encoded images (JPEG
or PNG bytes), `issame` a list of N bools; pair i is `(images[2i], images[2i + 1])`.
insightface published them from Python 2 (`str` images: loaded with `encoding="bytes"`);
later files come from Python 3 with pickle protocols 2 to 5.

Unpickling can run arbitrary code, so these files are read with an unpickler that resolves
only the few globals such files need (`_codecs.encode`, `bytes` and `bytearray`, which Python
3 uses to encode bytes under protocols 0-2, each wrapped to accept only latin-1 text or
bytes). Any other global, e.g. `os.system`, raises `pickle.UnpicklingError` naming it before
anything is called.

insightface's `build_eval_pack.py` stores each image as the NumPy array `cv2.imencode`
returns (uint8, shape `(n, 1)`). Such arrays are accepted through stand-ins for the NumPy
globals their pickles name (`numpy.dtype`, `numpy.ndarray`, `_reconstruct` and `_frombuffer`
under the NumPy 1.x `numpy.core` and NumPy 2.x `numpy._core` module paths): the stand-ins
never import or call NumPy, accept only uint8 data of shape `(n,)` or `(n, 1)` and hand back
its bytes; an object array, another dtype or another shape raises `pickle.UnpicklingError`.
"""

import io
import os
import pickle

import numpy as np
from tqdm.auto import tqdm

from keras_face.data.data_stats import DataStats
from keras_face.data.data_stats import logger
from keras_face.data.image_codec import check_image_format
from keras_face.data.image_codec import check_quality
from keras_face.data.image_codec import describe_os_error
from keras_face.data.image_codec import read_regular_file
from keras_face.data.image_codec import to_encoded
from keras_face.data.image_codec import try_image_size_of
from keras_face.data.pipeline import IndexedSource
from keras_face.data.pipeline import read_source
from keras_face.data.read_options import DEFAULT_JPEG_DCT_METHOD
from keras_face.errors import DataError


class VerificationBinError(DataError, pickle.UnpicklingError):
    """A verification `.bin` file that cannot be read: not a pickle of `(images, issame)`,
    a refused global, images of several sizes without `image_size`.

    The message starts with the file's path. It is a `keras_face.errors.DataError` (so a
    `ValueError`) and a `pickle.UnpicklingError`.

    Example:
        ```python
        try:
            keras_face.data.read_bin("damaged.bin")
        except keras_face.data.VerificationBinError as error:
            print(error)  # damaged.bin: A verification .bin file must hold a pair ...
        ```
    """


def _check_latin1(encoding):
    # Compared as text: never look the name up, which could import codec modules.
    if str(encoding).lower().replace("_", "-") not in _LATIN1_NAMES:
        raise pickle.UnpicklingError(
            "A pickled bytes object uses a text encoding other than latin-1, which verification "
            f".bin files never do. Received: encoding={encoding!r}"
        )


_LATIN1_NAMES = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}


def _safe_codecs_encode(text, encoding="utf-8", errors="strict"):
    # Python 3 pickles bytes under protocols 0-2 as _codecs.encode(str, "latin1").
    if not isinstance(text, str):
        raise pickle.UnpicklingError(
            f"_codecs.encode is only allowed on text. Received: type={type(text).__name__}"
        )
    _check_latin1(encoding)
    return text.encode("latin-1")


def _safe_bytes_like(kind):
    def construct(*args):
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            return kind(args[0])
        if len(args) == 2 and isinstance(args[0], str):
            _check_latin1(args[1])
            return kind(args[0].encode("latin-1"))
        raise pickle.UnpicklingError(
            f"{kind.__name__}() is only allowed on bytes or latin-1 text. Received: "
            f"argument types={[type(arg).__name__ for arg in args]}"
        )

    construct.__name__ = kind.__name__
    return construct


def _as_text(value):
    # Python 2 pickles loaded with encoding="bytes" give their `str` values as bytes.
    return value.decode("latin-1") if isinstance(value, bytes) else value


class _Uint8Dtype:
    """Stand-in for `numpy.dtype("u1")`, the only dtype an encoded image array has."""

    def __setstate__(self, state):
        # numpy's dtype state: (version, byte order, subarray, names, fields, elsize,
        # alignment, flags). A uint8 dtype has no byte order, fields or subarray.
        if (
            not isinstance(state, tuple)
            or len(state) < 2
            or _as_text(state[1]) not in ("|", "=")
            or any(value is not None for value in state[2:5])
        ):
            raise pickle.UnpicklingError(
                f"Unexpected state of a numpy uint8 dtype. Received: state={state!r}"
            )


def _safe_numpy_dtype(name, align=False, copy=True):
    name = _as_text(name)
    if name not in ("u1", "|u1", "uint8", "B"):
        raise pickle.UnpicklingError(
            "Verification .bin files hold images as bytes or numpy uint8 arrays only; this "
            f"pickle holds a numpy array of another dtype. Received: dtype={name!r}"
        )
    return _Uint8Dtype()


class _NdarrayClass:
    """Stand-in for the `numpy.ndarray` class, only accepted as `_reconstruct`'s argument."""

    def __setstate__(self, state):
        raise pickle.UnpicklingError(
            f"numpy.ndarray (the class) has no state to set. Received: state={state!r}"
        )


def _encoded_image_bytes(shape, dtype, data):
    """Checks a pickled numpy array is an encoded image (uint8, `(n,)` or `(n, 1)`)."""
    if not isinstance(dtype, _Uint8Dtype):
        raise pickle.UnpicklingError(
            "A numpy array in a verification .bin file must have dtype uint8. "
            f"Received: dtype={dtype!r}"
        )
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(value, int) and value >= 0 for value in shape) or not (
        len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)
    ):
        raise pickle.UnpicklingError(
            "A numpy array in a verification .bin file must be encoded image bytes of shape "
            f"(n,) or (n, 1) (what cv2.imencode returns). Received: shape={shape!r}"
        )
    if isinstance(data, str):
        data = data.encode("latin-1")
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(
            "A numpy array in a verification .bin file must hold raw uint8 data (an object "
            f"array is refused). Received: data type={type(data).__name__}"
        )
    if len(data) != shape[0]:
        raise pickle.UnpicklingError(
            f"A numpy uint8 array of shape {shape} must hold {shape[0]} bytes. "
            f"Received: {len(data)} bytes"
        )
    return _EncodedImageArray(bytes(data))


class _EncodedImageArray:
    """An encoded image unpickled from a numpy uint8 array: its bytes, as `.data`."""

    def __init__(self, data=None):
        self.data = data

    def __setstate__(self, state):
        # ndarray state (protocols 0-4): (version, shape, dtype, is_fortran, raw data).
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError(
                f"Unexpected state of a numpy array. Received: state={state!r}"
            )
        _, shape, dtype, _, data = state
        self.data = _encoded_image_bytes(shape, dtype, data).data


def _safe_numpy_reconstruct(kind, shape, typecode):
    # numpy pickles arrays (protocols 0-4) as _reconstruct(ndarray, (0,), b"b") + BUILD.
    if not isinstance(kind, _NdarrayClass):
        raise pickle.UnpicklingError(
            "numpy's _reconstruct is only allowed on numpy.ndarray. "
            f"Received: type={type(kind).__name__}"
        )
    return _EncodedImageArray()


def _safe_numpy_frombuffer(data, dtype, shape, order="C"):
    # numpy pickles contiguous arrays under protocol 5 as _frombuffer(buffer, dtype, shape, order).
    if isinstance(data, pickle.PickleBuffer):
        data = bytes(data.raw())
    return _encoded_image_bytes(shape, dtype, data)


_NUMPY_GLOBALS = {}
for _core in ("numpy.core", "numpy._core"):
    _NUMPY_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _safe_numpy_reconstruct
    _NUMPY_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _safe_numpy_frombuffer
    _NUMPY_GLOBALS[(f"{_core}.multiarray", "dtype")] = _safe_numpy_dtype
_NUMPY_GLOBALS[("numpy", "dtype")] = _safe_numpy_dtype
_NUMPY_GLOBALS[("numpy", "ndarray")] = _NdarrayClass

_ALLOWED_GLOBALS = {
    **_NUMPY_GLOBALS,
    ("_codecs", "encode"): _safe_codecs_encode,
    ("codecs", "encode"): _safe_codecs_encode,
    ("builtins", "bytes"): _safe_bytes_like(bytes),
    ("__builtin__", "bytes"): _safe_bytes_like(bytes),
    ("builtins", "bytearray"): _safe_bytes_like(bytearray),
    ("__builtin__", "bytearray"): _safe_bytes_like(bytearray),
}


class _VerificationUnpickler(pickle.Unpickler):
    """Unpickler resolving only the globals that verification `.bin` files use."""

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"Refusing to load the global {module}.{name} from a verification .bin file: "
                "such files hold only lists of image bytes and bools, so this pickle is not one "
                "(and could run code). Received: global="
                f"{module}.{name}"
            )
        # A fresh object per lookup: a pickle's BUILD opcode may set attributes on what it
        # loaded, and must not reach the module's own functions (nor the next file's load).
        if allowed is _NdarrayClass:
            return _NdarrayClass()

        def construct(*args):
            return allowed(*args)

        construct.__name__ = getattr(allowed, "__name__", name)
        return construct

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(
            f"Verification .bin files hold no persistent ids. Received: pid={pid!r}"
        )


def load_bin_pickle(data):
    """Safely unpickles the `(images, issame)` content of a verification `.bin` file.

    Args:
        data: bytes of the file.

    Returns:
        `(images, issame)`: list of bytes and list of bools, validated.

    Example:
        ```python
        images, issame = keras_face.data.load_bin_pickle(open("lfw.bin", "rb").read())
        ```
    """
    # encoding="bytes" turns Python 2 `str` objects (the images) into bytes.
    loaded = _VerificationUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(loaded, (tuple, list)) or len(loaded) != 2:
        raise ValueError(
            "A verification .bin file must hold a pair (images, issame). Received: "
            f"type={type(loaded).__name__}"
            + (f", length={len(loaded)}" if isinstance(loaded, (tuple, list)) else "")
        )
    images, issame = loaded
    if not isinstance(images, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise ValueError(
            "A verification .bin file must hold two lists. Received: "
            f"types=({type(images).__name__}, {type(issame).__name__})"
        )
    encoded = []
    for index, image in enumerate(images):
        if isinstance(image, _EncodedImageArray):
            if image.data is None:
                raise ValueError(
                    f"Image {index} of the .bin file is a numpy array without data. "
                    "Received: state=None"
                )
            encoded.append(image.data)
        elif isinstance(image, (bytes, bytearray)):
            encoded.append(bytes(image))
        elif isinstance(image, str):
            encoded.append(image.encode("latin-1"))
        else:
            raise ValueError(
                f"Image {index} of the .bin file is not encoded bytes. Received: "
                f"type={type(image).__name__}"
            )
    flags = []
    for index, value in enumerate(issame):
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            flags.append(bool(value))
        else:
            raise ValueError(
                f"issame[{index}] of the .bin file is not a bool. "
                f"Received: issame[{index}]={value!r}"
            )
    if len(encoded) != 2 * len(flags):
        raise ValueError(
            "A verification .bin file needs two images per pair. Received: "
            f"{len(encoded)} images and {len(flags)} pairs"
        )
    return encoded, flags


class _BinSource(IndexedSource):
    def __init__(self, path, images):
        super().__init__(shuffle=False, seed=None, num_shards=1, shard_index=0)
        self.description = path
        self.images = images
        self.num_items = len(images)
        self.labels = np.arange(len(images), dtype=np.int32)  # the label carries the index

    def read_payloads(self, items):
        return [self.images[item] for item in items]

    def item_key(self, item):
        return int(item)

    def describe_key(self, key):
        return f"image {key} (pair {key // 2})"


def read_bin(
    path,
    image_size=None,
    strict=False,
    stats=None,
    progress=True,
    jpeg_dct_method=DEFAULT_JPEG_DCT_METHOD,
):
    """Loads a verification `.bin` file into arrays.

    Images are decoded with TensorFlow in parallel. A pair with an undecodable image is
    dropped (both images and its `issame` entry, so the pairing stays exact), counted in
    `stats` and reported with a warning; with `strict=True` it raises naming the image.

    Args:
        path: str or path-like. The `.bin` file.
        image_size: int, `(height, width)` or `None`. Resize images of another size
            (bilinear); `None` requires all images to have one size. Defaults to `None`.
        strict: bool. Raise on an undecodable image instead of dropping its pair.
            Defaults to `False`.
        stats: `keras_face.data.DataStats` or `None`. Receives the counts.
            Defaults to `None`.
        progress: bool. Show a progress bar while decoding. Defaults to `True`.
        jpeg_dct_method: str. `"INTEGER_ACCURATE"` (the pixels OpenCV, MXNet and Pillow
            decode, which insightface's `verification.py` evaluates on) or
            `"INTEGER_FAST"`; see `keras_face.data.ReadOptions`.
            Defaults to `"INTEGER_ACCURATE"`.

    Returns:
        `(images, issame)`: uint8 array (2N, H, W, 3) and bool array (N,).

    Example:
        ```python
        images, issame = keras_face.data.read_bin("faces_emore/lfw.bin")
        ```
    """
    path = os.fspath(path)
    try:
        data = read_regular_file(path)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise VerificationBinError(
            f"{path}: cannot be read ({describe_os_error(error)}). Received: path={path!r}"
        ) from None
    try:
        encoded, flags = load_bin_pickle(data)
    except (ValueError, pickle.UnpicklingError) as error:
        # The same message, prefixed with the file the problem is in.
        raise VerificationBinError(f"{path}: {error}") from None
    except EOFError:
        raise VerificationBinError(
            f"{path}: the pickle ends early: the file is truncated or empty ({len(data)} "
            "bytes). A verification .bin file is a pickle of (images, issame). "
            f"Received: size={len(data)}"
        ) from None
    except Exception as error:  # garbage bytes make the unpickler fail in many ways
        raise VerificationBinError(
            f"{path}: not a verification .bin file (a pickle of (images, issame)): unpickling "
            f"failed with {type(error).__name__}: {str(error)[:200]}. "
            f"Received: first bytes={data[:16]!r}"
        ) from None
    stats = DataStats(name=path) if stats is None else stats
    if image_size is None:
        # One size for all (read from the headers) gives static shapes and batched decoding.
        # Unreadable headers are left to the decoder, which skips or raises.
        sizes = {try_image_size_of(image) for image in encoded} - {None}
        if len(sizes) > 1:
            raise VerificationBinError(
                f"{path} holds images of several sizes {sorted(sizes)[:5]}; pass image_size to "
                f"resize them. Received: image_size={image_size!r}"
            )
        image_size = sizes.pop() if sizes else None
    dataset = read_source(
        _BinSource(path, encoded),
        batch_size=256,
        image_size=image_size,
        strict=strict,
        stats=stats,
        jpeg_dct_method=jpeg_dct_method,
    ).dataset
    # Filled in place (a 12,000-image LFW file is 450 MB as uint8): no second full copy.
    decoded = None
    present = np.zeros(len(encoded), dtype=bool)
    with tqdm(
        total=len(encoded), desc=f"Decoding {os.path.basename(path)}", disable=not progress
    ) as bar:
        for images, indices in dataset.as_numpy_iterator():
            if decoded is None:
                decoded = np.empty((len(encoded),) + images.shape[1:], dtype=np.uint8)
            decoded[indices] = images
            present[indices] = True
            bar.update(len(indices))
    keep = present[0::2] & present[1::2]
    if not np.all(keep):
        logger.warning(
            "%s: dropped %d of %d pairs with undecodable images.",
            path,
            int(np.sum(~keep)),
            len(flags),
        )
    if decoded is None:
        shape = (0,) + (tuple(_size_or_zero(image_size)) + (3,))
        return np.zeros(shape, np.uint8), np.zeros((0,), bool)
    issame = np.asarray(flags, dtype=bool)
    if np.all(keep):
        return decoded, issame
    return decoded[np.repeat(keep, 2)], issame[keep]


def _size_or_zero(image_size):
    if image_size is None:
        return (0, 0)
    if isinstance(image_size, (int, np.integer)):
        return (int(image_size), int(image_size))
    return tuple(int(value) for value in image_size)


def write_bin(path, images, issame, image_format="jpeg", quality=95, protocol=4, progress=True):
    """Writes a verification `.bin` file (pickled `(list of encoded images, list of bools)`).

    Args:
        path: str or path-like. Output file.
        images: uint8 array (2N, H, W, 3) or a sequence of (H, W, 3) arrays and/or encoded
            image bytes (stored unchanged). Pair i is `(images[2i], images[2i + 1])`.
        issame: bool array-like (N,). Whether pair i shows one identity.
        image_format: str. `"jpeg"` or `"png"`, for arrays. Defaults to `"jpeg"`.
        quality: int. JPEG quality. Defaults to `95`.
        protocol: int. Pickle protocol, 2 to 5. Defaults to `4`.
        progress: bool. Show a progress bar while encoding. Defaults to `True`.

    Returns:
        str: `path`.

    Example:
        ```python
        keras_face.data.write_bin("pairs.bin", images, issame)
        images, issame = keras_face.data.read_bin("pairs.bin")
        ```
    """
    path = os.fspath(path)
    image_format = check_image_format(image_format)
    quality = check_quality(quality)
    if protocol not in (2, 3, 4, 5):
        raise ValueError(f"`protocol` must be 2, 3, 4 or 5. Received: protocol={protocol!r}")
    issame = np.asarray(issame)
    if issame.ndim != 1 or (issame.size and not np.all((issame == 0) | (issame == 1))):
        raise ValueError(f"`issame` must be a 1-D array of bools. Received: issame={issame!r}")
    if len(images) != 2 * len(issame):
        raise ValueError(
            "`images` must hold two images per pair. Received: "
            f"len(images)={len(images)}, len(issame)={len(issame)}"
        )
    encoded = [
        to_encoded(image, image_format=image_format, quality=quality)
        for image in tqdm(images, desc="Encoding pairs", disable=not progress)
    ]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump((encoded, [bool(value) for value in issame]), file, protocol=protocol)
    return path
