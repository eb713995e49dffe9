"""The hand-written backward pass of the sliced depthwise convolution (`conv_gradients`).

Runs on every backend (`KERAS_BACKEND=jax|torch pytest tests/models/test_conv_gradients.py`).
Outputs and gradients (input and kernel) of `sliced_convolution` must equal those of the
backend's own convolution to float32 rounding: eagerly, in TensorFlow's graph mode, under
XLA (`jit_compile=True`, `jax.jit`); the pieces must equal NumPy loops written from the
definition; and the hand-written pass must be the one that runs where it is meant to.
"""

import keras
import numpy as np
import pytest

from keras_face import models
from keras_face.models import conv2d
from keras_face.models import conv_gradients
from keras_face.models.conv2d import explicit_padding
from keras_face.models.conv2d import patches_convolution
from keras_face.models.conv2d import shifted_convolution
from keras_face.models.conv2d import sliced_convolution

BACKEND = keras.backend.backend()
# (input shape (h, w, channels), kernel, strides, padding, multiplier)
SHAPES = {
    "same_3x3": ((9, 9, 4), (3, 3), (1, 1), "same", 1),
    "same_multiplier": ((8, 7, 3), (3, 3), (1, 1), "same", 2),
    "stride2_valid_odd": ((11, 11, 4), (3, 3), (2, 2), "valid", 1),
    "stride2_valid_even": ((10, 10, 4), (3, 3), (2, 2), "valid", 1),
    "stride2_same": ((9, 8, 4), (3, 3), (2, 2), "same", 1),
    "stride3_rectangular": ((12, 10, 3), (3, 2), (3, 2), "same", 2),
    "whole_map": ((7, 7, 5), (7, 7), (1, 1), "valid", 1),
    "one_by_one_stride2": ((9, 9, 4), (1, 1), (2, 2), "valid", 1),
}
MODES = {
    "tensorflow": ("eager", "graph", "xla"),
    "jax": ("eager", "xla"),
    "torch": ("eager",),
}[BACKEND]


def make_case(shape_name, seed=0):
    """Inputs, a `(kh, kw, 1, C * M)` kernel and output weights for one shape."""
    (height, width, channels), kernel_size, strides, padding, multiplier = SHAPES[shape_name]
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, height, width, channels)).astype("float32")
    kernel = rng.normal(size=kernel_size + (1, channels * multiplier)).astype("float32")
    output_size = [
        (size + sum(explicit_padding(size, extent, stride, 1, padding)) - extent) // stride + 1
        for size, extent, stride in zip((height, width), kernel_size, strides)
    ]
    output_weights = rng.normal(size=[2] + output_size + [channels * multiplier])
    return images, kernel, output_weights.astype("float32")


