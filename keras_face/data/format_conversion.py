"""Converting face data between image folders, RecordIO packs and TFRecord shards.

Images travel as their encoded bytes, never decoded and re-encoded: a JPEG of a `.rec` pack is
the same JPEG in the folder or the TFRecord shard it is converted to, so every format decodes
to the same pixels. Labels travel with them; an image folder's identity names are kept when
converting to another folder, and numbered (`00000`, `00001`, ...) when they are unknown.
"""

import os

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_face.data.any_format import detect_source
from keras_face.data.image_folder import list_image_folder
from keras_face.data.image_folder import write_image_folder
from keras_face.data.recordio_dataset import RecordIOImagePack
from keras_face.data.recordio_dataset import write_recordio
from keras_face.data.tfrecord import IMAGE_FEATURE
from keras_face.data.tfrecord import LABEL_FEATURE
from keras_face.data.tfrecord import write_tfrecord

FORMATS = ("folder", "recordio", "tfrecord")
_PARSE_BATCH = 256


def _tfrecord_files(path):
    if isinstance(path, (list, tuple)):
        return [os.fspath(item) for item in path]
    path = os.fspath(path)
    files = sorted(tf.io.gfile.glob(path)) if any(c in path for c in "*?[") else [path]
    if not files:
        raise FileNotFoundError(f"No TFRecord file matches the pattern. Received: path={path!r}")
    return files


class _EncodedSamples:
    """The `(encoded bytes, label)` samples of a dataset in any format, with its labels."""

    def __init__(self, path, source):
        self.path = path
        self.source = detect_source(path) if source == "auto" else source
        if self.source not in FORMATS:
            raise ValueError(f"`source` must be one of {FORMATS}. Received: source={source!r}")
        self.class_names = None
        self.pack = None
        if self.source == "recordio":
            self.pack = RecordIOImagePack(path)
            self.labels = self.pack.labels.astype(np.int64)
            self.num_classes = int(self.pack.num_classes)
        elif self.source == "folder":
            self.paths, labels, self.class_names = list_image_folder(path)
            self.labels = np.asarray(labels, dtype=np.int64)
            self.num_classes = len(self.class_names)
        else:
            self.files = _tfrecord_files(path)
            self.labels = np.array([label for _, label in self._tfrecord(with_images=False)])
            self.labels = self.labels.astype(np.int64)
            self.num_classes = int(self.labels.max()) + 1 if len(self.labels) else 0

    def _tfrecord(self, with_images=True):
        features = {LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64)}
        if with_images:
            features[IMAGE_FEATURE] = tf.io.FixedLenFeature([], tf.string)
        records = tf.data.TFRecordDataset(self.files).batch(_PARSE_BATCH)
        parsed = records.map(lambda serialized: tf.io.parse_example(serialized, features))
        for batch in parsed.as_numpy_iterator():
            images = batch.get(IMAGE_FEATURE, [None] * len(batch[LABEL_FEATURE]))
            yield from zip(images, batch[LABEL_FEATURE].tolist())

    def __len__(self):
        return len(self.labels)

    def is_grouped(self):
        """Whether the images of each label are contiguous (the insightface layout needs it)."""
        changes = np.flatnonzero(np.diff(self.labels)) + 1
        starts = self.labels[np.concatenate([[0], changes])] if len(self.labels) else []
        return len(set(np.asarray(starts).tolist())) == len(starts)

    def random_access(self):
        return self.source != "tfrecord"

    def read(self, index):
        if self.source == "recordio":
            return bytes(self.pack.read_image(index))
        with open(self.paths[index], "rb") as file:
            return file.read()

    def samples(self, order=None):
        """Yields `(bytes, label)` in file order, or in `order` (random-access formats)."""
        if self.source == "tfrecord":
            for data, label in self._tfrecord():
                yield bytes(data), int(label)
            return
        indices = range(len(self)) if order is None else order
        for index in indices:
            yield self.read(int(index)), int(self.labels[index])

    def close(self):
        if self.pack is not None:
            self.pack.close()


