"""TFRecord shards of face images: writing and reading into `tf.data`.

Each record is a `tf.train.Example` with the features

| feature | type | content |
| --- | --- | --- |
| `image/encoded` | bytes | encoded image (JPEG or PNG) |
| `image/class/label` | int64 | class id |
| `image/key` | bytes | identifier of the sample (its index when written) |
| `image/format` | bytes | `jpeg` or `png` |
| `image/height`, `image/width` | int64 | image size |

(the `image/encoded` and `image/class/label` names of the TensorFlow models repository).
"""

import os
import struct

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_face.data.image_codec import check_image_format
from keras_face.data.image_codec import check_quality
from keras_face.data.image_codec import image_format_of
from keras_face.data.image_codec import to_encoded
from keras_face.data.image_codec import try_image_size_of
from keras_face.data.image_source import DEFAULT_CHUNK_SIZE
from keras_face.data.pipeline import as_class_ids
from keras_face.data.pipeline import read_source
from keras_face.data.read_options import resolve_options
from keras_face.errors import DataError

IMAGE_FEATURE = "image/encoded"
LABEL_FEATURE = "image/class/label"
KEY_FEATURE = "image/key"


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _shard_paths(path, num_shards):
    if num_shards == 1:
        return [path]
    stem, extension = os.path.splitext(path)
    return [f"{stem}-{index:05d}-of-{num_shards:05d}{extension}" for index in range(num_shards)]


def write_tfrecord(
    path,
    samples,
    num_shards=1,
    image_format="jpeg",
    quality=95,
    progress=True,
    total=None,
):
    """Writes `(image, label)` samples into TFRecord shards of `tf.train.Example`s.

    Samples are dealt round-robin to the shards, so each shard mixes all identities.

    Args:
        path: str or path-like. Output file; with `num_shards > 1` the shards are named
            `<stem>-00000-of-0000N<suffix>`.
        samples: iterable of `(image, label)`: an (H, W, 3) uint8 array (encoded with
            `image_format`) or encoded image bytes (stored unchanged), and an int class id.
        num_shards: int. Number of files. Defaults to `1`.
        image_format: str. `"jpeg"` or `"png"`, for arrays. Defaults to `"jpeg"`.
        quality: int. JPEG quality. Defaults to `95`.
        progress: bool. Show a progress bar. Defaults to `True`.
        total: int or `None`. Number of samples, for the progress bar. Defaults to `None`.

    Returns:
        list of the written shard paths.

    Example:
        ```python
        paths = keras_face.data.write_tfrecord("train.tfrecord", zip(images, labels), num_shards=4)
        dataset = keras_face.data.read_tfrecord(paths, batch_size=64)
        ```
    """
    path = os.fspath(path)
    if not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
        raise ValueError(
            f"`num_shards` must be a positive int. Received: num_shards={num_shards!r}"
        )
    image_format = check_image_format(image_format)
    quality = check_quality(quality)
    if total is None and hasattr(samples, "__len__"):
        total = len(samples)
    paths = _shard_paths(path, int(num_shards))
    if "://" not in path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    writers = [tf.io.TFRecordWriter(shard) for shard in paths]
    try:
        for index, (image, label) in enumerate(
            tqdm(samples, total=total, desc="Writing TFRecord", disable=not progress)
        ):
            label = int(as_class_ids([label], "label")[0])
            data = to_encoded(image, image_format=image_format, quality=quality)
            # Bytes are stored as given; an unreadable header gets size 0 (decoding will skip it).
            height, width = try_image_size_of(data) or (0, 0)
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        IMAGE_FEATURE: _bytes_feature(data),
                        LABEL_FEATURE: _int_feature(label),
                        KEY_FEATURE: _bytes_feature(str(index).encode()),
                        "image/format": _bytes_feature((image_format_of(data) or "").encode()),
                        "image/height": _int_feature(height),
                        "image/width": _int_feature(width),
                    }
                )
            )
            writers[index % len(writers)].write(example.SerializeToString())
    finally:
        for writer in writers:
            writer.close()
    return paths


