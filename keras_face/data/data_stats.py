"""Counting and reporting of images a reader skipped because they could not be decoded."""

import logging

import keras

from keras_face.errors import DataError

logger = logging.getLogger("keras_face.data")


class UndecodableImageError(DataError):
    """Raised in strict mode when an image cannot be used; names its key and why.

    Undecodable bytes, an unreadable or special file, or (with `size_mismatch="skip"`) an
    image of another size than `image_size`.
    """


class DataStats:
    """What a `keras_face.data` reader delivered and skipped, pass by pass.

    Readers decode images inside `tf.data`; an image that cannot be used (undecodable,
    an unreadable or special file, or of another size than `image_size` with
    `size_mismatch="skip"`) is dropped from the stream (never replaced, so no label is
    shifted) and recorded here with its key and, where known, why. An image skipped in
    every pass is one skipped image: `skipped` counts distinct keys and `skipped_keys`
    lists each once, while `skip_events` counts every skip of every pass. The counts are
    exact at the end of each pass over the data, when the reader also logs a warning on the
    `"keras_face.data"` logger if anything was skipped. Pass the same object to several
    readers to pool their counts, or read `stats` of the returned
    `keras_face.data.FaceDataset`. Counts assume one iterator at a time over a dataset (as
    Keras `fit` and loops do).

    Args:
        name: str or `None`. Label used in reports. Defaults to `None`.
        max_recorded_keys: int. At most this many skipped keys are kept in `skipped_keys`
            (counts are always complete). Defaults to `10000`.

    Example:
        ```python
        stats = keras_face.data.DataStats()
        faces = keras_face.data.read_recordio("train.rec", batch_size=128, stats=stats)
        model.fit(faces.dataset, epochs=2, callbacks=[keras_face.data.DataStatsCallback(stats)])
        print(stats.skipped, stats.skipped_keys[:10], stats.skip_reasons)
        ```
    """

    def __init__(self, name=None, max_recorded_keys=10000):
        self.name = name
        self.max_recorded_keys = int(max_recorded_keys)
        self.reset()

    def reset(self):
        """Sets every count back to zero."""
        self.skipped = 0
        self.skip_events = 0
        self.delivered = 0
        self.passes_completed = 0
        self.skipped_keys = []
        self.skip_reasons = {}
        self.last_pass_skipped = 0
        self.last_pass_delivered = 0
        self._seen = set()

    def record_skipped(self, keys, reasons=None):
        """Adds skipped-image keys (strings or ints); a key seen before counts once.

        Args:
            keys: iterable of keys.
            reasons: dict or `None`. Why some keys were skipped (`key -> str`), kept in
                `skip_reasons` for the recorded keys. Defaults to `None`.
        """
        keys = list(keys)
        self.skip_events += len(keys)
        for key in keys:
            if key in self._seen:
                continue
            self._seen.add(key)
            self.skipped += 1
            if len(self.skipped_keys) < self.max_recorded_keys:
                self.skipped_keys.append(key)
                if reasons and key in reasons:
                    self.skip_reasons[key] = reasons[key]

    def record_delivered(self, count):
        """Adds `count` decoded images to the counts."""
        self.delivered += int(count)

    def summary(self):
        """Returns a one-line report of the counts."""
        name = f"{self.name}: " if self.name else ""
        text = (
            f"{name}{self.delivered} images decoded, {self.skipped} images skipped "
            f"(undecodable, unreadable or of another size) over {self.passes_completed} "
            "complete passes"
        )
        if self.skip_events > self.skipped:
            text += f" ({self.skip_events} skips in all passes together)"
        if self.skipped_keys:
            shown = ", ".join(
                f"{key} ({self.skip_reasons[key]})" if key in self.skip_reasons else str(key)
                for key in self.skipped_keys[:10]
            )
            more = ", ..." if self.skipped > 10 else ""
            text += f" (keys: {shown}{more})"
        return text

    def __repr__(self):
        return f"<DataStats {self.summary()}>"


class DataStatsCallback(keras.callbacks.Callback):
    """Reports skipped undecodable images at the end of every epoch and evaluation.

    Adds `skipped_images` (the running total) to the epoch logs and prints a line whenever
    new images were skipped since the previous report. Useful with `repeat=True` datasets,
    whose passes do not line up with Keras epochs.

    Args:
        stats: `keras_face.data.DataStats` or the `keras_face.data.FaceDataset` returned
            by a reader (its `stats` is used).
        verbose: int. 0 adds the count to the logs only; 1 also prints new skips.
            Defaults to `1`.

    Example:
        ```python
        faces = keras_face.data.read_recordio("train.rec", batch_size=128, repeat=True)
        callback = keras_face.data.DataStatsCallback(faces)
        model.fit(faces.dataset, epochs=10, steps_per_epoch=100, callbacks=[callback])
        ```
    """

    def __init__(self, stats, verbose=1):
        super().__init__()
        stats = getattr(stats, "stats", stats)
        if not isinstance(stats, DataStats):
            raise ValueError(
                "`stats` must be a keras_face.data.DataStats or a FaceDataset returned by a "
                f"keras_face.data reader. Received: stats={stats!r}"
            )
        self.stats = stats
        self.verbose = verbose
        self._reported = stats.skipped

    def _report(self, when):
        new = self.stats.skipped - self._reported
        self._reported = self.stats.skipped
        if new and self.verbose:
            print(f"\n{when}: {new} undecodable images skipped. {self.stats.summary()}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["skipped_images"] = self.stats.skipped
        self._report(f"Epoch {epoch + 1}")

    def on_test_end(self, logs=None):
        self._report("Evaluation")

    def on_predict_end(self, logs=None):
        self._report("Prediction")