def convert_face_dataset(
    source_path,
    destination,
    to_format,
    source="auto",
    layout="insightface",
    num_shards=1,
    progress=True,
):
    """Converts face data between an image folder, a RecordIO pack and TFRecord shards.

    Encoded images are copied byte for byte (nothing is re-encoded), so the converted data
    decodes to exactly the same pixels and labels. For the insightface RecordIO layout the
    images of each identity must be contiguous: samples are written sorted by label (stable,
    so each identity keeps its order); TFRecord shards, which interleave identities, are
    first copied to a temporary plain pack beside `destination` to allow this.

    Args:
        source_path: str, path-like or list of str. An image folder, a `.rec` pack or
            TFRecord files (a file, a glob pattern or a list).
        destination: str or path-like. The folder, `.rec` file or TFRecord path to write
            (shards are named `<stem>-00000-of-0000N<suffix>` when `num_shards > 1`).
        to_format: str. `"folder"`, `"recordio"` or `"tfrecord"`.
        source: str. Format of `source_path`: `"auto"` (see
            `keras_face.data.detect_source`), `"folder"`, `"recordio"` or `"tfrecord"`.
            Defaults to `"auto"`.
        layout: str. RecordIO layout to write, `"insightface"` or `"plain"`.
            Defaults to `"insightface"`.
        num_shards: int. TFRecord files to write. Defaults to `1`.
        progress: bool. Show a progress bar. Defaults to `True`.

    Returns:
        dict with `source`, `to_format`, `num_images`, `num_classes`, `class_names` (or
        `None`) and `paths` (the files written: the `.rec`, the shards or the images).

    Example:
        ```python
        keras_face.data.convert_face_dataset(
            "faces_emore/train.rec", "shards/train.tfrecord", "tfrecord", num_shards=64
        )
        ```
    """
    if to_format not in FORMATS:
        raise ValueError(f"`to_format` must be one of {FORMATS}. Received: to_format={to_format!r}")
    if layout not in ("insightface", "plain"):
        raise ValueError(f"`layout` must be 'insightface' or 'plain'. Received: layout={layout!r}")
    destination = os.fspath(destination)
    samples = _EncodedSamples(source_path, source)
    try:
        summary = {
            "source": samples.source,
            "to_format": to_format,
            "num_images": len(samples),
            "num_classes": samples.num_classes,
            "class_names": samples.class_names,
        }
        if to_format == "recordio":
            summary["paths"] = [_to_recordio(samples, destination, layout, progress)]
        elif to_format == "tfrecord":
            summary["paths"] = write_tfrecord(
                destination,
                samples.samples(),
                num_shards=num_shards,
                progress=progress,
                total=len(samples),
            )
        else:
            summary["paths"] = write_image_folder(
                destination,
                (data for data, _ in samples.samples()),
                samples.labels,
                class_names=samples.class_names,
                progress=progress,
            )
    finally:
        samples.close()
    return summary


def _to_recordio(samples, destination, layout, progress):
    if layout == "plain" or samples.is_grouped():
        order = None
    elif samples.random_access():
        order = np.argsort(samples.labels, kind="stable")
    else:
        # A stream in mixed label order: copy it to a plain pack, then write that sorted.
        temporary = destination + ".unsorted.rec"
        write_recordio(
            temporary,
            samples.samples(),
            layout="plain",
            num_classes=samples.num_classes,
            write_property=False,
            progress=False,
            total=len(samples),
        )
        unsorted = None
        try:
            unsorted = _EncodedSamples(temporary, "recordio")
            unsorted.num_classes = samples.num_classes  # trailing classes may have no image
            return _to_recordio(unsorted, destination, layout, progress)
        finally:
            if unsorted is not None:
                unsorted.close()
            for path in (temporary, os.path.splitext(temporary)[0] + ".idx"):
                if os.path.exists(path):
                    os.remove(path)
    write_recordio(
        destination,
        tqdm(samples.samples(order), total=len(samples), desc="Converting", disable=not progress),
        layout=layout,
        num_classes=samples.num_classes,
        progress=False,
    )
    return destination
