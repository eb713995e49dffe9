"""`backend_ops.max_last_axis`: the sub-centre max, its value and its tie-sharing gradient."""

import keras
import numpy as np

from keras_face.heads import backend_ops


def _gradient_of_weighted_sum(function, values, weights):
    """Gradient of `sum(weights * function(values))` with respect to `values`."""
    backend = keras.backend.backend()
    # Each backend's own autodiff; imported here because only one backend is active.
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.constant(values)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            total = tf.reduce_sum(function(tensor) * weights)
        return tape.gradient(total, tensor).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: jax.numpy.sum(function(v) * weights))(values))
    import torch

    tensor = torch.tensor(values, requires_grad=True)
    (function(tensor) * torch.tensor(weights)).sum().backward()
    return tensor.grad.numpy()


def test_max_last_axis_shares_the_gradient_of_exact_ties():
    rng = np.random.default_rng(3)
    values = rng.uniform(-1, 1, size=(4, 5, 3)).astype("float32")
    values[0, 0] = [0.25, 0.25, -0.5]  # two-way tie
    values[0, 1] = [0.0, 0.0, 0.0]  # three-way tie (a zero embedding)
    values[1, 2] = [-1.0, 0.5, 0.5]
    values[2, 3] = [1.0, -1.0, 1.0]
    weights = rng.normal(size=(4, 5)).astype("float32")

    largest = keras.ops.convert_to_numpy(backend_ops.max_last_axis(values))
    np.testing.assert_array_equal(largest, values.max(axis=-1))

    gradient = _gradient_of_weighted_sum(backend_ops.max_last_axis, values, weights)
    selected = values == values.max(axis=-1, keepdims=True)
    expected = selected * (weights / selected.sum(axis=-1))[..., None]
    np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=0)
    np.testing.assert_allclose(gradient[0, 0], [weights[0, 0] / 2] * 2 + [0.0], rtol=1e-6)
    np.testing.assert_allclose(gradient[0, 1], [weights[0, 1] / 3] * 3, rtol=1e-6)


def test_max_last_axis_of_an_empty_batch_is_empty():
    values = np.zeros((0, 4, 3), "float32")
    assert tuple(keras.ops.shape(backend_ops.max_last_axis(values))) == (0, 4)
