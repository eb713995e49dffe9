"""The one `tf.data` pipeline behind every keras_face reader: `read_source`.

Every reader turns its format into a *source* (`keras_face.data.ImageSource`): a dataset of chunks
`(sequence int64 (k,), payload string (k,), label int32 (k,))` covering one pass over the
data. This module decodes the payloads in parallel and tells a Python-side tracker which
elements arrived, so that undecodable images are skipped *and counted, with their keys*:

```
[start pass] + source chunks
    -> interleave(one small dataset per chunk: decode (+ flip) .ignore_errors(), deterministic)
       (JPEGs with `ReadOptions.jpeg_dct_method`, libjpeg's accurate IDCT by default)
    -> [resize, per-image steps] -> batch -> tracker.deliver(sequences of the batch)
    -> [unbatch] + [end pass]  -> [repeat] -> [batch steps: augmentation, normalisation]
```

`ignore_errors` is applied inside the per-chunk datasets only, so errors of the source itself
(a truncated file, a bad index) still reach the user. The interleave is deterministic, so
sequences arrive in increasing order and a gap is exactly the set of dropped images. A
sequence number is `pass_index << 40 | position_in_pass`. An element-less dataset before
the pass starts the tracker's pass (new shuffling order), one after it reports the pass.
The tracker assumes one iterator at a time per dataset.
"""

import functools
import os

import numpy as np
import tensorflow as tf

from keras_face.data.data_stats import DataStats
from keras_face.data.face_dataset import FaceDataset
from keras_face.data.image_source import DEFAULT_CHUNK_SIZE
from keras_face.data.image_source import IndexedSource
from keras_face.data.image_source import PassTracker
from keras_face.data.preprocessing import fused_preprocess_function
from keras_face.data.preprocessing import preprocess
from keras_face.data.preprocessing import resize_image
from keras_face.data.read_options import DEFAULT_JPEG_DCT_METHOD
from keras_face.data.read_options import resolve_options

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "IndexedSource",
    "as_class_ids",
    "decode_payload_image",
    "read_source",
]

_CHECK_BATCH_SIZE = 128
_PROTOCOL = (
    "description",
    "chunk_size",
    "num_images",
    "chunks",
    "start_pass",
    "key_of",
    "describe_key",
    "forget",
)


