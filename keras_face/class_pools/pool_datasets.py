"""`tf.data` pipelines of the pools: identity pairs + instances (F²C), query/key pairs (DCQ).

Both are reproducible per epoch like `keras_face.training.make_training_dataset`: the
batches of epoch `e` depend on `(seed, e)` alone, so a run resumed at epoch `e`
(`first_epoch=e`) sees exactly the batches of an uninterrupted run.
"""

import numpy as np
import tensorflow as tf

from keras_face.training.strategy import with_data_sharding


def _check_arrays(images, labels, batch_size, epochs, first_epoch):
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim < 2 or labels.shape != (images.shape[0],):
        raise ValueError(
            "images must be (N, ...) and labels (N,). "
            f"Received: images.shape={images.shape}, labels.shape={labels.shape}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be non-negative. Received: labels.min()={labels.min()}")
    batch_size = int(batch_size)
    if batch_size < 1 or images.shape[0] // batch_size < 1:
        raise ValueError(
            f"There are fewer images ({images.shape[0]}) than one global batch. "
            f"Received: batch_size={batch_size}"
        )
    if not 0 <= first_epoch <= epochs:
        raise ValueError(
            f"first_epoch must be in [0, epochs={epochs}]. Received: first_epoch={first_epoch}"
        )
    return images, labels.astype(np.int32), batch_size


def _identity_table(labels):
    """Image indices grouped by identity: (identities, first index, count, sorted order)."""
    order = np.argsort(labels, kind="stable").astype(np.int32)
    identities, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    return identities.astype(np.int32), starts.astype(np.int32), counts.astype(np.int32), order


def _epoch_order(count, seed, epoch):
    keys = tf.random.stateless_uniform([count], seed=tf.stack([seed, epoch]), dtype=tf.float32)
    return tf.argsort(keys, stable=True)


def _flip(images, seed):
    """Flip each image independently (a coin per image from `seed`)."""
    coins = tf.random.stateless_uniform([tf.shape(images)[0]], seed=seed) < 0.5
    return tf.where(coins[:, None, None, None], tf.reverse(images, axis=[2]), images)


