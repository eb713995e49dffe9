"""The source protocol of the keras_face readers: what a format provides to the pipeline.

A *source* turns one format (RecordIO pack, image folder, TFRecord shards, your own) into
chunks of encoded images; `keras_face.data.read_source` then runs the one shared pipeline
(decode, flip, resize, batch, augment, normalise, count undecodable images) configured by
`keras_face.data.ReadOptions`. A new format is one source class:

- random-access formats subclass `IndexedSource` and define `num_items`, `labels`,
  `read_payloads(items)` and `item_key(item)`;
- streaming formats implement `ImageSource` directly (see the TFRecord reader).
"""

from typing import Protocol
from typing import runtime_checkable

import numpy as np
import tensorflow as tf

from keras_face.data.data_stats import UndecodableImageError
from keras_face.data.data_stats import logger
from keras_face.data.image_codec import describe_unusable_image
from keras_face.data.image_codec import jpeg_header_problem
from keras_face.data.image_codec import try_image_size_of

POSITION_BITS = 40
POSITION_MASK = (1 << POSITION_BITS) - 1
DEFAULT_CHUNK_SIZE = 128


@runtime_checkable
class ImageSource(Protocol):
    """The protocol every keras_face image source implements.

    The pipeline calls `chunks(tracker)` once when the dataset is built and then, for every
    pass over the data, `start_pass(pass_index)` before the first chunk is read. A chunk is a
    tuple `(sequences, payloads, labels)` of 1-D tensors: int64 sequence numbers obtained
    from `tracker.emit`, encoded image bytes (`tf.string`) and int32 class ids. A gap in the
    sequence numbers that reach the end of the pipeline is exactly the set of undecodable
    images; the pipeline asks `key_of(position)` for their keys (and `describe_key(key)` for
    an error message), and calls `forget(positions)` for the delivered ones.

    Two optional methods make skips clearer: `skip_reason(position, image_size)` says why
    the image at a position of the current pass was skipped (`IndexedSource` notes read
    problems and looks at the first few skipped images again), and `reference_image_size()`
    gives the size batches use when `ReadOptions.image_size` is `None` (`IndexedSource`:
    the first readable image's).

    A source whose payloads are not encoded images (e.g. raw pixels) also defines
    `decode_payload(payload)`: a TensorFlow function from one scalar `tf.string` to a uint8
    `(H, W, 3)` image (the default is `tf.io.decode_image`); see `keras_face.data.ArraySource`.

    Attributes:
        description: str. Names the source in logs and errors (e.g. the file path).
        chunk_size: int. Largest number of images in one chunk.
        num_classes: int or `None`. Number of identities, `None` when unknown.
        class_names: list of str or `None`. Name of each class id, when known.
        layout: str or `None`. Format-specific layout name (e.g. `"insightface"`).

    Example:
        ```python
        class MySource(keras_face.data.IndexedSource):  # the easy way to the protocol
            ...
        assert isinstance(MySource(...), keras_face.data.ImageSource)
        faces = keras_face.data.read_source(MySource(...), batch_size=64)
        ```
    """

    description: str
    chunk_size: int
    num_classes: object

    def num_images(self, options):
        """Number of images of one pass of this shard (before skipping), or `None`."""

    def chunks(self, tracker):
        """Returns the `tf.data.Dataset` of chunks of one pass (see the class docstring)."""

    def start_pass(self, pass_index):
        """Prepares pass `pass_index` (0, 1, ...): e.g. draws the shuffled order."""

    def key_of(self, position):
        """Returns the key (int or str) of the image at `position` of the current pass."""

    def describe_key(self, key):
        """Returns `key` as shown in an error message (e.g. with a file offset)."""

    def forget(self, positions):
        """Releases what is kept about delivered `positions` (an int64 array)."""


