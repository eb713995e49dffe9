"""`DepthwiseConv2D` against `keras.layers.DepthwiseConv2D`: outputs, gradients, weight files.

Runs on every backend (`KERAS_BACKEND=jax|torch pytest tests/models/test_depthwise_conv2d.py`).
The `"shifted"` form (what `"auto"` computes under XLA on a CPU) must give Keras' outputs
and gradients to float32 rounding, and the backbones must keep their weights.
"""

import gzip
import os
import shutil

import keras
import numpy as np
import pytest

from keras_face import models
from keras_face.models import conv2d
from keras_face.models.conv2d import explicit_padding
from keras_face.models.conv2d import shifted_convolution
from keras_face.models.depthwise_conv2d import DEPTHWISE_IMPLEMENTATIONS
from tests.models.backbone_testing import keras_round_trip

BACKEND = keras.backend.backend()
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# (input shape, kernel, strides, padding, depth_multiplier, dilation, use_bias)
SHAPES = {
    "bottleneck": ((9, 9, 6), 3, 1, "same", 1, 1, False),
    "stride2_same_odd": ((9, 8, 6), 3, 2, "same", 1, 1, False),
    "stride2_valid": ((11, 11, 6), 3, 2, "valid", 1, 1, False),
    "gdc_whole_map_bias": ((7, 7, 8), 7, 1, "valid", 1, 1, True),
    "multiplier_dilated": ((10, 10, 4), 3, 1, "same", 2, 2, True),
    "rectangular": ((8, 9, 5), (3, 2), (2, 1), "same", 3, 1, False),
}


def make_pair(shape_name, implementation, seed=0):
    """A Keras and a keras_face `DepthwiseConv2D` sharing random weights, and inputs."""
    input_shape, kernel, strides, padding, multiplier, dilation, use_bias = SHAPES[shape_name]
    arguments = dict(
        strides=strides,
        padding=padding,
        depth_multiplier=multiplier,
        dilation_rate=dilation,
        use_bias=use_bias,
    )
    reference = keras.layers.DepthwiseConv2D(kernel, **arguments)
    layer = models.DepthwiseConv2D(kernel, implementation=implementation, **arguments)
    batch_shape = (2,) + input_shape
    reference.build(batch_shape)
    layer.build(batch_shape)
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0.0, 0.5, tuple(w.shape)).astype("float32") for w in reference.weights]
    reference.set_weights(weights)
    layer.set_weights(weights)
    images = rng.normal(0.0, 1.0, batch_shape).astype("float32")
    return reference, layer, images


