"""`L2SGD` with a row-sparse gradient (`tf.IndexedSlices`): the dense update, not densified.

A Partial FC kernel in the `(C, D)` layout (`keras_face.heads.PartialFC`'s default) gets
the gradient of a row gather: the rows of the sampled classes. `L2SGD` applies it as the
update of the dense gradient that is zero elsewhere (arcface_torch's v2: every row decays
and carries momentum), without building that dense gradient. These tests hold it to the
NumPy float32 transcription of the dense update: bit for bit below the fused-update size
outside XLA, within 2 ulp in the XLA-compiled passes.
"""

import keras
import numpy as np
import pytest

from keras_face import training
from tests.training.test_l2_sgd_fused import L2
from tests.training.test_l2_sgd_fused import LR
from tests.training.test_l2_sgd_fused import MOMENTUM
from tests.training.test_l2_sgd_fused import assert_equal_to_two_ulp
from tests.training.test_l2_sgd_fused import numpy_float32_steps

if keras.backend.backend() != "tensorflow":
    pytest.skip("tf.IndexedSlices gradients are TensorFlow's", allow_module_level=True)

import tensorflow as tf  # noqa: E402

ROWS, DIM = 40, 9


def sparse_steps(rng):
    """Three row-sparse gradients: unique rows, duplicated rows, and rows repeated."""
    steps = []
    for indices in ([3, 7, 8, 20, 39], [5, 5, 11, 0, 5, 39], [1, 2, 2, 2]):
        values = rng.normal(size=(len(indices), DIM)).astype(np.float32)
        steps.append((np.array(indices, np.int32), values))
    return steps


def dense(indices, values):
    gradient = np.zeros((ROWS, DIM), np.float32)
    np.add.at(gradient, indices, values)
    return gradient


def run(optimizer, variable, steps, mode):
    def apply(indices, values):
        gradient = tf.IndexedSlices(values, indices, dense_shape=tf.constant([ROWS, DIM]))
        optimizer.apply([gradient], [variable])

    if mode != "eager":
        apply = tf.function(apply, jit_compile=mode == "xla")
    for indices, values in steps:
        apply(tf.constant(indices), tf.constant(values))


@pytest.mark.parametrize("path", ["xla_fused", "small"])
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_row_sparse_gradient_is_the_dense_update(mode, path):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    steps = sparse_steps(rng)
    variable = keras.Variable(start, name="kernel")
    optimizer = training.L2SGD(LR, momentum=MOMENTUM, l2=L2)
    if path == "xla_fused":
        optimizer.fused_update_min_size = 1
    optimizer.build([variable])
    run(optimizer, variable, steps, mode)
    expected_w, expected_buffer = numpy_float32_steps(start, [dense(*s) for s in steps])
    actual_w = keras.ops.convert_to_numpy(variable)
    actual_buffer = keras.ops.convert_to_numpy(optimizer.momentums[0])
    assert_equal_to_two_ulp(actual_w, expected_w)
    assert_equal_to_two_ulp(actual_buffer, expected_buffer)
    if path == "small" and mode != "xla":
        np.testing.assert_array_equal(actual_w, expected_w)
        np.testing.assert_array_equal(actual_buffer, expected_buffer)
    # Rows never in a gradient moved too (decay and momentum of every row, v2).
    never = np.setdiff1d(np.arange(ROWS), np.concatenate([s[0] for s in steps]))
    assert len(never) > 0 and np.all(actual_w[never] != start[never])


@pytest.mark.parametrize("kwargs", [{"nesterov": True}, {"momentum": 0.0}, {"l2": 0.0}])
def test_other_settings_equal_the_densified_gradient(kwargs):
    # Nesterov and plain SGD densify the gradient; l2 = 0 keeps the row-sparse path.
    rng = np.random.default_rng(2)
    start = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    steps = sparse_steps(rng)
    sparse_variable = keras.Variable(start, name="kernel")
    dense_variable = keras.Variable(start, name="kernel")
    sparse_optimizer = training.L2SGD(**{"learning_rate": LR, **kwargs})
    dense_optimizer = training.L2SGD(**{"learning_rate": LR, **kwargs})
    sparse_optimizer.build([sparse_variable])
    dense_optimizer.build([dense_variable])
    run(sparse_optimizer, sparse_variable, steps, "graph")
    for step in steps:
        dense_optimizer.apply([tf.constant(dense(*step))], [dense_variable])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(sparse_variable),
        keras.ops.convert_to_numpy(dense_variable),
        rtol=0,
        atol=2 * np.spacing(np.float32(np.max(np.abs(start)))),
    )
    assert not np.array_equal(keras.ops.convert_to_numpy(sparse_variable), start)
