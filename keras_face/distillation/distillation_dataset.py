"""Training batches with offline teacher embeddings: `((images, labels, teacher), labels)`."""

import numpy as np
import tensorflow as tf

from keras_face.distillation.teacher_embeddings import TeacherEmbeddings
from keras_face.distillation.teacher_embeddings import check_teacher_embeddings
from keras_face.training import make_training_dataset
from keras_face.training.strategy import with_data_sharding


def make_distillation_dataset(
    images,
    labels,
    teacher_embeddings,
    batch_size,
    epochs,
    seed=0,
    first_epoch=0,
    random_flip=True,
    shuffle=True,
    image_dtype="float32",
):
    """`make_training_dataset`'s batches, each image paired with its teacher embedding.

    The images and labels are exactly those of `keras_face.training.make_training_dataset`
    with the same arguments (same order, same flips, same resumption by `first_epoch`), so
    a distilled student and a student trained from scratch see the same batches. Each
    image comes with the teacher's embedding of the image as fed: the flipped-image
    embedding where the pipeline flipped it (the same pipeline, run over one small index
    image per training image, says which image was fed and whether it was flipped).

    Args:
        images: uint8 array `(N, H, W, 3)`, raw RGB.
        labels: int array `(N,)` of class ids.
        teacher_embeddings: `TeacherEmbeddings` with `N` rows (from
            `precompute_teacher_embeddings` or `load_teacher_embeddings`).
        batch_size: int. Global batch size.
        epochs: int. Last epoch (exclusive).
        seed: int. Seed of the order and the flips. Defaults to `0`.
        first_epoch: int. First epoch index. Defaults to `0`.
        random_flip: bool. Random horizontal flip. Defaults to `True`.
        shuffle: bool. Permute the images every epoch. Defaults to `True`.
        image_dtype: str. Dtype of the images fed to the model. Defaults to `"float32"`.

    Returns:
        A `tf.data.Dataset` of `((images, labels, teacher_embeddings), labels)`.

    Raises:
        ValueError: the embeddings are non-finite, or their row count differs from the
            number of images (checked here, when the dataset is built).

    Example:
        ```python
        teacher_embeddings = keras_face.distillation.precompute_teacher_embeddings(
            teacher, faces.images)
        dataset = keras_face.distillation.make_distillation_dataset(
            faces.images, faces.labels, teacher_embeddings, batch_size=64, epochs=8)
        ```
    """
    if not isinstance(teacher_embeddings, TeacherEmbeddings):
        raise ValueError(
            "teacher_embeddings must be a keras_face.distillation.TeacherEmbeddings. "
            f"Received: teacher_embeddings={type(teacher_embeddings).__name__}"
        )
    images = np.asarray(images)
    check_teacher_embeddings(
        teacher_embeddings.embeddings,
        teacher_embeddings.flipped_embeddings,
        num_images=images.shape[0] if images.ndim else None,
    )
    # A 1x2 "index image" per training image, [i, -1]: the flip that make_training_dataset
    # draws for the image (its coins depend on the seed and the batch, not on the pixels)
    # turns it into [-1, i]. Running that same pipeline on the index images gives, batch
    # for batch, which image was fed and whether it was flipped.
    count = int(images.shape[0])
    index_images = np.full((count, 1, 2, 1), -1, dtype=np.int32)
    index_images[:, 0, 0, 0] = np.arange(count, dtype=np.int32)
    indices = make_training_dataset(
        index_images,
        labels,
        batch_size,
        epochs,
        seed=seed,
        first_epoch=first_epoch,
        random_flip=random_flip,
        shuffle=shuffle,
        image_dtype="int32",
    )
    batches = make_training_dataset(
        images,
        labels,
        batch_size,
        epochs,
        seed=seed,
        first_epoch=first_epoch,
        random_flip=random_flip,
        shuffle=shuffle,
        image_dtype=image_dtype,
    )
    table = tf.constant(teacher_embeddings.embeddings)
    flipped_table = tf.constant(teacher_embeddings.flipped_embeddings)

    def pair(index_batch, batch):
        (index_images_fed, _), _ = index_batch
        (images_fed, labels_fed), _ = batch
        first, last = index_images_fed[:, 0, 0, 0], index_images_fed[:, 0, -1, 0]
        flipped = last >= 0
        index = tf.where(flipped, last, first)
        teacher = tf.where(
            flipped[:, None], tf.gather(flipped_table, index), tf.gather(table, index)
        )
        return (images_fed, labels_fed, teacher), labels_fed

    dataset = tf.data.Dataset.zip((indices, batches)).map(
        pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return with_data_sharding(dataset.prefetch(tf.data.AUTOTUNE))