class PassTracker:
    """Which images of each pass were emitted by a source and which reached the batches.

    Made by the pipeline, one per dataset, and given to `ImageSource.chunks`. A source calls
    `emit(start, count)` for every chunk it reads and reads the reader's `options`
    (`keras_face.data.ReadOptions`: shuffle, seed, num_shards, shard_index). The tracker
    records delivered and missing positions in `stats` and raises in strict mode.

    Args:
        source: the `ImageSource`.
        options: `keras_face.data.ReadOptions` of the reader.
        stats: `keras_face.data.DataStats` receiving the counts.

    Example:
        ```python
        # inside ImageSource.chunks(tracker), for a chunk of `count` images:
        sequences = tracker.emit(tracker.emitted, count)
        ```
    """

    def __init__(self, source, options, stats):
        self.source = source
        self.options = options
        self.stats = stats
        self.strict = options.strict
        self.pass_index = -1
        self.emitted = 0
        self.expected = 0
        self.delivered = 0
        self.skipped_this_pass = 0
        self.first_skipped_keys = []
        # The size images must have (set by the pipeline), for the reasons of skips.
        self.image_size = options.image_size

    def emit(self, start, count):
        """Registers positions `start .. start + count - 1` of this pass; returns their sequences.

        Args:
            start: int. Position in the pass of the chunk's first image.
            count: int. Number of images in the chunk.

        Returns:
            int64 array of `count` sequence numbers (`pass_index << 40 | position`).
        """
        self.emitted = max(self.emitted, start + count)
        base = (self.pass_index << POSITION_BITS) + start
        return np.arange(base, base + count, dtype=np.int64)

    def start_pass(self):
        """Starts the next pass: resets the per-pass counts, calls `source.start_pass`."""
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
        room = max(10 - len(self.first_skipped_keys), 0)
        # Why an image was skipped: known to the source (an unreadable file), or found by
        # looking at the first few again in Python (a rare event: the cost stays bounded).
        reasons = {}
        skip_reason = getattr(self.source, "skip_reason", None)
        if skip_reason is not None:
            for position, key in list(zip(positions, keys))[: max(room, 1)]:
                reason = skip_reason(int(position), self.image_size)
                if reason:
                    reasons[key] = reason
        self.stats.record_skipped(keys, reasons)
        self.first_skipped_keys.extend(
            f"{key} ({reasons[key]})" if key in reasons else key for key in keys[:room]
        )
        if self.strict:
            reason = f": {reasons[keys[0]]}" if keys[0] in reasons else ""
            raise UndecodableImageError(
                f"Undecodable image in {self.source.description} at key "
                f"{self.source.describe_key(keys[0])}{reason}"
                + (f" (and {len(keys) - 1} more: {keys[1:6]})" if len(keys) > 1 else "")
                + ". Pass strict=False to skip and count undecodable images instead."
            )
        logger.debug("Skipped undecodable images in %s: %s", self.source.description, keys)

    def deliver(self, sequences):
        """Records the sequence numbers of a batch that reached the end of the pipeline."""
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
        """Ends the pass: counts the images never delivered, logs the pass."""
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
    """Base of the random-access sources, read from Python (RecordIO packs, image folders).

    Implements `keras_face.data.ImageSource`: every pass reads the items of this shard
    (every `num_shards`-th item from `shard_index`) in a permutation drawn from
    `numpy.random.default_rng([seed, pass])` (or in index order without shuffling), in
    chunks of `chunk_size`, through `read_payloads`. Subclasses set `num_items`, `labels`
    (int32 array, one per item), `description` and `num_classes`, and define
    `read_payloads(items)` (a list of encoded images) and `item_key(item)` (a printable key).

    Args:
        shuffle: bool or `None`. Fixes the shuffling whatever the reader's options say;
            `None` takes `ReadOptions.shuffle`. Defaults to `None`.
        seed: int or `None`. Fixed seed; `None` takes `ReadOptions.seed`. Defaults to `None`.
        num_shards: int or `None`. Fixed number of shards; `None` takes the options'.
            Defaults to `None`.
        shard_index: int or `None`. Fixed shard; `None` takes the options'.
            Defaults to `None`.
        chunk_size: int. Items read per Python call. Defaults to `128`.

    Example:
        ```python
        class ZipSource(keras_face.data.IndexedSource):  # encoded images in a .zip file
            def __init__(self, archive, names, labels):
                super().__init__()
                self.archive, self.names = archive, names
                self.labels = np.asarray(labels, np.int32)
                self.num_items, self.num_classes = len(names), int(self.labels.max()) + 1
                self.description = archive.filename

            def read_payloads(self, items):
                return [self.archive.read(self.names[item]) for item in items]

            def item_key(self, item):
                return self.names[item]

        faces = keras_face.data.read_source(ZipSource(archive, names, labels), batch_size=32)
        ```
    """

    description = "image source"
    num_classes = None
    class_names = None
    layout = None

    def __init__(
        self,
        shuffle=None,
        seed=None,
        num_shards=None,
        shard_index=None,
        chunk_size=DEFAULT_CHUNK_SIZE,
    ):
        self.fixed_order = {
            "shuffle": shuffle,
            "seed": seed,
            "num_shards": num_shards,
            "shard_index": shard_index,
        }
        self.chunk_size = chunk_size
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.num_shards = 1 if num_shards is None else int(num_shards)
        self.shard_index = 0 if shard_index is None else int(shard_index)
        self.order = np.zeros(0, dtype=np.int64)

    def _use_options(self, options):
        for name, fixed in self.fixed_order.items():
            setattr(self, name, getattr(options, name) if fixed is None else fixed)

    def shard_items(self):
        """Item indices of this shard, in index order."""
        return np.arange(self.shard_index, self.num_items, self.num_shards, dtype=np.int64)

    def num_images(self, options):
        """Number of items in this shard under `options`."""
        self._use_options(options)
        return len(self.shard_items())

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

    def _problems(self):
        # Created on first use: subclasses of older code may not call __init__.
        return self.__dict__.setdefault("problems", {})

    def note_problem(self, item, reason):
        """Records why item `item` cannot be used (its payload is then sent empty).

        The pipeline skips and counts the item like an undecodable image; `reason` appears
        in the counts (`keras_face.data.DataStats.skip_reasons`) and strict-mode errors.

        Args:
            item: int. The item index.
            reason: str. E.g. `"a named pipe, not a regular file"`.
        """
        self._problems()[self.item_key(item)] = reason

    def skip_reason(self, position, image_size=None):
        """Why the image at `position` of this pass was skipped, or `None` when unknown.

        A problem noted while reading (`note_problem`) is returned as is; otherwise the
        payload is read again and looked at with Pillow (called for the first few skipped
        images of a pass only).

        Args:
            position: int. Position in the current pass.
            image_size: `(height, width)` or `None`. The size images must have.
        """
        item = int(self.order[position])
        known = self._problems().get(self.item_key(item))
        if known is not None or hasattr(self, "decode_payload"):
            return known
        try:
            payload = self.read_payloads(np.array([item], dtype=np.int64))[0]
        except Exception as error:  # a source's own read error, reported not raised
            return f"unreadable ({error})"
        return describe_unusable_image(payload, image_size)

    def reference_image_size(self):
        """`(height, width)` of the first readable image in index order, or `None`.

        The pipeline uses it as `image_size` when batching without one, so that an image
        of another size is resized or skipped (`ReadOptions.size_mismatch`) instead of
        failing the batch.
        """
        if hasattr(self, "decode_payload"):
            return None
        for item in range(min(int(self.num_items), 16)):
            try:
                payload = self.read_payloads(np.array([item], dtype=np.int64))[0]
            except Exception:  # a source's own read error: try the next item
                continue
            size = try_image_size_of(payload) if len(payload) else None
            if size is not None:
                return size
        return None

    def _screen_payloads(self, items, payloads):
        """Empties the payloads whose JPEG header is damaged, noting why (see the module)."""
        for index, payload in enumerate(payloads):
            if bytes(payload[:2]) == b"\xff\xd8":
                problem = jpeg_header_problem(payload)
                if problem is not None:
                    self.note_problem(int(items[index]), problem)
                    payloads[index] = b""
        return payloads

    def forget(self, positions):
        # Nothing to release: keys are recomputed from `order`, which lives for one pass
        # (a streaming source drops the keys it kept for delivered positions here).
        return None

    def chunks(self, tracker):
        # Dataset.range + py_function rather than Dataset.from_generator: the generator op
        # sets glibc's M_TRIM_THRESHOLD to 128 KiB for the whole process, which returns
        # freed batch memory to the OS and makes every new batch page-fault (2x slower here).
        self._use_options(tracker.options)
        num_chunks = -(-len(self.shard_items()) // self.chunk_size)

        def read_chunk(index):
            start = int(index) * self.chunk_size
            items = self.order[start : start + self.chunk_size]
            payloads = np.empty(len(items), dtype=object)
            read = list(self.read_payloads(items))
            if not hasattr(self, "decode_payload"):
                # A JPEG damaged inside its header would make libjpeg print to the console
                # (e.g. "Improper call to JPEG library in state 201") before failing.
                read = self._screen_payloads(items, read)
            payloads[:] = read
            sequences = tracker.emit(start, len(items))
            return sequences, payloads, self.labels[items]

        def load(index):
            sequences, payloads, labels = tf.py_function(
                read_chunk, [index], [tf.int64, tf.string, tf.int32]
            )
            for tensor in (sequences, payloads, labels):
                tensor.set_shape([None])
            return sequences, payloads, labels

        return tf.data.Dataset.range(num_chunks).map(load)
