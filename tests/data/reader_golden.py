"""Fixed reader scenarios whose batches are pinned by hash in `test_reader_golden.py`.

Every scenario writes small PNG images (decoded pixels do not depend on the encoder version)
and reads them with one call in the keyword form the readers have always accepted. The
hashes in the test were computed with the readers as they were before `ReadOptions` and
`FaceDataset` (commit 82b8a65), so a refactor that changes an order, a flip, a resize or a
normalisation fails.
"""

import hashlib
import itertools

import numpy as np

from keras_face import data
from tests.data.image_testing import encode
from tests.data.image_testing import make_images

NUM_IMAGES = 23
LABELS = np.repeat(np.arange(6), [4, 3, 5, 4, 2, 5])


def digest(elements, limit=None):
    """sha256 of the dtype, shape and bytes of every array of the first `limit` elements."""
    hasher = hashlib.sha256()
    for element in itertools.islice(elements, limit):
        for array in element:
            array = np.asarray(array)
            hasher.update(f"{array.dtype.str}{array.shape}".encode())
            hasher.update(np.ascontiguousarray(array).tobytes())
    return hasher.hexdigest()[:16]


def write_fixtures(root):
    """Writes the RecordIO packs, the image folder and the TFRecord shards under `root`."""
    images = make_images(NUM_IMAGES, seed=101)
    encoded = [encode(image) for image in images]
    samples = list(zip(encoded, LABELS.tolist()))
    paths = {
        "insightface": str(root / "insightface" / "train.rec"),
        "plain": str(root / "plain" / "train.rec"),
        "broken": str(root / "broken" / "train.rec"),
        "folder": str(root / "folder"),
    }
    data.write_recordio(paths["insightface"], samples, progress=False)
    data.write_recordio(paths["plain"], samples, layout="plain", progress=False)
    broken = list(samples)
    broken[5] = (b"not an image", broken[5][1])
    broken[17] = (b"\x89PNG\r\n\x1a\n truncated", broken[17][1])
    data.write_recordio(paths["broken"], broken, progress=False)
    data.write_image_folder(paths["folder"], images, LABELS, progress=False)
    paths["tfrecord"] = data.write_tfrecord(
        root / "shards" / "train.tfrecord", samples, num_shards=3, progress=False
    )
    return paths


def darken(images):
    """An augmentation on uint8 batches (integer arithmetic, so the result is exact)."""
    return images // 2 + 10


# name -> (reader, path key, keyword arguments, number of elements hashed or None for a pass)
SCENARIOS = {
    "recordio_repeat_flip_arcface": (
        "read_recordio",
        "insightface",
        dict(batch_size=4, shuffle=True, seed=3, flip=True, preprocessing="arcface", repeat=True),
        14,
    ),
    "recordio_shard_resize_drop": (
        "read_recordio",
        "insightface",
        dict(
            batch_size=5,
            seed=11,
            image_size=(12, 10),
            drop_remainder=True,
            num_shards=2,
            shard_index=1,
            preprocessing="insightface",
        ),
        None,
    ),
    "recordio_plain_single_flip": (
        "read_recordio",
        "plain",
        dict(shuffle=False, flip=True, seed=2),
        None,
    ),
    "recordio_augmentation": (
        "read_recordio",
        "insightface",
        dict(batch_size=3, seed=4, augmentation=darken, preprocessing="arcface"),
        None,
    ),
    "recordio_broken_skipped": (
        "read_recordio",
        "broken",
        dict(batch_size=4, seed=8, flip=True),
        None,
    ),
    "folder_flip_insightface": (
        "read_image_folder",
        "folder",
        dict(batch_size=4, seed=0, flip=True, preprocessing="insightface"),
        None,
    ),
    "folder_single_resize": (
        "read_image_folder",
        "folder",
        dict(seed=9, image_size=8, num_parallel_calls=None, prefetch=False),
        None,
    ),
    "tfrecord_shuffle_repeat": (
        "read_tfrecord",
        "tfrecord",
        dict(
            batch_size=4,
            seed=5,
            shuffle_buffer_size=8,
            flip=True,
            preprocessing="arcface",
            repeat=True,
        ),
        9,
    ),
    "tfrecord_file_shard": (
        "read_tfrecord",
        "tfrecord",
        dict(shuffle=False, num_shards=2, shard_index=1, batch_size=3),
        None,
    ),
}


def make_training_images():
    images = make_images(30, height=8, width=6, seed=7)
    labels = np.arange(30) % 7
    return images, labels


# name -> keyword arguments of keras_face.training.make_training_dataset after (images, labels)
TRAINING_SCENARIOS = {
    "training_default": dict(batch_size=4, epochs=2, seed=1),
    "training_resumed": dict(batch_size=8, epochs=3, seed=5, first_epoch=1),
    "training_no_flip_no_shuffle_uint8": dict(
        batch_size=6, epochs=1, random_flip=False, shuffle=False, image_dtype="uint8"
    ),
}