def output_and_gradients(layer, images, output_weights, jit_compile=False):
    """Output and gradients w.r.t. input and kernel of `sum(output * output_weights)`.

    With `jit_compile` on TensorFlow, computed by a function that XLA compiles.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(images)

        def compute():
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                outputs = layer(inputs)
                loss = tf.reduce_sum(outputs * output_weights)
            return [outputs] + tape.gradient(loss, [inputs, layer.kernel])

        if jit_compile:
            compute = tf.function(compute, jit_compile=True)
        outputs, input_gradient, kernel_gradient = compute()
    elif BACKEND == "jax":
        import jax

        def loss(kernel, inputs):
            variables = [kernel] + [v.value for v in layer.trainable_variables[1:]]
            outputs, _ = layer.stateless_call(variables, [], inputs)
            return (outputs * output_weights).sum(), outputs

        gradient = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        if jit_compile:
            gradient = jax.jit(gradient)
        (_, outputs), (kernel_gradient, input_gradient) = gradient(layer.kernel.value, images)
    else:
        import torch

        inputs = torch.tensor(images, requires_grad=True)
        layer.kernel.value.grad = None
        outputs = layer(inputs)
        (outputs * torch.tensor(output_weights)).sum().backward()
        input_gradient, kernel_gradient = inputs.grad, layer.kernel.value.grad
    return [keras.ops.convert_to_numpy(t) for t in (outputs, input_gradient, kernel_gradient)]


def assert_same_outputs_and_gradients(actual, expected):
    for name, got, want in zip(("output", "input gradient", "kernel gradient"), actual, expected):
        assert got.shape == want.shape, name
        scale = float(np.max(np.abs(want)))
        assert scale > 0.1, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("implementation", DEPTHWISE_IMPLEMENTATIONS)
@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_outputs_and_gradients_equal_keras_depthwise(shape_name, implementation):
    reference, layer, images = make_pair(shape_name, implementation)
    output_shape = tuple(reference.compute_output_shape((2,) + images.shape[1:]))
    output_weights = np.random.default_rng(1).normal(size=output_shape).astype("float32")
    expected = output_and_gradients(reference, images, output_weights)
    actual = output_and_gradients(layer, images, output_weights)
    assert actual[0].shape == output_shape
    assert_same_outputs_and_gradients(actual, expected)


@pytest.mark.parametrize("shape_name", ["bottleneck", "stride2_same_odd", "gdc_whole_map_bias"])
def test_compiled_auto_equals_keras_depthwise(shape_name):
    """Under XLA (TensorFlow's `jit_compile`, `jax.jit`): the path `"auto"` takes there."""
    if BACKEND == "torch":
        pytest.skip("no XLA compilation on the PyTorch backend")
    reference, layer, images = make_pair(shape_name, "auto")
    output_shape = tuple(reference.compute_output_shape((2,) + images.shape[1:]))
    output_weights = np.random.default_rng(2).normal(size=output_shape).astype("float32")
    expected = output_and_gradients(reference, images, output_weights)
    actual = output_and_gradients(layer, images, output_weights, jit_compile=True)
    assert_same_outputs_and_gradients(actual, expected)


def test_shifted_convolution_against_numpy_loops():
    """A grouped convolution (3 groups of 2 channels, 2 outputs each) written as loops."""
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 7, 6, 6)).astype("float32")
    kernel = rng.normal(size=(3, 3, 2, 6)).astype("float32")
    outputs = keras.ops.convert_to_numpy(
        shifted_convolution(
            keras.ops.convert_to_tensor(images),
            keras.ops.convert_to_tensor(kernel),
            groups=3,
            strides=(2, 2),
            padding="same",
            dilation_rate=(1, 1),
        )
    )
    # "same" at stride 2: 4 x 3 outputs, padding (1, 1) rows and (0, 1) columns.
    padded = np.pad(images, ((0, 0), (1, 1), (0, 1), (0, 0)))
    expected = np.zeros((2, 4, 3, 6), "float32")
    for row in range(4):
        for column in range(3):
            window = padded[:, 2 * row : 2 * row + 3, 2 * column : 2 * column + 3]
            for filter_index in range(6):
                group = filter_index // 2
                channels = window[..., 2 * group : 2 * group + 2]
                expected[:, row, column, filter_index] = np.einsum(
                    "bijc,ijc->b", channels, kernel[..., filter_index]
                )
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def test_explicit_padding_matches_keras_same():
    assert explicit_padding(56, 3, 1, 1, "same") == (1, 1)
    assert explicit_padding(56, 3, 2, 1, "same") == (0, 1)
    assert explicit_padding(57, 3, 2, 1, "same") == (1, 1)
    assert explicit_padding(10, 3, 1, 2, "same") == (2, 2)
    assert explicit_padding(7, 7, 1, 1, "valid") == (0, 0)


def test_auto_is_shifted_where_xla_compiles_for_a_cpu():
    layer = models.DepthwiseConv2D(3, padding="same")
    grouped = models.Conv2D(8, 3, groups=4, padding="same")
    many_groups = models.Conv2D(64, 3, groups=16, padding="same")
    many_groups.build((1, 8, 8, 64))
    if BACKEND == "tensorflow":
        tf = pytest.importorskip("tensorflow")
        if tf.config.list_logical_devices("GPU"):
            pytest.skip("XLA on a GPU keeps the native kernels")
        seen = []

        def record():
            seen.append(
                (
                    layer.resolved_implementation(),
                    grouped.resolved_implementation(),
                    many_groups.resolved_implementation(),
                )
            )
            return tf.constant(0)

        tf.function(record, jit_compile=True)()
        tf.function(record)()
        record()
        assert seen == [
            ("shifted", "dense", "patches"),
            ("native", "grouped", "grouped"),
            ("native", "grouped", "grouped"),
        ]
    elif BACKEND == "jax":
        jax = pytest.importorskip("jax")
        if jax.default_backend() != "cpu":
            pytest.skip("JAX on an accelerator keeps the native kernels")
        assert layer.resolved_implementation() == "shifted"
        assert grouped.resolved_implementation() == "dense"
        assert many_groups.resolved_implementation() == "patches"
    else:
        assert layer.resolved_implementation() == "native"
        assert grouped.resolved_implementation() == "native"
        assert many_groups.resolved_implementation() == "native"


def test_select_implementation_under_xla_on_a_cpu():
    assert conv2d.select_implementation(64, "tensorflow", False, xla_cpu=True) == "dense"
    # Many groups of several channels (VarGFaceNet's deep stages): patches; few: dense.
    select = conv2d.select_implementation
    assert select(40, "tensorflow", False, xla_cpu=True, group_channels=8) == "patches"
    assert select(20, "jax", False, group_channels=8) == "patches"
    assert select(10, "jax", False, group_channels=8) == "dense"
    assert select(64, "jax", False, group_channels=2) == "dense"
    assert select(40, "tensorflow", False, xla_cpu=False, group_channels=8) == "grouped"
    assert conv2d.select_implementation(64, "jax", False) == "dense"
    assert conv2d.select_implementation(64, "jax", True) == "native"
    assert conv2d.select_implementation(64, "torch", False, xla_cpu=False) == "native"
    assert conv2d.select_implementation(1, "jax", False) == "native"


