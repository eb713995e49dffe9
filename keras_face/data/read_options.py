"""The options every keras_face reader shares, documented and validated once."""

import dataclasses
import difflib
import functools
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_face.data.data_stats import DataStats
from keras_face.data.preprocessing import PREPROCESSING_MODES
from keras_face.data.preprocessing import check_image_size

JPEG_DCT_METHODS = ("INTEGER_ACCURATE", "INTEGER_FAST")
DEFAULT_JPEG_DCT_METHOD = "INTEGER_ACCURATE"
SIZE_MISMATCH = ("resize", "skip")


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """What every `keras_face.data` reader shares: batching, order, sharding, image steps.

    The readers (`read_recordio`, `read_image_folder`, `read_tfrecord`, `read_face_dataset`
    and `read_source` for a source of your own) take a `ReadOptions` as their `options`
    argument and any of its fields as keyword overrides, so
    `read_recordio(path, batch_size=64)` and
    `read_recordio(path, ReadOptions(batch_size=64))` are the same call. Values are checked
    when the object is made; a bad one raises naming it (`... Received: name=value`).

    Per pass over the data the pipeline reads the source in its (shuffled, sharded) order,
    decodes in parallel, optionally flips and resizes each image, batches, and applies
    `augmentation` then `preprocessing` to whole batches (to single images when
    `batch_size=None`). An image that cannot be decoded is skipped, never replaced (no label
    shifts), and counted with its key in `stats`, or raises in `strict` mode.

    Args:
        batch_size: int or `None`. Batch size; `None` yields single images. Batches never
            span two passes. Defaults to `None`.
        shuffle: bool. Reshuffle the order every pass. Defaults to `True`.
        seed: int or `None`. Seed of the shuffling and flipping: pass `p` of an indexed
            source (RecordIO, image folder) uses `numpy.random.default_rng([seed, p])`, the
            flip of each image a stateless coin of `(seed, pass, position)`. `None` draws a
            fresh seed. Defaults to `None`.
        repeat: bool. Repeat indefinitely (a new order each pass). Defaults to `False`.
        num_shards: int. Number of input pipelines (workers); each reads its share of the
            data. Defaults to `1`.
        shard_index: int. This pipeline's index in `[0, num_shards)`. Defaults to `0`.
        input_context: `tf.distribute.InputContext` or `None`. When given, it sets
            `num_shards` and `shard_index` (use with
            `strategy.distribute_datasets_from_function`). Defaults to `None`.
        jpeg_dct_method: str. The inverse DCT TensorFlow decodes JPEGs with:
            `"INTEGER_ACCURATE"` (libjpeg's accurate integer IDCT, what OpenCV, MXNet and
            Pillow use, so pixels equal those insightface trains and evaluates on, bit for
            bit) or `"INTEGER_FAST"` (TensorFlow's default: faster, pixels differ by up to
            about 10 levels). PNG and other formats are unaffected. See
            `docs/data-formats.md` for the measured cost. Defaults to `"INTEGER_ACCURATE"`.
        image_size: int, `(height, width)` or `None`. The size of the delivered images;
            stored as a `(height, width)` tuple. Images of another size are resized
            (bilinear) or skipped, as `size_mismatch` says. With `None` and a `batch_size`,
            the size of the source's first image is used (RecordIO packs, image folders),
            so one image of another size never fails a batch. Defaults to `None`.
        size_mismatch: str. What happens to an image whose size is not `image_size`:
            `"resize"` (bilinear, rounded back to uint8) or `"skip"` (dropped and counted
            in `stats` with its key and size, like an undecodable image; raises in `strict`
            mode). Defaults to `"resize"`.
        flip: bool. Random horizontal flip. Defaults to `False`.
        preprocessing: `None`, `"arcface"` or `"insightface"`; see
            `keras_face.data.preprocess`. Images stay uint8 when `None`. Defaults to `None`.
        augmentation: callable, Keras layer or list of them, applied to (batches of) uint8
            images before `preprocessing`; Keras layers are called with `training=True`.
            Defaults to `None`.
        drop_remainder: bool. Drop the last incomplete batch of each pass.
            Defaults to `False`.
        strict: bool. Raise `keras_face.data.UndecodableImageError` on an undecodable image
            instead of skipping it. Defaults to `False`.
        stats: `keras_face.data.DataStats` or `None`. Where the counts of decoded and
            skipped images go; a new one is made per reader call when `None`. Share one to
            pool the counts of several readers. Defaults to `None`.
        num_parallel_calls: int, `tf.data.AUTOTUNE` or `None`. Decoding parallelism;
            `None` decodes one image at a time. Defaults to `tf.data.AUTOTUNE`.
        prefetch: bool. Prefetch batches. Defaults to `True`.

    Example:
        ```python
        options = keras_face.data.ReadOptions(batch_size=128, flip=True,
                                              preprocessing="arcface", seed=0)
        train = keras_face.data.read_recordio("faces_emore/train.rec", options, repeat=True)
        folder = keras_face.data.read_image_folder("faces/", options.replace(shuffle=False))
        model.fit(train.dataset, steps_per_epoch=train.num_images // 128)
        ```
    """

    batch_size: Any = None
    shuffle: bool = True
    seed: Any = None
    repeat: bool = False
    num_shards: int = 1
    shard_index: int = 0
    input_context: Any = None
    jpeg_dct_method: str = DEFAULT_JPEG_DCT_METHOD
    image_size: Any = None
    size_mismatch: str = "resize"
    flip: bool = False
    preprocessing: Any = None
    augmentation: Any = None
    drop_remainder: bool = False
    strict: bool = False
    stats: Any = None
    num_parallel_calls: Any = tf.data.AUTOTUNE
    prefetch: bool = True

    def __post_init__(self):
        if self.input_context is not None:
            for name in ("num_input_pipelines", "input_pipeline_id"):
                if not hasattr(self.input_context, name):
                    raise ValueError(
                        "`input_context` must be a tf.distribute.InputContext or None. "
                        f"Received: input_context={self.input_context!r}"
                    )
            object.__setattr__(self, "num_shards", self.input_context.num_input_pipelines)
            object.__setattr__(self, "shard_index", self.input_context.input_pipeline_id)
        batch_size = self.batch_size
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size <= 0
        ):
            raise ValueError(
                f"`batch_size` must be a positive int or None. Received: batch_size={batch_size!r}"
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))
        ):
            raise ValueError(f"`seed` must be an int or None. Received: seed={self.seed!r}")
        num_shards = self.num_shards
        if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)):
            num_shards = 0
        if num_shards < 1:
            raise ValueError(
                f"`num_shards` must be a positive int. Received: num_shards={self.num_shards!r}"
            )
        shard_index = self.shard_index
        if (
            isinstance(shard_index, bool)
            or not isinstance(shard_index, (int, np.integer))
            or not 0 <= shard_index < num_shards
        ):
            raise ValueError(
                f"`shard_index` must be an int in [0, num_shards={num_shards}). "
                f"Received: shard_index={shard_index!r}"
            )
        object.__setattr__(self, "num_shards", int(num_shards))
        object.__setattr__(self, "shard_index", int(shard_index))
        object.__setattr__(self, "jpeg_dct_method", check_jpeg_dct_method(self.jpeg_dct_method))
        object.__setattr__(self, "image_size", check_image_size(self.image_size))
        if not isinstance(self.size_mismatch, str) or self.size_mismatch not in SIZE_MISMATCH:
            raise ValueError(
                f"`size_mismatch` must be one of {SIZE_MISMATCH}. "
                f"Received: size_mismatch={self.size_mismatch!r}"
            )
        if self.preprocessing is not None and self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(
                f"`preprocessing` must be None or one of {sorted(PREPROCESSING_MODES)}. "
                f"Received: preprocessing={self.preprocessing!r}"
            )
        augmentation = self.augmentation
        if augmentation is not None and not callable(augmentation):
            if not isinstance(augmentation, (list, tuple)) or not all(
                callable(layer) for layer in augmentation
            ):
                raise ValueError(
                    "`augmentation` must be a callable (e.g. a keras.Sequential of augmentation "
                    f"layers) or a list of them. Received: augmentation={augmentation!r}"
                )
        if self.stats is not None and not isinstance(self.stats, DataStats):
            raise ValueError(
                "`stats` must be a keras_face.data.DataStats or None. "
                f"Received: stats={self.stats!r}"
            )
        parallel = self.num_parallel_calls
        if parallel is not None and parallel != tf.data.AUTOTUNE:
            if (
                isinstance(parallel, bool)
                or not isinstance(parallel, (int, np.integer))
                or parallel < 1
            ):
                raise ValueError(
                    "`num_parallel_calls` must be a positive int, tf.data.AUTOTUNE or None. "
                    f"Received: num_parallel_calls={parallel!r}"
                )
        for name in ("shuffle", "repeat", "flip", "drop_remainder", "strict", "prefetch"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")

    @classmethod
    def field_names(cls):
        """Returns the names of the options, in documentation order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    def replace(self, **changes):
        """Returns a copy with some options changed (checked like the constructor's).

        Args:
            **changes: option names and their new values.

        Example:
            ```python
            options = keras_face.data.ReadOptions(batch_size=64)
            evaluation = options.replace(shuffle=False, flip=False)
            ```
        """
        check_option_names(changes)
        if "input_context" not in changes and self.input_context is not None:
            if {"num_shards", "shard_index"} & set(changes):
                # An explicit shard overrides the context it was derived from.
                changes["input_context"] = None
        return dataclasses.replace(self, **changes)

    def augmentation_function(self):
        """Returns `augmentation` as one function of a batch (or image), or `None`."""
        augmentation = self.augmentation
        if augmentation is None:
            return None
        layers = list(augmentation) if isinstance(augmentation, (list, tuple)) else [augmentation]
        return functools.partial(_apply_layers, layers)


def _apply_layers(layers, images):
    for layer in layers:
        if isinstance(layer, keras.layers.Layer):
            images = layer(images, training=True)
        else:
            images = layer(images)
    return images


def check_jpeg_dct_method(jpeg_dct_method):
    """Returns `jpeg_dct_method` if it is one of `JPEG_DCT_METHODS`; raises naming it otherwise."""
    if not isinstance(jpeg_dct_method, str) or jpeg_dct_method not in JPEG_DCT_METHODS:
        raise ValueError(
            f"`jpeg_dct_method` must be one of {JPEG_DCT_METHODS}. "
            f"Received: jpeg_dct_method={jpeg_dct_method!r}"
        )
    return jpeg_dct_method


def check_option_names(options):
    """Raises `TypeError` naming the first key of `options` that is not a `ReadOptions` field."""
    names = ReadOptions.field_names()
    for name, value in options.items():
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"Unknown reader option {name!r}.{hint} Received: {name}={value!r}")


def resolve_options(options, overrides):
    """The `ReadOptions` of a reader call: `options` (or the defaults) with `overrides` applied."""
    if options is None:
        options = ReadOptions()
    elif not isinstance(options, ReadOptions):
        raise ValueError(
            "`options` must be a keras_face.data.ReadOptions or None (pass the other reader "
            f"arguments by keyword). Received: options={options!r}"
        )
    if overrides:
        options = options.replace(**overrides)
    return options
