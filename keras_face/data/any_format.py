"""One entry point for every training-data format: `read_face_dataset`."""

import os

from keras_face.data.image_folder import read_image_folder
from keras_face.data.read_options import resolve_options
from keras_face.data.recordio_dataset import read_recordio
from keras_face.data.tfrecord import read_tfrecord

SOURCES = ("auto", "recordio", "folder", "tfrecord")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")
_READERS = {"recordio": read_recordio, "folder": read_image_folder, "tfrecord": read_tfrecord}


def detect_source(path):
    """Returns the format of `path`: `"recordio"`, `"folder"` or `"tfrecord"`.

    A list of paths, a glob pattern or a `.tfrecord`/`.tfrecords`/`.tfr` file is TFRecord;
    an existing directory is an image folder; a `.rec` file is a RecordIO pack.

    Args:
        path: str, path-like or list of str.

    Returns:
        str, one of `"recordio"`, `"folder"`, `"tfrecord"`.

    Example:
        ```python
        keras_face.data.detect_source("faces_emore/train.rec")  # "recordio"
        ```
    """
    if isinstance(path, (list, tuple)):
        return "tfrecord"
    text = os.fspath(path)
    if os.path.isdir(text):
        return "folder"
    lowered = text.lower()
    if lowered.endswith(".rec"):
        return "recordio"
    if lowered.endswith(TFRECORD_SUFFIXES) or any(character in text for character in "*?["):
        return "tfrecord"
    if not os.path.exists(text):
        raise FileNotFoundError(f"Training data not found. Received: path={text!r}")
    raise ValueError(
        "Cannot tell the format of the training data: expected a `.rec` file, a folder of "
        "identity folders or `.tfrecord` files (a glob pattern or a list). Pass `source=`. "
        f"Received: path={text!r}"
    )


def read_face_dataset(path, source="auto", options=None, **option_overrides):
    """Reads face training data of any supported format into a `FaceDataset`.

    Calls `read_recordio`, `read_image_folder` or `read_tfrecord` (with their default
    format-specific arguments) and returns their result.

    Args:
        path: str, path-like or list of str. A `.rec` pack, an image folder, or TFRecord
            files (a file, a glob pattern or a list).
        source: str. `"auto"` (picked by `keras_face.data.detect_source`), `"recordio"`,
            `"folder"` or `"tfrecord"`. Defaults to `"auto"`.
        options: `keras_face.data.ReadOptions` or `None`. Defaults to `None`.
        **option_overrides: any field of `keras_face.data.ReadOptions`, replacing the one
            of `options`.

    Returns:
        `keras_face.data.FaceDataset`.

    Example:
        ```python
        faces = keras_face.data.read_face_dataset("faces_emore/train.rec", batch_size=128,
                                                  shuffle=True, repeat=True, seed=0)
        ```
    """
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}. Received: source={source!r}")
    options = resolve_options(options, option_overrides)
    if source == "auto":
        source = detect_source(path)
    return _READERS[source](path, options)
