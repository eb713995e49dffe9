import keras
import numpy as np
import pytest
from keras import ops

from keras_face.layers import GradientReversal
from tests.layer_testing import run_layer_test
from tests.uncertainty.backend_gradients import gradient


def test_forward_is_the_identity_and_serializes():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    layer = run_layer_test(
        GradientReversal,
        {"scale": 0.5},
        [x],
        expected_output_shape=(4, 6),
        run_fit=False,
        mixed_output_dtype="compute",
    )
    # (1 + 0.5) x rounds once: the forward value is x within one ulp.
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), x, rtol=1.2e-7, atol=0)
    np.testing.assert_array_equal(ops.convert_to_numpy(GradientReversal(1.0)(x)), x)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.0])
def test_gradient_is_minus_scale_times_upstream(scale):
    x = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    upstream = np.arange(15, dtype=np.float32).reshape(3, 5) - 7.0
    layer = GradientReversal(scale)
    grad = gradient(lambda t: layer(t) * ops.convert_to_tensor(upstream), x)
    np.testing.assert_allclose(grad, -scale * upstream, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [-0.1, float("nan"), "1", True])
def test_bad_scale_is_named(scale):
    with pytest.raises(ValueError, match="scale"):
        GradientReversal(scale)


def test_gradient_reaches_the_layers_below_reversed():
    # A Dense before the reversal layer gets the negated gradient of the loss above it.
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2, kernel_initializer="ones", use_bias=False)
    model = keras.Model(inputs, GradientReversal(2.0)(dense(inputs)))
    x = np.ones((1, 3), np.float32)
    grad = gradient(lambda t: ops.sum(model(t)), x)
    # d/dx sum(-2 * W^T x) = -2 * W 1 = -4 for W = ones(3, 2).
    np.testing.assert_allclose(grad, -4.0 * np.ones((1, 3)), rtol=1e-6)
