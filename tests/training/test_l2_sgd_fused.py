"""`L2SGD`'s fused TensorFlow update: the float32 formula to 2 ulp, eager, graph and XLA.

On TensorFlow, `L2SGD` (without Nesterov) applies `buffer = mu * buffer + (g + l2 * w);
w -= lr * buffer` to a large variable (`fused_update_min_size` entries and more) as one
XLA-compiled pass writing both variables in place, instead of unfused ops that write
temporaries of the variable's size; smaller ones take TensorFlow's momentum kernel (bit for
bit the formula outside XLA). These tests hold it to a NumPy
float32 transcription of the same operations: XLA contracts multiply-adds into fused
multiply-adds (one rounding instead of two), so equal within 2 ulp, not bit for bit.
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


def assert_equal_to_two_ulp(actual, expected):
    """`actual == expected` within 2 ulp of the largest magnitude of `expected`.

    A fused multiply-add rounds once where the formula rounds twice: a difference of at
    most an ulp of the operands per operation. Where an update nearly cancels the weight,
    the result is far smaller than its operands, so the ulp is that of the array's scale.
    """
    tolerance = 2 * np.spacing(np.max(np.abs(expected)).astype(np.float32))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("path", ["xla_fused", "small"])
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_update_is_the_float32_formula_to_two_ulp(mode, path):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(16, 257)).astype(np.float32)
    gradients = [rng.normal(size=start.shape).astype(np.float32) for _ in range(4)]
    gradients[1][:, ::3] = 0.0  # columns without gradient still decay (v2)
    variable = keras.Variable(start, name="kernel")
    optimizer = training.L2SGD(LR, momentum=MOMENTUM, l2=L2)
    if path == "xla_fused":
        # The XLA-compiled update, taken by default from 2^22 entries on.
        optimizer.fused_update_min_size = 1
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
    # XLA on the CPU contracts a multiply and an add into one fused multiply-add, in every
    # mode (the update is an XLA-compiled function): an ulp or two, not bit for bit.
    actual_w = keras.ops.convert_to_numpy(variable)
    actual_buffer = keras.ops.convert_to_numpy(optimizer.momentums[0])
    assert_equal_to_two_ulp(actual_w, expected_w)
    assert_equal_to_two_ulp(actual_buffer, expected_buffer)
    assert not np.array_equal(expected_w, start)
    if path == "small" and mode != "xla":
        # Below the size threshold: TensorFlow's momentum kernel, the formula bit for bit.
        np.testing.assert_array_equal(actual_w, expected_w)
        np.testing.assert_array_equal(actual_buffer, expected_buffer)


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
    assert_equal_to_two_ulp(keras.ops.convert_to_numpy(variable), expected)
    # With the L2 term the same step moves the variable further (by lr * l2 * w).
    decayed, _ = numpy_float32_steps(start, [gradient])
    assert np.max(np.abs(decayed - expected)) > 1e-6
