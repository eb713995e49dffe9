"""`PartialFC`'s kernel gradient on TensorFlow: one gather, equal to TensorFlow's own.

TensorFlow differentiates `take(kernel, columns, axis=1)` into an `unsorted_segment_sum`
and a transpose of the whole `(C, D)` gradient; `PartialFC` writes the same dense
gradient with one gather (`partial_fc._gather_columns`). These tests hold it to
TensorFlow's gradient bit for bit, sub-centres and padding columns included.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_face import heads
from keras_face.heads import partial_fc

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the custom gradient is TensorFlow's"
)


def sampled_table(classes, num_valid, num_classes):
    """The `(C + 1,)` class -> column table that `PartialFC.call` builds."""
    table = np.full(num_classes + 1, -1, np.int32)
    for column, cls in enumerate(classes[:num_valid]):
        table[cls] = column
    return table


@pytest.mark.parametrize("per_class", [1, 3])
def test_gather_gradient_equals_tensorflow(per_class):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    num_classes, dim, num_valid, padding = 50, 8, 7, 3
    classes = np.sort(rng.choice(num_classes, num_valid, replace=False)).astype(np.int32)
    # Padding entries read the last class, as PartialFC clips them.
    gathered = np.concatenate([classes, np.full(padding, num_classes - 1, np.int32)])
    columns = (gathered[:, None] * per_class + np.arange(per_class)[None, :]).reshape(-1)
    table = sampled_table(classes, num_valid, num_classes)
    kernel = tf.constant(rng.normal(size=(dim, num_classes * per_class)).astype("float32"))
    upstream = rng.normal(size=(dim, columns.shape[0])).astype("float32")
    upstream[:, num_valid * per_class :] = 0.0  # padding columns pass a zero gradient
    upstream = tf.constant(upstream)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(kernel)
        ours = partial_fc._gather_columns(kernel, tf.constant(columns), table, per_class)
        reference = tf.gather(kernel, columns, axis=1)
        loss_ours = tf.reduce_sum(ours * upstream)
        loss_reference = tf.reduce_sum(reference * upstream)
    np.testing.assert_array_equal(ours.numpy(), reference.numpy())
    gradient = tf.convert_to_tensor(tape.gradient(loss_ours, kernel)).numpy()
    expected = tf.convert_to_tensor(tape.gradient(loss_reference, kernel)).numpy()
    np.testing.assert_array_equal(gradient, expected)
    # Columns of unsampled classes: exactly zero; of sampled ones: the upstream column.
    sampled_columns = columns[: num_valid * per_class]
    unsampled = np.setdiff1d(np.arange(num_classes * per_class), sampled_columns)
    assert np.all(gradient[:, unsampled] == 0.0)
    np.testing.assert_array_equal(
        gradient[:, sampled_columns], upstream.numpy()[:, : num_valid * per_class]
    )


def test_kernel_column_positions():
    table = np.array([-1, 0, -1, 1, -1], np.int32)  # classes 1 and 3 sampled, C = 4
    np.testing.assert_array_equal(
        ops.convert_to_numpy(partial_fc.kernel_column_positions(table, 1)), [-1, 0, -1, 1]
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(partial_fc.kernel_column_positions(table, 2)),
        [-1, -1, 0, 1, -1, -1, 2, 3],
    )


@pytest.mark.parametrize("jit", [False, True])
def test_layer_kernel_gradient_equals_plain_gather(jit):
    # The whole PartialFC call (ArcFace, 2 sub-centres) differentiated with the gather
    # gradient equals the same call with TensorFlow's gradient of `take`, bit for bit,
    # in graph mode and under XLA.
    import tensorflow as tf

    rng = np.random.default_rng(1)
    num_classes, dim, batch = 40, 8, 6
    x = tf.constant(rng.normal(size=(batch, dim)).astype("float32"))
    y = tf.constant(rng.integers(0, num_classes, batch).astype("int32"))

    def gradients(plain):
        head = heads.PartialFC(
            heads.SubCenterArcFace(num_classes, sub_centers=2),
            sample_rate=0.25,
            seed=3,
            kernel_layout="columns",
        )
        head.build([(batch, dim), (batch,)])
        head.head.kernel.assign(rng_kernel)
        if plain:
            head._sampled_kernel = lambda classes, table: ops.take(
                head.head.kernel,
                ops.reshape(
                    ops.minimum(classes, num_classes - 1)[:, None] * 2 + ops.arange(2)[None, :],
                    (-1,),
                ),
                axis=1,
            )

        @tf.function(jit_compile=jit)
        def step():
            with tf.GradientTape() as tape:
                logits = head([x, y], training=True)
                loss = tf.reduce_mean(
                    keras.losses.sparse_categorical_crossentropy(
                        head.remap_labels(y), logits, from_logits=True
                    )
                )
            return tape.gradient(loss, head.head.kernel.value)

        return tf.convert_to_tensor(step()).numpy()

    rng_kernel = rng.normal(size=(dim, 2 * num_classes)).astype("float32")
    ours, plain = gradients(False), gradients(True)
    assert np.any(ours != 0.0)
    np.testing.assert_array_equal(ours, plain)