def reference_convolution(inputs, kernel, strides, padding):
    """`keras.ops.depthwise_conv` with the grouped layout's kernel `(kh, kw, 1, C * M)`."""
    channels = inputs.shape[-1]
    height, width, _, filters = kernel.shape
    kernel = keras.ops.reshape(kernel, (height, width, channels, filters // channels))
    return keras.ops.depthwise_conv(inputs, kernel, strides=strides, padding=padding)


def outputs_and_gradients(function, images, kernel, output_weights, mode):
    """`function(inputs, kernel)` and the gradients of `sum(outputs * output_weights)`."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def compute(inputs, kernel, weights):
            with tf.GradientTape() as tape:
                tape.watch([inputs, kernel])
                outputs = function(inputs, kernel)
                loss = tf.reduce_sum(outputs * weights)
            return [outputs] + tape.gradient(loss, [inputs, kernel])

        if mode != "eager":
            compute = tf.function(compute, jit_compile=mode == "xla")
        results = compute(tf.constant(images), tf.constant(kernel), tf.constant(output_weights))
    elif BACKEND == "jax":
        import jax

        def loss(inputs, kernel, weights):
            outputs = function(inputs, kernel)
            return (outputs * weights).sum(), outputs

        gradient = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        if mode == "xla":
            # The weights are an argument: as constants, XLA would fold the whole backward.
            gradient = jax.jit(gradient)
        (_, outputs), (input_gradient, kernel_gradient) = gradient(images, kernel, output_weights)
        results = [outputs, input_gradient, kernel_gradient]
    else:
        import torch

        inputs = torch.tensor(images, requires_grad=True)
        kernel = torch.tensor(kernel, requires_grad=True)
        outputs = function(inputs, kernel)
        (outputs * torch.tensor(output_weights)).sum().backward()
        results = [outputs, inputs.grad, kernel.grad]
    return [keras.ops.convert_to_numpy(result) for result in results]


def assert_close(actual, expected, names=("output", "input gradient", "kernel gradient")):
    for name, got, want in zip(names, actual, expected):
        assert got.shape == want.shape, name
        scale = float(np.max(np.abs(want)))
        assert scale > 0.1, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("convolution", [shifted_convolution, patches_convolution])
@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_sliced_convolution_equals_the_backend_convolution(shape_name, convolution, mode):
    images, kernel, output_weights = make_case(shape_name)
    _, _, strides, padding, _ = SHAPES[shape_name]
    groups = images.shape[-1]

    def sliced(inputs, kernel):
        return sliced_convolution(inputs, kernel, groups, strides, padding, (1, 1), convolution)

    def reference(inputs, kernel):
        return reference_convolution(inputs, kernel, strides, padding)

    expected = outputs_and_gradients(reference, images, kernel, output_weights, "eager")
    actual = outputs_and_gradients(sliced, images, kernel, output_weights, mode)
    assert_close(actual, expected)


def numpy_gradients(images, kernel, upstream, strides, padding):
    """Input and kernel gradients of a depthwise convolution, loops over output positions."""
    _, height, width, channels = images.shape
    kernel_height, kernel_width, _, filters = kernel.shape
    multiplier = filters // channels
    pads = [
        explicit_padding(size, extent, stride, 1, padding)
        for size, extent, stride in zip((height, width), (kernel_height, kernel_width), strides)
    ]
    padded = np.pad(images, [(0, 0), pads[0], pads[1], (0, 0)]).astype("float64")
    padded_gradient = np.zeros_like(padded)
    kernel_gradient = np.zeros(kernel.shape, "float64")
    for row in range(upstream.shape[1]):
        for column in range(upstream.shape[2]):
            top, left = row * strides[0], column * strides[1]
            window = padded[:, top : top + kernel_height, left : left + kernel_width]
            # (batch, C, M) -> per input channel c, outputs c * M .. c * M + M - 1.
            gradient = upstream[:, row, column].reshape(-1, channels, multiplier)
            kernel_gradient[:, :, 0] += np.einsum("bhwc,bcm->hwcm", window, gradient).reshape(
                kernel_height, kernel_width, filters
            )
            kernel_by_channel = kernel[:, :, 0].reshape(
                kernel_height, kernel_width, channels, multiplier
            )
            padded_gradient[:, top : top + kernel_height, left : left + kernel_width] += np.einsum(
                "bcm,hwcm->bhwc", gradient, kernel_by_channel
            )
    input_gradient = padded_gradient[:, pads[0][0] : pads[0][0] + height]
    input_gradient = input_gradient[:, :, pads[1][0] : pads[1][0] + width]
    return input_gradient, kernel_gradient


@pytest.mark.parametrize("form", ["padded", "matmul", "sliced"])
@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_gradient_pieces_against_numpy_loops(shape_name, form):
    images, kernel, upstream = make_case(shape_name, seed=3)
    _, kernel_size, strides, padding, _ = SHAPES[shape_name]
    expected = numpy_gradients(images, kernel, upstream, strides, padding)
    pads = tuple(
        explicit_padding(size, extent, stride, 1, padding)
        for size, extent, stride in zip(images.shape[1:3], kernel_size, strides)
    )
    padded = keras.ops.pad(images, [(0, 0), pads[0], pads[1], (0, 0)])
    input_gradient = conv_gradients.input_gradient(
        keras.ops.convert_to_tensor(upstream),
        keras.ops.convert_to_tensor(kernel),
        images.shape[-1],
        strides,
        pads,
        images.shape[1:3],
        shifted_convolution,
    )
    kernel_gradient = conv_gradients.depthwise_kernel_gradient(
        padded, keras.ops.convert_to_tensor(upstream), kernel_size, strides, form
    )
    actual = [keras.ops.convert_to_numpy(t) for t in (input_gradient, kernel_gradient)]
    assert_close(actual, expected, names=("input gradient", "kernel gradient"))


def test_custom_gradient_replaces_autodiff_where_it_applies():
    """`custom_gradient` differentiates with `backward` on JAX and TensorFlow only."""

    def forward(inputs, kernel):
        return inputs * kernel

    def backward(inputs, kernel, upstream):
        # Deliberately not the true gradient, to see which one runs.
        return upstream * 3.0, keras.ops.sum(upstream * inputs) * 0.0 + 7.0

    images = np.ones((2, 3), "float32")
    kernel = np.array(2.0, "float32")
    function = conv_gradients.custom_gradient(forward, backward)
    outputs, input_gradient, kernel_gradient = outputs_and_gradients(
        function, images, kernel, np.ones((2, 3), "float32"), "eager"
    )
    np.testing.assert_allclose(outputs, 2.0 * images)
    if BACKEND in ("jax", "tensorflow"):
        np.testing.assert_allclose(input_gradient, 3.0 * images)
        np.testing.assert_allclose(kernel_gradient, 7.0)
    else:
        np.testing.assert_allclose(input_gradient, 2.0 * images)
        np.testing.assert_allclose(kernel_gradient, 6.0)


def test_kernel_gradient_form_by_backend():
    assert conv_gradients.kernel_gradient_form("jax") == "padded"
    assert conv_gradients.kernel_gradient_form("tensorflow") == "matmul"
    assert conv_gradients.kernel_gradient_form("torch") == "matmul"


def test_transposed_group_kernel_swaps_each_groups_channels():
    kernel = np.arange(3 * 3 * 2 * 6, dtype="float32").reshape(3, 3, 2, 6)  # G=2: 2 in, 3 out
    transposed = keras.ops.convert_to_numpy(conv_gradients.transposed_group_kernel(kernel, 2))
    assert transposed.shape == (3, 3, 3, 4)
    for group in range(2):
        for channel in range(2):
            for output in range(3):
                np.testing.assert_array_equal(
                    transposed[:, :, output, group * 2 + channel],
                    kernel[:, :, channel, group * 3 + output],
                )


class BackwardSpy:
    """Wraps `conv2d.convolution_backward`, counting the backward passes it builds."""

    def __init__(self):
        self.built = 0
        self.original = conv2d.convolution_backward

    def __call__(self, *args, **kwargs):
        self.built += 1
        return self.original(*args, **kwargs)


def xla_gradient(layer, images):
    """Gradients of `sum(layer(images) ** 2)`, compiled by XLA on a CPU."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(images)

        @tf.function(jit_compile=True)
        def compute():
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                loss = tf.reduce_sum(layer(inputs) ** 2)
            return tape.gradient(loss, [inputs, layer.kernel])

        return compute()
    import jax

    def loss(kernel, inputs):
        outputs, _ = layer.stateless_call([kernel], [], inputs)
        return (outputs**2).sum()

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(layer.kernel.value, images)


@pytest.mark.parametrize(
    "layer_name, uses_hand_written_backward",
    [("depthwise", True), ("grouped_patches", False), ("grouped_dense", False)],
)
def test_auto_uses_the_hand_written_backward_for_depthwise_layers_under_xla(
    monkeypatch, layer_name, uses_hand_written_backward
):
    if BACKEND == "torch":
        pytest.skip("no XLA compilation on the PyTorch backend")
    spy = BackwardSpy()
    monkeypatch.setattr(conv2d, "convolution_backward", spy)
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 32)).astype("float32")
    if layer_name == "depthwise":
        layer = models.DepthwiseConv2D(3, padding="same", use_bias=False)
    elif layer_name == "grouped_patches":  # 16 groups of 4 channels: "patches"
        images = np.concatenate([images, images], axis=-1)
        layer = models.Conv2D(64, 3, groups=16, padding="same", use_bias=False)
    else:  # 4 groups of 8 channels: "dense"
        layer = models.Conv2D(32, 3, groups=4, padding="same", use_bias=False)
    layer.build(images.shape)
    gradients = xla_gradient(layer, images)
    assert all(np.all(np.isfinite(keras.ops.convert_to_numpy(g))) for g in gradients)
    assert (spy.built > 0) == uses_hand_written_backward


@pytest.mark.parametrize("mode", MODES[-1:])
def test_half_precision_gradients_close_to_float32(mode):
    """float16 inputs and kernel: float16 outputs and gradients, close to float32's."""
    images, kernel, output_weights = make_case("same_3x3", seed=4)
    images = np.tile(images, (4, 3, 3, 1))  # 2 * 4 images of 27 x 27: long sums
    output_weights = np.tile(output_weights, (4, 3, 3, 1))

    def sliced(inputs, kernel):
        return sliced_convolution(inputs, kernel, 4, (1, 1), "same", (1, 1), shifted_convolution)

    expected = outputs_and_gradients(sliced, images, kernel, output_weights, mode)
    actual = outputs_and_gradients(
        sliced,
        images.astype("float16"),
        kernel.astype("float16"),
        output_weights.astype("float16"),
        mode,
    )
    for got, want in zip(actual, expected):
        assert got.dtype == np.float16
        scale = float(np.max(np.abs(want)))
        np.testing.assert_allclose(got.astype("float32"), want, rtol=0, atol=4e-3 * scale)
