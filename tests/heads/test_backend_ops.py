"""`backend_ops.max_last_axis`: the sub-centre max, its value and its tie-sharing gradient."""

import keras
import numpy as np
import pytest

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


def test_clip_values_passes_the_gradient_inside_the_bounds_only():
    values = np.array([[-1.0, -0.9985, -0.5, 0.0, 0.9985, 0.9995, 1.0]], "float32")
    weights = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]], "float32")
    low, high = -0.999, 0.999
    clipped = keras.ops.convert_to_numpy(backend_ops.clip_values(values, low, high))
    np.testing.assert_array_equal(clipped, np.clip(values, np.float32(low), np.float32(high)))
    gradient = _gradient_of_weighted_sum(
        lambda v: backend_ops.clip_values(v, low, high), values, weights
    )
    np.testing.assert_array_equal(gradient, [[0.0, 2.0, 3.0, 4.0, 5.0, 0.0, 0.0]])


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow's own clip gradient"
)
def test_clip_values_gradient_at_the_bounds_is_tensorflows():
    # `tf.clip_by_value` passes the whole gradient at a bound (JAX's clip: half).
    values = np.array([[-0.5, 0.5, 0.25]], "float32")
    gradient = _gradient_of_weighted_sum(
        lambda v: backend_ops.clip_values(v, -0.5, 0.5), values, np.ones_like(values)
    )
    np.testing.assert_array_equal(gradient, [[1.0, 1.0, 1.0]])


def test_reweight_hard_negatives_value_and_gradient():
    rng = np.random.default_rng(5)
    cosine = rng.uniform(-1, 1, size=(3, 6)).astype("float32")
    threshold = rng.uniform(-0.5, 0.5, size=(3, 1)).astype("float32")
    weights = rng.normal(size=(3, 6)).astype("float32")
    t, scale = np.float32(0.3), 30.0
    # Takes the scaled cosines z = s c and the threshold on their scale.
    scaled = (scale * cosine).astype("float32")
    scaled_threshold = (scale * threshold).astype("float32")
    hard = scaled > scaled_threshold

    def reweight(values):
        return backend_ops.reweight_hard_negatives(values, scaled_threshold, t, scale)

    logits = keras.ops.convert_to_numpy(reweight(keras.ops.convert_to_tensor(scaled)))
    c = scaled.astype(np.float64) / scale
    expected = np.where(hard, scale * c * (t + c), scale * c)
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6 * scale)
    # d/dz of s c (t + c) with c = z / s: t + 2c where hard, 1 elsewhere.
    gradient = _gradient_of_weighted_sum(reweight, scaled, weights)
    expected_gradient = weights * np.where(hard, t + 2.0 * c, 1.0)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-6, atol=1e-6)
