"""`L2SGD`'s fused TensorFlow update: bit for bit the float32 formula, eager, graph and XLA.

On TensorFlow, `L2SGD` (without Nesterov) applies `buffer = mu * buffer + g;
w -= lr * buffer` with one fused kernel (`ResourceApplyMomentum`) instead of unfused ops
that write three temporaries of the variable's size. These tests hold it to a NumPy
float32 transcription of the same operations, exactly.
"""

import keras
import numpy as np
import pytest

from keras_face import training

LR, MOMENTUM, L2 = 0.1, 0.9, 5e-4


def numpy_float32_steps(w, gradients, lr=LR, momentum=MOMENTUM, l2=L2):
    """The update in float32 NumPy, one operation at a time (no fused multiply-add)."""
    w = w.astype(np.float32).copy()
    buffer = np.zeros_like(w)
    lr, momentum, l2 = np.float32(lr), np.float32(momentum), np.float32(l2)
    for gradient in gradients:
        g = gradient + l2 * w
        buffer = momentum * buffer + g
        w = w - lr * buffer
    return w, buffer


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_update_is_the_float32_formula_bit_for_bit(mode):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(16, 257)).astype(np.float32)
    gradients = [rng.normal(size=start.shape).astype(np.float32) for _ in range(4)]
    gradients[1][:, ::3] = 0.0  # columns without gradient still decay (v2)
    variable = keras.Variable(start, name="kernel")
    optimizer = training.L2SGD(LR, momentum=MOMENTUM, l2=L2)
    optimizer.build([variable])

    def apply(gradient):
        optimizer.apply([gradient], [variable])

    if mode != "eager":
        if keras.backend.backend() != "tensorflow":
            pytest.skip("tf.function is TensorFlow's")
        import tensorflow as tf

        apply = tf.function(apply, jit_compile=mode == "xla")
    for gradient in gradients:
        apply(keras.ops.convert_to_tensor(gradient))
    expected_w, expected_buffer = numpy_float32_steps(start, gradients)
    # XLA on the CPU contracts a multiply and an add into one fused multiply-add (the
    # unfused update compiles to the same program): equal to an ulp, not bit for bit.
    check = (
        np.testing.assert_array_equal
        if mode != "xla"
        else lambda actual, expected: np.testing.assert_allclose(
            actual, expected, rtol=1e-6, atol=1e-6
        )
    )
    check(keras.ops.convert_to_numpy(variable), expected_w)
    check(keras.ops.convert_to_numpy(optimizer.momentums[0]), expected_buffer)
    assert not np.array_equal(expected_w, start)


def test_excluded_variable_gets_no_l2_term():
    rng = np.random.default_rng(1)
    start = rng.normal(size=(5, 7)).astype(np.float32)
    gradient = rng.normal(size=start.shape).astype(np.float32)
    variable = keras.Variable(start, name="bias")
    optimizer = training.L2SGD(LR, momentum=MOMENTUM, l2=L2)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.build([variable])
    optimizer.apply([keras.ops.convert_to_tensor(gradient)], [variable])
    expected, _ = numpy_float32_steps(start, [gradient], l2=0.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected)