def as_class_ids(values, what="labels"):
    """Returns `values` as an int64 array of class ids; raises unless all are in [0, 2**31)."""
    array = np.asarray(values)
    if array.dtype == object or array.dtype.kind not in "iufb":
        raise ValueError(f"{what} must be numbers. Received: {what}={values!r}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if np.any(bad):
            raise ValueError(
                f"{what} must be integer class ids. "
                f"Received: {what}[{int(np.flatnonzero(bad.ravel())[0])}]"
                f"={array.ravel()[np.flatnonzero(bad.ravel())[0]]!r}"
            )
    array = array.astype(np.int64)
    bad = (array < 0) | (array >= 2**31)
    if np.any(bad):
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(
            f"{what} must be class ids in [0, 2**31). Received: {what}[{i}]={array.ravel()[i]}"
        )
    return array


def _side_effect(function, element_spec):
    """A dataset that calls `function` (Python) when iterated and yields no element."""

    def dummy(spec):
        shape = [0 if dim is None else dim for dim in spec.shape.as_list()]
        return tf.zeros(shape, spec.dtype)

    def call(_):
        token = tf.py_function(function, [], tf.int32)
        with tf.control_dependencies([token]):
            return tf.nest.map_structure(lambda spec: tf.identity(dummy(spec)), element_spec)

    return (
        tf.data.Dataset.from_tensors(np.int32(0))
        .map(call)
        .filter(lambda *element: tf.constant(False))
    )


def _python_call(function):
    @functools.wraps(function)
    def wrapper(*args):
        function(*[arg.numpy() for arg in args])
        return np.int32(0)

    return wrapper


def decode_payload_image(payload, jpeg_dct_method=DEFAULT_JPEG_DCT_METHOD):
    """Decodes one encoded image (JPEG, PNG, GIF, BMP) to a uint8 `(H, W, 3)` tensor.

    JPEGs are decoded with `jpeg_dct_method` (see `keras_face.data.ReadOptions`); the
    other formats with `tf.io.decode_image`.

    Args:
        payload: scalar `tf.string`. The encoded image.
        jpeg_dct_method: str. `"INTEGER_ACCURATE"` (libjpeg's accurate IDCT: the pixels of
            OpenCV, MXNet and Pillow) or `"INTEGER_FAST"` (TensorFlow's default).
            Defaults to `"INTEGER_ACCURATE"`.

    Example:
        ```python
        image = decode_payload_image(tf.io.read_file("face.jpg"))
        ```
    """
    if jpeg_dct_method == "INTEGER_FAST":
        # tf.io.decode_image decodes JPEGs with the fast IDCT.
        return tf.io.decode_image(payload, channels=3, expand_animations=False)
    return tf.cond(
        tf.io.is_jpeg(payload),
        lambda: tf.io.decode_jpeg(payload, channels=3, dct_method=jpeg_dct_method),
        lambda: tf.io.decode_image(payload, channels=3, expand_animations=False),
    )


def _decode(
    sequence,
    payload,
    label,
    flip_seed=None,
    decode_payload=None,
    jpeg_dct_method=DEFAULT_JPEG_DCT_METHOD,
    image_size=None,
):
    if decode_payload is None:
        image = decode_payload_image(payload, jpeg_dct_method)
    else:
        image = decode_payload(payload)
    image.set_shape([None, None, 3])
    if flip_seed is not None:
        # A stateless coin per (seed, pass, position): reproducible, and a handful of ops
        # (tf.image.stateless_random_flip_left_right costs about twice as much here).
        coin = tf.random.stateless_uniform(
            [], seed=tf.stack([tf.constant(flip_seed, tf.int64), sequence])
        )
        axes = tf.range(tf.cast(coin < 0.5, tf.int32)) + 1  # [] (keep) or [1] (mirror)
        image = tf.reverse(image, axes)
    if image_size is not None:
        # Here rather than in a map of its own: one pipeline stage less per image.
        image = resize_image(image, image_size)
    return sequence, image, label


def _transform(sequence, image, label, image_size, per_element):
    if image_size is not None:
        image = resize_image(image, image_size)
    if per_element is not None:
        image = per_element(image)
    return sequence, image, label


def read_source(source, options=None, **option_overrides):
    """Reads any `keras_face.data.ImageSource` through the shared pipeline.

    This is what `read_recordio`, `read_image_folder` and `read_tfrecord` call once they
    have made the source of their format; call it with a source of your own (e.g. a
    subclass of `keras_face.data.IndexedSource`) to get the same decoding, flipping,
    resizing, batching, augmentation, normalisation and counting of undecodable images.

    Args:
        source: a `keras_face.data.ImageSource`.
        options: `keras_face.data.ReadOptions` or `None` (the defaults).
            Defaults to `None`.
        **option_overrides: fields of `ReadOptions` that replace those of `options`.

    Returns:
        `keras_face.data.FaceDataset` whose `num_classes`, `class_names` and `layout` come
        from the source and `num_images` from `source.num_images(options)`.

    Example:
        ```python
        faces = keras_face.data.read_source(my_source, batch_size=32, flip=True, seed=0)
        images, labels = next(iter(faces.dataset))
        ```
    """
    options = resolve_options(options, option_overrides)
    for name in _PROTOCOL:
        if not hasattr(source, name):
            raise ValueError(
                f"`source` must implement keras_face.data.ImageSource; it has no `{name}`. "
                f"Received: source={source!r}"
            )
    dataset, stats = _build(source, options)
    return FaceDataset(
        dataset=dataset,
        num_classes=getattr(source, "num_classes", None),
        num_images=source.num_images(options),
        stats=stats,
        class_names=getattr(source, "class_names", None),
        layout=getattr(source, "layout", None),
    )


def _build(source, options):
    """Builds the `(image, label)` dataset of a source; see the module docstring."""
    stats = options.stats if options.stats is not None else DataStats(name=source.description)
    batch_size = options.batch_size
    image_size = options.image_size
    if image_size is None and batch_size is not None:
        # Batches need one size: take the source's (an odd image is then resized or
        # skipped and counted, never a batching error naming no file).
        reference = getattr(source, "reference_image_size", None)
        image_size = reference() if reference is not None else None
    augmentation = options.augmentation_function()
    preprocessing = options.preprocessing
    num_parallel_calls = options.num_parallel_calls
    tracker = PassTracker(source, options, stats)
    tracker.image_size = image_size
    seed = options.seed
    flip_seed = int(seed) if seed is not None else int(np.random.default_rng().integers(2**31))

    # Per-image work that must happen before batching; the rest runs on whole batches.
    per_element_steps = []
    per_batch_steps = []
    steps = per_element_steps if batch_size is None else per_batch_steps
    if augmentation is not None:
        steps.append(augmentation)
    if preprocessing is not None:
        if batch_size is None:
            steps.append(functools.partial(preprocess, mode=preprocessing))
        else:
            steps.append(fused_preprocess_function(preprocessing))

    def compose(functions):
        if not functions:
            return None
        return lambda images: functools.reduce(lambda x, f: f(x), functions, images)

    decode = functools.partial(
        _decode,
        flip_seed=flip_seed if options.flip else None,
        decode_payload=getattr(source, "decode_payload", None),
        jpeg_dct_method=options.jpeg_dct_method,
        # With size_mismatch="skip" images are compared with image_size before any resize.
        image_size=image_size if options.size_mismatch == "resize" else None,
    )

    def decode_chunk(sequences, payloads, labels):
        # ignore_errors sees only this chunk's decoding, never errors of the source itself.
        # The per-chunk function is kept minimal: it is instantiated once per chunk.
        return (
            tf.data.Dataset.from_tensor_slices((sequences, payloads, labels))
            .map(decode)
            .ignore_errors()
        )

    if num_parallel_calls is None:
        cycle_length, parallel = 1, None
    elif num_parallel_calls == tf.data.AUTOTUNE:
        cycle_length, parallel = max(4, os.cpu_count() or 1), tf.data.AUTOTUNE
    else:
        cycle_length, parallel = int(num_parallel_calls), int(num_parallel_calls)

    chunks = source.chunks(tracker).prefetch(2)
    # Deterministic order is what makes a gap in the sequences exactly the dropped images.
    ordered = {} if parallel is None else {"num_parallel_calls": parallel, "deterministic": True}
    decoded = chunks.interleave(
        decode_chunk, cycle_length=cycle_length, block_length=source.chunk_size, **ordered
    )
    skip_other_sizes = image_size is not None and options.size_mismatch == "skip"
    if skip_other_sizes:
        # A dropped image leaves a gap in the sequences: skipped and counted, with its size.
        height, width = image_size
        decoded = decoded.filter(
            lambda sequence, image, label: tf.logical_and(
                tf.equal(tf.shape(image)[0], height), tf.equal(tf.shape(image)[1], width)
            )
        )
    per_element = compose(per_element_steps)
    if skip_other_sizes or per_element is not None:
        # resize_image passes the kept images through and gives them their static shape.
        transform = functools.partial(
            _transform, image_size=image_size if skip_other_sizes else None, per_element=per_element
        )
        decoded = decoded.map(
            transform, num_parallel_calls=parallel or tf.data.AUTOTUNE, deterministic=True
        )

    deliver = _python_call(tracker.deliver)

    def check(sequences, images, labels):
        token = tf.py_function(deliver, [sequences], tf.int32)
        with tf.control_dependencies([token]):
            return images, tf.identity(labels)

    # Batches are formed once, inside the pass (they never span two passes), and checked
    # before an incomplete last batch may be dropped, so every decoded image is accounted for.
    if batch_size is not None:
        checked = decoded.batch(batch_size).map(check)
        if options.drop_remainder:
            checked = checked.filter(lambda images, labels: tf.shape(labels)[0] == batch_size)
            checked = checked.map(
                lambda images, labels: (
                    tf.ensure_shape(images, [batch_size] + images.shape.as_list()[1:]),
                    tf.ensure_shape(labels, [batch_size]),
                )
            )
    elif decoded.element_spec[1].shape.is_fully_defined():
        checked = decoded.batch(_CHECK_BATCH_SIZE).map(check).unbatch()
    else:
        # Single images of unknown, possibly different, sizes: check them in ragged batches.
        checked = decoded.ragged_batch(_CHECK_BATCH_SIZE).map(check).unbatch()
        checked = checked.map(lambda image, label: (image.to_tensor(), label))
    element_spec = checked.element_spec
    start = _side_effect(_python_call(tracker.start_pass), element_spec)
    end = _side_effect(_python_call(tracker.end_pass), element_spec)
    dataset = start.concatenate(checked).concatenate(end)
    if options.repeat:
        dataset = dataset.repeat()
    batch_function = compose(per_batch_steps)
    if batch_function is not None:
        dataset = dataset.map(
            lambda images, labels: (batch_function(images), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if options.prefetch:
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    data_options = tf.data.Options()
    # Sharding is done by the reader (num_shards / input_context); stop tf.distribute re-sharding.
    data_options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
    )
    return dataset.with_options(data_options), stats
