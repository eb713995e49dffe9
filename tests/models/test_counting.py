"""count_parameters and count_flops on small models whose sizes are worked out by hand."""

import keras
import pytest

from keras_face import models


def _conv_model():
    inputs = keras.Input((10, 10, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", name="plain")(inputs)  # 10x10x8
    x = keras.layers.Conv2D(8, 3, strides=2, groups=2, use_bias=False, name="grouped")(x)  # 4x4x8
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="depthwise")(
        x
    )  # 4x4x16
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.PReLU(shared_axes=[1, 2], name="prelu")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, name="dense")(x)
    return keras.Model(inputs, outputs)


# Per layer: output positions x output channels x (kernel area x input channels per group).
PLAIN_MACS = 10 * 10 * 8 * (3 * 3 * 4)
GROUPED_MACS = 4 * 4 * 8 * (3 * 3 * 4)
DEPTHWISE_MACS = 4 * 4 * 16 * (3 * 3)
DENSE_MACS = (4 * 4 * 16) * 5


def test_count_flops_sums_conv_depthwise_grouped_and_dense_macs():
    model = _conv_model()
    expected = PLAIN_MACS + GROUPED_MACS + DEPTHWISE_MACS + DENSE_MACS
    assert models.count_flops(model) == expected
    assert models.count_flops(model, (10, 10, 4)) == expected


def test_count_flops_at_another_input_shape_rebuilds_the_graph():
    inputs = keras.Input((10, 10, 4))
    outputs = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    model = keras.Model(inputs, outputs)
    assert models.count_flops(model, (20, 30, 4)) == 20 * 30 * 8 * 3 * 3 * 4
    # The model itself is left as it was.
    assert models.count_flops(model) == 10 * 10 * 8 * 3 * 3 * 4


def test_count_flops_recurses_into_nested_models():
    inner = _conv_model()
    inputs = keras.Input((10, 10, 4))
    outputs = keras.layers.Dense(3)(inner(inputs))
    outer = keras.Model(inputs, outputs)
    assert models.count_flops(outer) == models.count_flops(inner) + 5 * 3


def test_count_flops_rejects_unbuilt_models():
    with pytest.raises(ValueError, match="Received: model="):
        models.count_flops(keras.Sequential([keras.layers.Dense(3)]))


def test_count_parameters_counts_like_pytorch():
    model = _conv_model()
    expected = (
        (3 * 3 * 4 * 8 + 8)  # plain conv with bias
        + 3 * 3 * 4 * 8  # grouped conv: 2 groups of 4 -> 4 channels, no bias
        + (3 * 3 * 8 * 2 + 16)  # depthwise, multiplier 2, bias
        + 2 * 16  # BN scale and offset; its moving statistics are buffers
        + 16  # PReLU, one slope per channel
        + (256 * 5 + 5)  # dense
    )
    assert models.count_parameters(model) == expected
    # Frozen weights are still parameters (PyTorch counts requires_grad=False ones).
    model.trainable = False
    assert models.count_parameters(model) == expected


def test_count_parameters_counts_a_frozen_scale_but_not_moving_statistics():
    inputs = keras.Input((6,))
    outputs = models.FrozenScaleBatchNormalization()(inputs)
    model = keras.Model(inputs, outputs)
    assert len(model.weights) == 4
    assert len(model.trainable_weights) == 1
    assert models.count_parameters(model) == 6 + 6


def test_count_parameters_of_a_nested_model_excludes_inner_statistics():
    inner = _conv_model()
    inputs = keras.Input((10, 10, 4))
    outer = keras.Model(inputs, inner(inputs))
    assert models.count_parameters(outer) == models.count_parameters(inner)
