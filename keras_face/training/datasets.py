"""Training datasets in the layout `FaceTrainingModel` takes: `((images, labels), labels)`."""

import numpy as np
import tensorflow as tf

from keras_face.data.face_dataset import FaceDataset
from keras_face.training.strategy import with_data_sharding


def make_training_dataset(
    images,
    labels,
    batch_size,
    epochs,
    seed=0,
    first_epoch=0,
    random_flip=True,
    shuffle=True,
    image_dtype="float32",
    extras=(),
    flipped_extras=None,
):
    """Global batches of in-memory images for `FaceTrainingModel.fit`, reproducible per epoch.

    Epoch `e` visits the images in a permutation drawn from `(seed, e)` alone, and flips
    each image with a coin drawn from `(seed, e, step)`: the batches of an epoch do not
    depend on what ran before, so a run resumed at epoch `e` (`first_epoch=e`, see
    `keras_face.training.BackupAndRestore`) sees exactly the batches of an uninterrupted
    run. Each epoch has `len(images) // batch_size` full batches (the remainder of the
    permutation is left for that epoch, as `drop_last=True` data loaders do). Sharding
    across workers is by data (`AutoShardPolicy.DATA`).

    Args:
        images: uint8 array `(N, H, W, 3)`, raw RGB (the backbones preprocess).
        labels: int array `(N,)` of class ids.
        batch_size: int. Global batch size (all replicas together).
        epochs: int. Last epoch (exclusive): the dataset holds epochs
            `first_epoch .. epochs - 1`, `(epochs - first_epoch) * (N // batch_size)` batches.
        seed: int. Seed of the order and the flips. Defaults to `0`.
        first_epoch: int. First epoch index. Defaults to `0`.
        random_flip: bool. Random horizontal flip (arcface_torch's only augmentation).
            Defaults to `True`.
        shuffle: bool. Permute the images every epoch. Defaults to `True`.
        image_dtype: str. Dtype of the images fed to the model. Defaults to `"float32"`.
        extras: sequence of arrays `(N, ...)`: per-image inputs that follow the labels
            (ages for `keras_face.age_invariant.AgeInvariantTrainingModel`), unchanged by
            a flip. Defaults to `()`.
        flipped_extras: sequence of arrays like `extras` (or `None` entries): the value
            of an extra for the flipped image (mirrored landmarks), used when the image is
            flipped. Defaults to `None` (extras do not change with a flip). With it, the
            flip coins are drawn per image from `(seed, epoch, step)` explicitly.

    Returns:
        A `tf.data.Dataset` of `((images, labels, *extras), labels)`.

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(100, 20, image_size=32)
        dataset = keras_face.training.make_training_dataset(
            faces.images, faces.labels, batch_size=64, epochs=5)
        ```
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or labels.shape != (images.shape[0],):
        raise ValueError(
            "images must be (N, H, W, C) and labels (N,). "
            f"Received: images.shape={images.shape}, labels.shape={labels.shape}"
        )
    count = int(images.shape[0])
    batch_size = int(batch_size)
    steps = count // batch_size
    if steps < 1:
        raise ValueError(
            f"There are fewer training images ({count}) than one global batch. "
            f"Received: batch_size={batch_size}"
        )
    if not 0 <= first_epoch <= epochs:
        raise ValueError(
            f"first_epoch must be in [0, epochs={epochs}]. Received: first_epoch={first_epoch}"
        )
    extra_tables = []
    for index, extra in enumerate(extras):
        extra = np.asarray(extra)
        if extra.shape[:1] != (count,):
            raise ValueError(
                f"Every extra input needs one row per image ({count}). Received: extras[{index}] "
                f"of shape {extra.shape}"
            )
        extra_tables.append(tf.constant(extra))
    flipped_tables = [None] * len(extra_tables)
    if flipped_extras is not None:
        if len(flipped_extras) != len(extra_tables):
            raise ValueError(
                f"flipped_extras needs one entry per extra ({len(extra_tables)}). "
                f"Received: {len(flipped_extras)} entries"
            )
        flipped_tables = [
            None if flipped is None else tf.constant(np.asarray(flipped))
            for flipped in flipped_extras
        ]
    image_table = tf.constant(images)
    label_table = tf.constant(labels.astype(np.int32))
    seed = int(seed)

    def epoch_batches(epoch):
        if shuffle:
            keys = tf.random.stateless_uniform(
                [count], seed=tf.stack([tf.constant(seed, tf.int64), epoch]), dtype=tf.float32
            )
            order = tf.argsort(keys, stable=True)
        else:
            order = tf.range(count)
        order = tf.reshape(order[: steps * batch_size], [steps, batch_size])
        step_ids = tf.range(steps, dtype=tf.int64)
        epochs_column = tf.fill([steps], epoch)
        return tf.data.Dataset.from_tensor_slices((epochs_column, step_ids, order))

    def load(epoch, step, indices):
        batch = tf.gather(image_table, indices)
        batch_extras = [tf.gather(table, indices) for table in extra_tables]
        flip_seed = tf.stack([tf.constant(seed + 1, tf.int64), epoch * steps + step])
        if random_flip and flipped_extras is not None:
            # One visible coin per image, so that the extras can follow their image.
            coins = tf.random.stateless_uniform([tf.shape(indices)[0]], seed=flip_seed) < 0.5
            batch = tf.where(coins[:, None, None, None], tf.reverse(batch, axis=[2]), batch)
            for index, table in enumerate(flipped_tables):
                if table is not None:
                    flipped = tf.gather(table, indices)
                    shape = [-1] + [1] * (len(flipped.shape) - 1)
                    batch_extras[index] = tf.where(
                        tf.reshape(coins, shape), flipped, batch_extras[index]
                    )
        elif random_flip:
            batch = tf.image.stateless_random_flip_left_right(batch, seed=flip_seed)
        batch = tf.cast(batch, image_dtype)
        batch_labels = tf.gather(label_table, indices)
        return (batch, batch_labels, *batch_extras), batch_labels

    dataset = tf.data.Dataset.range(int(first_epoch), int(epochs)).flat_map(epoch_batches)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return with_data_sharding(dataset.prefetch(tf.data.AUTOTUNE))


def as_training_pairs(face_dataset, image_dtype="float32"):
    """Maps a reader's `(images, labels)` batches to `((images, labels), labels)` for training.

    Args:
        face_dataset: `keras_face.data.FaceDataset` (what `keras_face.data.read_recordio`
            and the other readers return) or a `tf.data.Dataset` of `(images, labels)`
            batches.
        image_dtype: str. Dtype the images are cast to. Defaults to `"float32"`.

    Returns:
        A `tf.data.Dataset` of `((images, labels), labels)` with data sharding (the
        layout `keras_face.training.FaceTrainingModel` takes). The reader's counts stay on
        the `FaceDataset` (`face_dataset.stats`, `.num_classes`, `.num_images`).

    Example:
        ```python
        faces = keras_face.data.read_recordio("train.rec", batch_size=128, repeat=True,
                                              drop_remainder=True)
        model.fit(keras_face.training.as_training_pairs(faces),
                  steps_per_epoch=faces.num_images // 128)
        ```
    """
    if isinstance(face_dataset, FaceDataset):
        dataset = face_dataset.dataset
    elif isinstance(face_dataset, tf.data.Dataset):
        dataset = face_dataset
    else:
        raise ValueError(
            "`face_dataset` must be a keras_face.data.FaceDataset or a tf.data.Dataset. "
            f"Received: face_dataset={face_dataset!r}"
        )

    def pair(images, labels):
        labels = tf.cast(labels, tf.int32)
        return (tf.cast(images, image_dtype), labels), labels

    return with_data_sharding(
        dataset.map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    )
