"""The `tf.data` machinery shared by the keras_face readers.

Every reader turns its format into a *source*: a dataset of chunks
`(sequence int64 (k,), payload string (k,), label int32 (k,))` covering one pass over the
data. This module decodes the payloads in parallel and tells a Python-side tracker which
elements arrived, so that undecodable images are skipped *and counted, with their keys*:

```
[start pass] + source chunks
    -> interleave(one small dataset per chunk: decode (+ flip) .ignore_errors(), deterministic)
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
from keras_face.data.data_stats import UndecodableImageError
from keras_face.data.data_stats import logger
from keras_face.data.preprocessing import _normalize_image_size
from keras_face.data.preprocessing import _resize_if_needed
from keras_face.data.preprocessing import fused_preprocess_function
from keras_face.data.preprocessing import preprocess

POSITION_BITS = 40
POSITION_MASK = (1 << POSITION_BITS) - 1
DEFAULT_CHUNK_SIZE = 128
_CHECK_BATCH_SIZE = 128


def as_class_ids(values, what="labels"):
    """Returns `values` as an int64 array of class ids; raises unless all are integers in [0, 2**31)."""
    array = np.asarray(values)
    if array.dtype == object or array.dtype.kind not in "iufb":
        raise ValueError(f"{what} must be numbers. Received: {what}={values!r}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if np.any(bad):
            raise ValueError(
                f"{what} must be integer class ids. Received: {what}[{int(np.flatnonzero(bad.ravel())[0])}]"
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


class PassTracker:
    """Python-side bookkeeping of one reader: which positions each pass emitted and received."""

    def __init__(self, source, stats, strict):
        self.source = source
        self.stats = stats
        self.strict = strict
        self.pass_index = -1
        self.emitted = 0
        self.expected = 0
        self.delivered = 0
        self.skipped_this_pass = 0
        self.first_skipped_keys = []

    def start_pass(self):
        self.pass_index += 1
        self.emitted = 0
        self.expected = 0
        self.delivered = 0
        self.skipped_this_pass = 0
        self.first_skipped_keys = []
        self.source.start_pass(self.pass_index)

    def _record_missing(self, positions):
        if not len(positions):
            return
        keys = [self.source.key_of(int(position)) for position in positions]
        self.skipped_this_pass += len(keys)
        self.stats.record_skipped(keys)
        room = 10 - len(self.first_skipped_keys)
        self.first_skipped_keys.extend(keys[: max(room, 0)])
        if self.strict:
            raise UndecodableImageError(
                f"Undecodable image in {self.source.description} at key "
                f"{self.source.describe_key(keys[0])}"
                + (f" (and {len(keys) - 1} more: {keys[1:6]})" if len(keys) > 1 else "")
                + ". Pass strict=False to skip and count undecodable images instead."
            )
        logger.debug("Skipped undecodable images in %s: %s", self.source.description, keys)

    def deliver(self, sequences):
        sequences = np.asarray(sequences, dtype=np.int64)
        passes = sequences >> POSITION_BITS
        # Leftovers of an abandoned pass (a new iterator started) are ignored.
        positions = sequences[passes == self.pass_index] & POSITION_MASK
        if not len(positions):
            return
        self.delivered += len(positions)
        self.stats.record_delivered(len(positions))
        self.source.forget(positions)
        highest = int(positions.max())
        if highest >= self.expected:
            candidates = np.arange(self.expected, highest + 1, dtype=np.int64)
            self.expected = highest + 1
            self._record_missing(np.setdiff1d(candidates, positions, assume_unique=True))

    def end_pass(self):
        missing = np.arange(self.expected, self.emitted, dtype=np.int64)
        self.expected = max(self.expected, self.emitted)
        self.stats.passes_completed += 1
        self.stats.last_pass_delivered = self.delivered
        try:
            self._record_missing(missing)
        finally:
            self.stats.last_pass_skipped = self.skipped_this_pass
        if self.skipped_this_pass:
            logger.warning(
                "%s: skipped %d undecodable images in pass %d (%d images decoded); "
                "%d skipped in total. First skipped keys of this pass: %s",
                self.source.description,
                self.skipped_this_pass,
                self.pass_index + 1,
                self.delivered,
                self.stats.skipped,
                self.first_skipped_keys,
            )
        else:
            logger.info(
                "%s: pass %d complete, %d images decoded, none skipped.",
                self.source.description,
                self.pass_index + 1,
                self.delivered,
            )


class IndexedSource:
    """A random-access source of encoded images read from Python (RecordIO, image folders).

    Subclasses define `num_items`, `labels` (int32 per item), `read_payloads(items)` (list of
    bytes) and `item_key(item)` (a printable key).
    """

    description = "image source"

    def __init__(self, shuffle, seed, num_shards, shard_index, chunk_size=DEFAULT_CHUNK_SIZE):
        self.shuffle = shuffle
        self.seed = seed
        self.num_shards = num_shards
        self.shard_index = shard_index
        self.chunk_size = chunk_size
        self.order = np.zeros(0, dtype=np.int64)

    def shard_items(self):
        return np.arange(self.shard_index, self.num_items, self.num_shards, dtype=np.int64)

    def start_pass(self, pass_index):
        items = self.shard_items()
        if self.shuffle:
            if self.seed is None:
                rng = np.random.default_rng()
            else:
                rng = np.random.default_rng([int(self.seed), pass_index])
            items = rng.permutation(items)
        self.order = items

    def key_of(self, position):
        return self.item_key(int(self.order[position]))

    def describe_key(self, key):
        return str(key)

    def forget(self, positions):
        pass

    def chunks(self, tracker):
        # Dataset.range + py_function rather than Dataset.from_generator: the generator op
        # sets glibc's M_TRIM_THRESHOLD to 128 KiB for the whole process, which returns
        # freed batch memory to the OS and makes every new batch page-fault (2x slower here).
        num_chunks = -(-len(self.shard_items()) // self.chunk_size)

        def read_chunk(index):
            start = int(index) * self.chunk_size
            items = self.order[start : start + self.chunk_size]
            payloads = np.empty(len(items), dtype=object)
            payloads[:] = self.read_payloads(items)
            tracker.emitted = max(tracker.emitted, start + len(items))
            base = (tracker.pass_index << POSITION_BITS) + start
            sequences = np.arange(base, base + len(items), dtype=np.int64)
            return sequences, payloads, self.labels[items]

        def load(index):
            sequences, payloads, labels = tf.py_function(
                read_chunk, [index], [tf.int64, tf.string, tf.int32]
            )
            for tensor in (sequences, payloads, labels):
                tensor.set_shape([None])
            return sequences, payloads, labels

        return tf.data.Dataset.range(num_chunks).map(load)


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


def _decode(sequence, payload, label, flip_seed=None):
    image = tf.io.decode_image(payload, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    if flip_seed is not None:
        # A stateless coin per (seed, pass, position): reproducible, and a handful of ops
        # (tf.image.stateless_random_flip_left_right costs about twice as much here).
        coin = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(flip_seed, tf.int64), sequence]))
        axes = tf.range(tf.cast(coin < 0.5, tf.int32)) + 1  # [] (keep) or [1] (mirror)
        image = tf.reverse(image, axes)
    return sequence, image, label


def _transform(sequence, image, label, image_size, per_element):
    if image_size is not None:
        image = _resize_if_needed(image, image_size)
    if per_element is not None:
        image = per_element(image)
    return sequence, image, label


def _check_augmentation(augmentation):
    if augmentation is None:
        return None
    if not callable(augmentation):
        if isinstance(augmentation, (list, tuple)):
            layers = list(augmentation)
            return lambda images: functools.reduce(lambda x, layer: _apply(layer, x), layers, images)
        raise ValueError(
            "`augmentation` must be a callable (e.g. a keras.Sequential of augmentation layers) "
            f"or a list of them. Received: augmentation={augmentation!r}"
        )
    return lambda images: _apply(augmentation, images)


def _apply(layer, images):
    import keras

    if isinstance(layer, keras.layers.Layer):
        return layer(images, training=True)
    return layer(images)


def validate_reader_arguments(
    batch_size, num_shards, shard_index, input_context, preprocessing, num_parallel_calls
):
    """Checks the arguments shared by the readers; returns `(num_shards, shard_index)`."""
    if input_context is not None:
        num_shards = input_context.num_input_pipelines
        shard_index = input_context.input_pipeline_id
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
        raise ValueError(f"`batch_size` must be a positive int or None. Received: batch_size={batch_size!r}")
    if not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
        raise ValueError(f"`num_shards` must be a positive int. Received: num_shards={num_shards!r}")
    if not isinstance(shard_index, (int, np.integer)) or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"`shard_index` must be an int in [0, num_shards={num_shards}). "
            f"Received: shard_index={shard_index!r}"
        )
    if preprocessing is not None:
        preprocess(np.zeros(1), preprocessing)  # raises on an unknown mode
    if num_parallel_calls is not None and num_parallel_calls != tf.data.AUTOTUNE:
        if not isinstance(num_parallel_calls, (int, np.integer)) or num_parallel_calls < 1:
            raise ValueError(
                "`num_parallel_calls` must be a positive int, tf.data.AUTOTUNE or None. "
                f"Received: num_parallel_calls={num_parallel_calls!r}"
            )
    return int(num_shards), int(shard_index)


def build_image_dataset(
    source,
    *,
    batch_size=None,
    repeat=False,
    drop_remainder=False,
    image_size=None,
    flip=False,
    preprocessing=None,
    augmentation=None,
    strict=False,
    stats=None,
    seed=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    prefetch=True,
):
    """Builds the `(image, label)` dataset of a source; see the module docstring."""
    if stats is None:
        stats = DataStats(name=source.description)
    elif not isinstance(stats, DataStats):
        raise ValueError(f"`stats` must be a keras_face.data.DataStats or None. Received: stats={stats!r}")
    image_size = _normalize_image_size(image_size)
    augmentation = _check_augmentation(augmentation)
    tracker = PassTracker(source, stats, strict)
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

    decode = functools.partial(_decode, flip_seed=flip_seed if flip else None)

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
    per_element = compose(per_element_steps)
    if image_size is not None or per_element is not None:
        transform = functools.partial(_transform, image_size=image_size, per_element=per_element)
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
        if drop_remainder:
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
    if repeat:
        dataset = dataset.repeat()
    batch_function = compose(per_batch_steps)
    if batch_function is not None:
        dataset = dataset.map(
            lambda images, labels: (batch_function(images), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if prefetch:
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Sharding is done by the reader (num_shards / input_context); stop tf.distribute re-sharding.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = dataset.with_options(options)
    dataset.stats = stats
    return dataset