def make_dual_loader_dataset(
    images,
    labels,
    batch_size,
    epochs,
    seed=0,
    first_epoch=0,
    random_flip=True,
    reshuffle_ids=True,
    image_dtype="float32",
):
    """F²C's two loaders zipped: `B` identities with two images each, and `B` instances.

    - **Instance stream**: every image once per epoch in an order drawn from
      `(seed, epoch)`, `N // B` full batches (it defines the epoch).
    - **Identity stream**: the identities in an order drawn per identity-epoch (the
      authors never reshuffle it, `id_sampler.set_epoch` is not called:
      `reshuffle_ids=False` reproduces that), `B` per step, running on across epochs;
      each identity brings two distinct images drawn at random (the one image twice
      when it has only one).

    Each image is flipped independently (as the authors). Batches are global (sharded
    over replicas by `tf.distribute`); each replica's `B / R` must be even.

    Args:
        images: array `(N, H, W, C)` (uint8 RGB) or `(N, F)` features.
        labels: int array `(N,)` of identities.
        batch_size: int. Global batch `B` (identities and instances per step).
        epochs: int. Last epoch (exclusive).
        seed: int. Seed of the orders, pairs and flips. Defaults to `0`.
        first_epoch: int. First epoch index (resume). Defaults to `0`.
        random_flip: bool. Random horizontal flips (images only). Defaults to `True`.
        reshuffle_ids: bool. New identity order every identity-epoch. Defaults to `True`.
        image_dtype: str. Dtype of the images fed to the model. Defaults to `"float32"`.

    Returns:
        A `tf.data.Dataset` of `(inputs, instance_labels)` with `inputs` the dict of
        `keras_face.class_pools.F2CTrainingModel` (`id_images` `(B, 2, ...)`,
        `id_labels`, `instance_images`, `instance_labels`).

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(100, 8, image_size=32)
        dataset = keras_face.class_pools.make_dual_loader_dataset(
            faces.images, faces.labels, batch_size=32, epochs=3)
        ```

    References:
        - [Wang et al., CVPR 2022](https://arxiv.org/abs/2105.10375), tiandunx/FFC
          `main.py` (the instance and identity loaders)
    """
    images, labels, batch_size = _check_arrays(images, labels, batch_size, epochs, first_epoch)
    identities, starts, counts, by_identity = _identity_table(labels)
    num_ids = int(identities.size)
    if batch_size > num_ids:
        raise ValueError(
            f"The identity loader needs at least one global batch of identities; there are "
            f"{num_ids}. Received: batch_size={batch_size}"
        )
    count = int(images.shape[0])
    steps = count // batch_size
    image_table = tf.constant(images)
    label_table = tf.constant(labels)
    tables = [tf.constant(values) for values in (identities, starts, counts, by_identity)]
    seed = tf.constant(int(seed), tf.int64)
    flip = random_flip and images.ndim == 4

    def epoch_batches(epoch):
        order = tf.reshape(_epoch_order(count, seed, epoch)[: steps * batch_size], [steps, -1])
        step_ids = epoch * steps + tf.range(steps, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((step_ids, order))

    def identity_order(id_epoch):
        epoch = id_epoch if reshuffle_ids else tf.zeros_like(id_epoch)
        return _epoch_order(num_ids, seed + 1, epoch)

    def load(step, instance_indices):
        # The identity stream: positions step*B .. step*B + B - 1 of the concatenated
        # identity-epochs (B <= number of identities, so two identity-epochs at most).
        positions = step * batch_size + tf.range(batch_size, dtype=tf.int64)
        id_epoch = positions[0] // num_ids
        orders = tf.stack([identity_order(id_epoch), identity_order(id_epoch + 1)])
        which = tf.cast(positions // num_ids - id_epoch, tf.int32)
        slot = tf.gather_nd(orders, tf.stack([which, tf.cast(positions % num_ids, tf.int32)], 1))
        id_counts = tf.gather(tables[2], slot)
        draws = tf.random.stateless_uniform([2, batch_size], seed=tf.stack([seed + 2, step]))
        first = tf.cast(draws[0] * tf.cast(id_counts, tf.float32), tf.int32)
        first = tf.minimum(first, id_counts - 1)
        others = tf.maximum(id_counts - 1, 1)
        second = tf.minimum(tf.cast(draws[1] * tf.cast(others, tf.float32), tf.int32), others - 1)
        second = tf.where(id_counts > 1, (first + 1 + second) % id_counts, first)
        base = tf.gather(tables[1], slot)
        pair = tf.gather(tables[3], tf.stack([base + first, base + second], axis=1))
        id_images = tf.gather(image_table, pair)
        instance_images = tf.gather(image_table, instance_indices)
        if flip:
            shape = tf.shape(id_images)
            flat = tf.reshape(id_images, tf.concat([[-1], shape[2:]], 0))
            id_images = tf.reshape(_flip(flat, tf.stack([seed + 3, step])), shape)
            instance_images = _flip(instance_images, tf.stack([seed + 4, step]))
        instance_labels = tf.gather(label_table, instance_indices)
        inputs = {
            "id_images": tf.cast(id_images, image_dtype),
            "id_labels": tf.gather(tables[0], slot),
            "instance_images": tf.cast(instance_images, image_dtype),
            "instance_labels": instance_labels,
        }
        return inputs, instance_labels

    dataset = tf.data.Dataset.range(int(first_epoch), int(epochs)).flat_map(epoch_batches)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return with_data_sharding(dataset.prefetch(tf.data.AUTOTUNE))


def make_pair_dataset(
    images,
    labels,
    batch_size,
    epochs,
    seed=0,
    first_epoch=0,
    random_flip=True,
    image_dtype="float32",
):
    """DCQ's query/key pairs: every image once per epoch, with a key image of its identity.

    The key is drawn uniformly **with replacement** among the identity's images, so it
    can be the query itself (bilylee/DCQ `data_proc/sampler.py`, `k=2`); both are flipped
    independently.

    Args:
        images: array `(N, H, W, C)` (uint8 RGB) or `(N, F)` features.
        labels: int array `(N,)` of identities.
        batch_size: int. Global batch.
        epochs: int. Last epoch (exclusive).
        seed: int. Seed of the order, keys and flips. Defaults to `0`.
        first_epoch: int. First epoch index (resume). Defaults to `0`.
        random_flip: bool. Random horizontal flips (images only). Defaults to `True`.
        image_dtype: str. Dtype of the images fed to the model. Defaults to `"float32"`.

    Returns:
        A `tf.data.Dataset` of `(inputs, labels)` with `inputs` the dict of
        `keras_face.class_pools.DCQTrainingModel` (`query_images`, `key_images`,
        `labels`).

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(100, 8, image_size=32)
        dataset = keras_face.class_pools.make_pair_dataset(
            faces.images, faces.labels, batch_size=32, epochs=3)
        ```

    References:
        - [Li et al., CVPR 2021](https://arxiv.org/abs/2105.11113), bilylee/DCQ
          `data_proc/sampler.py`
    """
    images, labels, batch_size = _check_arrays(images, labels, batch_size, epochs, first_epoch)
    identities, starts, counts, by_identity = _identity_table(labels)
    position_of = {int(identity): index for index, identity in enumerate(identities)}
    identity_index = np.asarray([position_of[int(label)] for label in labels], np.int32)
    count = int(images.shape[0])
    steps = count // batch_size
    image_table = tf.constant(images)
    label_table = tf.constant(labels)
    tables = [tf.constant(values) for values in (identity_index, starts, counts, by_identity)]
    seed = tf.constant(int(seed), tf.int64)
    flip = random_flip and images.ndim == 4

    def epoch_batches(epoch):
        order = tf.reshape(_epoch_order(count, seed, epoch)[: steps * batch_size], [steps, -1])
        step_ids = epoch * steps + tf.range(steps, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((step_ids, order))

    def load(step, indices):
        group = tf.gather(tables[0], indices)
        group_counts = tf.gather(tables[2], group)
        draw = tf.random.stateless_uniform([tf.size(indices)], seed=tf.stack([seed + 1, step]))
        offset = tf.minimum(
            tf.cast(draw * tf.cast(group_counts, tf.float32), tf.int32), group_counts - 1
        )
        keys = tf.gather(tables[3], tf.gather(tables[1], group) + offset)
        queries = tf.gather(image_table, indices)
        key_images = tf.gather(image_table, keys)
        if flip:
            queries = _flip(queries, tf.stack([seed + 2, step]))
            key_images = _flip(key_images, tf.stack([seed + 3, step]))
        batch_labels = tf.gather(label_table, indices)
        inputs = {
            "query_images": tf.cast(queries, image_dtype),
            "key_images": tf.cast(key_images, image_dtype),
            "labels": batch_labels,
        }
        return inputs, batch_labels

    dataset = tf.data.Dataset.range(int(first_epoch), int(epochs)).flat_map(epoch_batches)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return with_data_sharding(dataset.prefetch(tf.data.AUTOTUNE))