def _check_framing(path):
    """Walks the record lengths of an uncompressed local TFRecord file; returns the count.

    Raises `keras_face.errors.DataError` (a `ValueError`) naming the file and offset when
    the file is truncated. (CRCs are
    verified later by `tf.data.TFRecordDataset` as it reads.)
    """
    size = os.path.getsize(path)
    count = 0
    offset = 0
    with open(path, "rb") as file:
        while offset < size:
            if offset + 12 > size:
                raise DataError(
                    f"{path} is truncated: a record header is expected at offset {offset} but the "
                    f"file has {size} bytes."
                )
            file.seek(offset)
            (length,) = struct.unpack("<Q", file.read(8))
            end = offset + 12 + length + 4
            if end > size:
                raise DataError(
                    f"{path} is truncated: the record at offset {offset} needs {length} bytes of "
                    f"data up to offset {end}, but the file has {size} bytes."
                )
            offset = end
            count += 1
    return count


class _TFRecordSource:
    """The `keras_face.data.ImageSource` of TFRecord files: a stream, shuffled by a buffer."""

    def __init__(
        self,
        files,
        options,
        shuffle_buffer_size,
        features,
        num_classes=None,
        record_counts=None,
        chunk_size=DEFAULT_CHUNK_SIZE,
    ):
        self.element_shards = None
        num_shards, shard_index = options.num_shards, options.shard_index
        total = None if record_counts is None else sum(record_counts)
        if num_shards > 1:
            if len(files) >= num_shards:
                files = files[shard_index::num_shards]
                if record_counts is not None:
                    total = sum(record_counts[shard_index::num_shards])
            else:
                self.element_shards = (num_shards, shard_index)
                if total is not None:
                    total = len(range(shard_index, total, num_shards))
        self.files = files
        self.images_per_pass = total
        self.num_classes = num_classes
        self.shuffle_buffer_size = shuffle_buffer_size
        self.chunk_size = chunk_size
        self.description = (
            files[0] if len(files) == 1 else f"{len(files)} TFRecord files ({files[0]}, ...)"
        )
        self.image_feature, self.label_feature, self.key_feature = features
        self.features = {
            self.image_feature: tf.io.FixedLenFeature([], tf.string),
            self.label_feature: tf.io.FixedLenFeature([], tf.int64),
            self.key_feature: tf.io.FixedLenFeature([], tf.string, default_value=""),
        }
        self._keys = {}
        self._tracker = None

    def num_images(self, options):
        return self.images_per_pass

    def reference_image_size(self):
        """`(height, width)` of the first record's image (see `IndexedSource`), or `None`."""
        try:
            for serialized in tf.data.TFRecordDataset(self.files[:1]).take(1):
                example = tf.io.parse_single_example(serialized, self.features)
                return try_image_size_of(example[self.image_feature].numpy())
        except tf.errors.OpError:  # unreadable here: the pipeline reports it while reading
            return None
        return None

    def start_pass(self, pass_index):
        self._keys = {}

    def key_of(self, position):
        return self._keys.get(position, f"position {position} of the pass")

    def describe_key(self, key):
        return str(key)

    def forget(self, positions):
        for position in positions.tolist():
            self._keys.pop(position, None)

    def _register(self, files, indices, keys, labels):
        tracker = self._tracker
        start = tracker.emitted
        names = []
        for file, index, key in zip(files, indices.tolist(), keys):
            names.append(key.decode() if key else f"{os.path.basename(file.decode())}:{index}")
        bad = np.flatnonzero((labels < 0) | (labels >= 2**31))
        if len(bad):
            raise ValueError(
                f"The record {names[bad[0]]} has label {labels[bad[0]]}, which is not a class id "
                "in [0, 2**31)."
            )
        for offset, name in enumerate(names):
            self._keys[start + offset] = name
        return tracker.emit(start, len(labels)), labels.astype(np.int32)

    def chunks(self, tracker):
        self._tracker = tracker
        shuffle, seed = tracker.options.shuffle, tracker.options.seed
        files = tf.data.Dataset.from_tensor_slices(self.files)
        if shuffle:
            files = files.shuffle(len(self.files), seed=seed, reshuffle_each_iteration=True)

        def read_file(file):
            records = tf.data.TFRecordDataset(file).enumerate()
            return records.map(lambda index, record: (file, index, record))

        records = files.interleave(
            read_file,
            cycle_length=min(4, len(self.files)),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if self.element_shards is not None:
            records = records.shard(*self.element_shards)
        if shuffle:
            records = records.shuffle(
                self.shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True
            )

        def parse(files, indices, serialized):
            features = tf.io.parse_example(serialized, self.features)
            return (
                files,
                indices,
                features[self.image_feature],
                features[self.label_feature],
                features[self.key_feature],
            )

        def register_chunk(files, indices, keys, labels):
            return self._register(files.numpy(), indices.numpy(), keys.numpy(), labels.numpy())

        def register(files, indices, payloads, labels, keys):
            sequences, labels = tf.py_function(
                register_chunk, [files, indices, keys, labels], [tf.int64, tf.int32]
            )
            sequences.set_shape([None])
            labels.set_shape([None])
            return sequences, payloads, labels

        parsed = records.batch(self.chunk_size).map(
            parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        return parsed.map(register)


def read_tfrecord(
    paths,
    options=None,
    *,
    shuffle_buffer_size=10000,
    num_classes=None,
    image_feature=IMAGE_FEATURE,
    label_feature=LABEL_FEATURE,
    key_feature=KEY_FEATURE,
    **option_overrides,
):
    """Reads TFRecord shards of `tf.train.Example`s through the shared reader pipeline.

    Shuffling permutes the file order every pass and mixes records through a shuffle buffer
    of encoded bytes (seeded by `ReadOptions.seed`). Sharding is by file when there are at
    least `num_shards` files, else by record. Undecodable images are skipped and counted
    with their `image/key` (or `file:index`) in `stats`, or raise in strict mode, as in
    `keras_face.data.read_recordio`. Local files are checked for truncation when this
    function is called (error naming the file and offset), which also counts their
    records; record CRCs are verified while reading.

    Args:
        paths: str (a file or a glob pattern) or list of str. The TFRecord files.
        options: `keras_face.data.ReadOptions` or `None`. Batching, order, sharding and
            image steps (shared by every reader and documented there). Defaults to `None`.
        shuffle_buffer_size: int. Records in the shuffle buffer. Defaults to `10000`.
        num_classes: int or `None`. Number of identities, reported as
            `FaceDataset.num_classes` (TFRecord files do not record it). Defaults to `None`.
        image_feature: str. Feature holding the encoded image. Defaults to `"image/encoded"`.
        label_feature: str. int64 feature holding the class id.
            Defaults to `"image/class/label"`.
        key_feature: str. Optional bytes feature naming the sample. Defaults to `"image/key"`.
        **option_overrides: any field of `keras_face.data.ReadOptions`, replacing the one
            of `options`.

    Returns:
        `keras_face.data.FaceDataset`; `num_images` counts the records of this shard
        (`None` when a file is remote), `num_classes` is the argument.

    Example:
        ```python
        faces = keras_face.data.read_tfrecord("shards/train-*.tfrecord", batch_size=128,
                                              num_classes=85742)
        ```
    """
    options = resolve_options(options, option_overrides)
    if isinstance(paths, (str, os.PathLike)):
        pattern = os.fspath(paths)
        files = sorted(tf.io.gfile.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    else:
        files = [os.fspath(path) for path in paths]
    if not files:
        raise FileNotFoundError(f"No TFRecord files match. Received: paths={paths!r}")
    record_counts = []
    for file in files:
        if "://" in file:
            record_counts = None
            continue
        if not os.path.isfile(file):
            raise FileNotFoundError(f"TFRecord file not found. Received: path={file!r}")
        count = _check_framing(file)
        if record_counts is not None:
            record_counts.append(count)
    if record_counts is not None and sum(record_counts) == 0:
        raise DataError(
            f"The TFRecord files hold no records ({', '.join(files[:3])}). Received: 0 records"
        )
    if not isinstance(shuffle_buffer_size, (int, np.integer)) or shuffle_buffer_size < 1:
        raise ValueError(
            "`shuffle_buffer_size` must be a positive int. "
            f"Received: shuffle_buffer_size={shuffle_buffer_size!r}"
        )
    if num_classes is not None and (
        not isinstance(num_classes, (int, np.integer)) or num_classes < 1
    ):
        raise ValueError(
            f"`num_classes` must be a positive int or None. Received: num_classes={num_classes!r}"
        )
    source = _TFRecordSource(
        files,
        options,
        shuffle_buffer_size=int(shuffle_buffer_size),
        features=(image_feature, label_feature, key_feature),
        num_classes=None if num_classes is None else int(num_classes),
        record_counts=record_counts,
    )
    return read_source(source, options)