def test_fixed_implementations_do_not_depend_on_the_compiler():
    assert models.DepthwiseConv2D(3, implementation="native").resolved_implementation() == (
        "native"
    )
    assert models.DepthwiseConv2D(3, implementation="shifted").resolved_implementation() == (
        "shifted"
    )
    channels_first = models.DepthwiseConv2D(
        3, implementation="shifted", data_format="channels_first"
    )
    assert channels_first.resolved_implementation() == "native"


def test_invalid_implementation_names_the_value():
    with pytest.raises(ValueError, match="implementation='fast'"):
        models.DepthwiseConv2D(3, implementation="fast")


def test_same_weights_and_parameter_count_as_keras_depthwise():
    reference, layer, _ = make_pair("gdc_whole_map_bias", "shifted")
    assert [tuple(w.shape) for w in layer.weights] == [tuple(w.shape) for w in reference.weights]
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert layer.count_params() == reference.count_params() == 7 * 7 * 8 + 8


def test_keras_round_trip(tmp_path):
    _, layer, images = make_pair("multiplier_dilated", "shifted")
    restored_layer = keras_round_trip(layer, images, str(tmp_path / "depthwise.keras"))
    assert isinstance(restored_layer, models.DepthwiseConv2D)
    assert restored_layer.implementation == "shifted"


def test_weights_saved_with_keras_depthwise_load(tmp_path):
    inputs = keras.Input((9, 9, 6))
    outputs = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(inputs)
    outputs = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=True, name="dw2")(
        outputs
    )
    keras_model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(4)
    keras_model.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in keras_model.weights]
    )
    path = str(tmp_path / "keras_depthwise.weights.h5")
    keras_model.save_weights(path)

    inputs = keras.Input((9, 9, 6))
    outputs = models.DepthwiseConv2D(3, padding="same", implementation="shifted", name="dw")(inputs)
    outputs = models.DepthwiseConv2D(
        3, depth_multiplier=2, use_bias=True, implementation="shifted", name="dw2"
    )(outputs)
    model = keras.Model(inputs, outputs)
    model.load_weights(path)
    images = rng.normal(size=(2, 9, 9, 6)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(images)),
        keras.ops.convert_to_numpy(keras_model(images)),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("family", ["mobilefacenet_mbf", "vargfacenet"])
def test_weights_saved_with_keras_layers_give_the_same_embeddings_compiled(family, tmp_path):
    """Old weight files (Keras' depthwise and grouped layers) load; XLA gives the same."""
    if BACKEND == "jax" and family == "vargfacenet":
        pytest.skip("VarGFaceNet's first JAX build compiles for minutes (see test_backends.py)")
    saved = np.load(os.path.join(FIXTURES, f"{family}_io.npz"))
    path = str(tmp_path / f"{family}.weights.h5")
    with gzip.open(os.path.join(FIXTURES, f"{family}.weights.h5.gz"), "rb") as source:
        with open(path, "wb") as target:
            shutil.copyfileobj(source, target)
    backbone = models.get(family, input_shape=saved["images"].shape[1:], embedding_size=16)
    depthwise = [layer for layer in backbone.layers if isinstance(layer, models.DepthwiseConv2D)]
    convolutions = [layer for layer in backbone.layers if isinstance(layer, models.Conv2D)]
    grouped = [layer for layer in convolutions if layer.groups > 1]
    pointwise = [layer for layer in convolutions if layer._is_pointwise()]
    # Every convolution of the backbones is keras_face's (same weights as Keras').
    assert not [
        layer
        for layer in backbone.layers
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, models.Conv2D)
    ]
    # mbf: 15 bottlenecks' 3x3 depthwise layers, the GDC output, the 64-group stem conv;
    # VarGFaceNet: grouped convolutions only. Both: 1 x 1 layers (matrix products under XLA).
    if family == "mobilefacenet_mbf":
        assert (len(depthwise), len(grouped)) == (16, 1)
    else:
        assert not depthwise and len(grouped) > 20
    assert len(pointwise) > 20
    backbone.load_weights(path)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        forward = tf.function(lambda x: backbone(x, training=False), jit_compile=True)
    elif BACKEND == "jax":
        import jax

        trainable = [v.value for v in backbone.trainable_variables]
        non_trainable = [v.value for v in backbone.non_trainable_variables]

        @jax.jit
        def forward(images):
            return backbone.stateless_call(trainable, non_trainable, images, training=False)[0]
    else:

        def forward(images):
            return backbone(images, training=False)

    embeddings = keras.ops.convert_to_numpy(forward(saved["images"]))
    scale = float(np.max(np.abs(saved["outputs"])))
    assert scale > 0.01
    np.testing.assert_allclose(embeddings, saved["outputs"], rtol=1e-4, atol=1e-4 * scale)
