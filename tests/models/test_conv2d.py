"""`Conv2D` against `keras.layers.Conv2D(groups=...)`: outputs, gradients, weight files.

Runs on every backend (`KERAS_BACKEND=jax|torch pytest tests/models/test_conv2d.py`).
The weight files in `tests/models/fixtures/` were written with `Conv2D` grouped layers,
before `Conv2D` existed (`fixtures/make_legacy_fixtures.py`).
"""

import gzip
import os
import shutil

import keras
import numpy as np
import pytest

from keras_face import models
from keras_face.models import conv2d
from keras_face.models.conv2d import IMPLEMENTATIONS
from keras_face.models.conv2d import select_implementation
from tests.models.backbone_testing import keras_round_trip

BACKEND = keras.backend.backend()
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# (input shape, filters, kernel, groups, strides, padding, use_bias, dilation)
SHAPES = {
    "mbf": ((9, 9, 16), 16, 3, 8, 1, "same", False, 1),
    "vargfacenet_stride2": ((9, 9, 16), 32, 3, 2, 2, "valid", False, 1),
    "whole_map_bias": ((5, 4, 32), 32, (5, 4), 4, 1, "valid", True, 1),
    "multiplier_dilated": ((10, 10, 12), 36, 3, 3, 1, "same", False, 2),
}


def make_pair(shape_name, implementation, seed=0):
    """A `Conv2D` and a `Conv2D` of one shape sharing random weights, and inputs."""
    input_shape, filters, kernel, groups, strides, padding, use_bias, dilation = SHAPES[shape_name]
    arguments = dict(
        strides=strides, padding=padding, use_bias=use_bias, dilation_rate=dilation, groups=groups
    )
    reference = keras.layers.Conv2D(filters, kernel, **arguments)
    layer = models.Conv2D(filters, kernel, implementation=implementation, **arguments)
    images = share_random_weights(reference, layer, (2,) + input_shape, np.random.default_rng(seed))
    return reference, layer, images


def share_random_weights(reference, layer, batch_shape, rng):
    """Build both layers, give them the same random weights; random inputs of that shape."""
    reference.build(batch_shape)
    layer.build(batch_shape)
    weights = [rng.normal(0.0, 0.5, tuple(w.shape)).astype("float32") for w in reference.weights]
    reference.set_weights(weights)
    layer.set_weights(weights)
    return rng.normal(0.0, 1.0, batch_shape).astype("float32")


def output_and_gradients(layer, images, output_weights):
    """Output, d(loss)/d(input) and d(loss)/d(kernel) of `sum(output * output_weights)`."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(images)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs)
            loss = tf.reduce_sum(outputs * output_weights)
        input_gradient, kernel_gradient = tape.gradient(loss, [inputs, layer.kernel])
    elif BACKEND == "jax":
        import jax

        def loss(kernel, inputs):
            variables = [kernel] + [v.value for v in layer.trainable_variables[1:]]
            outputs, _ = layer.stateless_call(variables, [], inputs)
            return (outputs * output_weights).sum(), outputs

        (_, outputs), (kernel_gradient, input_gradient) = jax.value_and_grad(
            loss, argnums=(0, 1), has_aux=True
        )(layer.kernel.value, images)
    else:
        import torch

        inputs = torch.tensor(images, requires_grad=True)
        layer.kernel.value.grad = None
        outputs = layer(inputs)
        (outputs * torch.tensor(output_weights)).sum().backward()
        input_gradient, kernel_gradient = inputs.grad, layer.kernel.value.grad
    return [keras.ops.convert_to_numpy(t) for t in (outputs, input_gradient, kernel_gradient)]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_outputs_and_gradients_equal_conv2d(shape_name, implementation):
    reference, layer, images = make_pair(shape_name, implementation)
    output_shape = tuple(reference.compute_output_shape((2,) + images.shape[1:]))
    output_weights = np.random.default_rng(1).normal(size=output_shape).astype("float32")
    expected = output_and_gradients(reference, images, output_weights)
    actual = output_and_gradients(layer, images, output_weights)
    assert actual[0].shape == output_shape
    for name, got, want in zip(("output", "input gradient", "kernel gradient"), actual, expected):
        scale = float(np.max(np.abs(want)))
        assert scale > 0.1, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


def test_same_weights_and_parameter_count_as_conv2d():
    reference, layer, _ = make_pair("whole_map_bias", "depthwise")
    assert [tuple(w.shape) for w in layer.weights] == [tuple(w.shape) for w in reference.weights]
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert layer.count_params() == reference.count_params() == 5 * 4 * 8 * 32 + 32
    assert models.count_parameters(keras.Sequential([keras.Input((5, 4, 32)), layer])) == 5152


def test_select_implementation_by_backend_device_and_groups(monkeypatch):
    # TensorFlow's own grouped kernel wherever it has one (TF >= 2.16, CPU and GPU).
    assert select_implementation(64, "tensorflow", False) == "grouped"
    assert select_implementation(64, "tensorflow", True) == "grouped"
    assert select_implementation(64, "jax", False) == "dense"
    assert select_implementation(64, "torch", False) == "native"
    assert select_implementation(1, "tensorflow", False) == "native"
    # A TensorFlow build without a grouped kernel falls back to the measured rule.
    monkeypatch.setattr(conv2d, "tensorflow_has_grouped_convolution", lambda: False)
    assert select_implementation(64, "tensorflow", False) == "depthwise"
    assert select_implementation(40, "tensorflow", False) == "depthwise"
    assert select_implementation(20, "tensorflow", False) == "dense"
    assert select_implementation(64, "tensorflow", True) == "native"


def test_tensorflow_has_a_grouped_kernel():
    tf = pytest.importorskip("tensorflow")
    # First asked while a function is traced (as export does): still probed eagerly.
    conv2d.tensorflow_has_grouped_convolution.cache_clear()
    answers = []
    tf.function(lambda: answers.append(conv2d.tensorflow_has_grouped_convolution()))()
    assert answers == [True]
    assert conv2d.tensorflow_has_grouped_convolution()


def test_grouped_is_native_on_other_backends():
    layer = models.Conv2D(8, 3, groups=2, implementation="grouped")
    expected = "grouped" if BACKEND == "tensorflow" else "native"
    assert layer.resolved_implementation() == expected


def test_inference_picks_the_fastest_forward_pass_only_under_xla_on_a_cpu():
    select = conv2d.select_implementation
    # Under XLA on a CPU: shifted slices for the forward pass alone of groups of up to 8
    # channels (mbf, VarGFaceNet); more channels keep the training choice.
    for groups, channels, expected in (
        (64, 2, "shifted"),
        (64, None, "shifted"),
        (10, 8, "shifted"),
        (40, 8, "shifted"),
        (10, 16, "dense"),
        (40, 16, "patches"),
    ):
        assert select(groups, "jax", False, group_channels=channels, inference=True) == expected
        assert (
            select(
                groups, "tensorflow", False, xla_cpu=True, group_channels=channels, inference=True
            )
            == expected
        )
    assert select(64, "jax", False, group_channels=2) == "dense"
    assert select(40, "jax", False, group_channels=8) == "patches"
    # Kernels larger than 3 x 3 (VarGFaceNet's last 7 x 7 layer) keep the training choice.
    assert select(128, "jax", False, group_channels=8, inference=True, kernel_positions=49) == (
        "patches"
    )
    assert select(64, "jax", False, group_channels=2, inference=True, kernel_positions=9) == (
        "shifted"
    )
    # Elsewhere inference keeps the training choice.
    assert select(40, "tensorflow", False, xla_cpu=False, group_channels=8, inference=True) == (
        "grouped"
    )
    assert select(64, "torch", False, xla_cpu=False, inference=True) == "native"
    assert select(64, "jax", True, inference=True) == "native"
    assert select(1, "jax", False, inference=True) == "native"


@pytest.mark.parametrize("shape_name", sorted(SHAPES) + ["same_stride2"])
def test_shifted_windows_reach_the_padding(shape_name):
    # A window inside the input lets XLA fuse the input's producer into every product
    # (recomputed per output channel); widened windows all reach the zeros added, and
    # their first `out_width` columns are the plain windows.
    shape = dict(SHAPES, same_stride2=((9, 8, 4), 4, 3, 2, 2, "same", False, 1))[shape_name]
    input_shape, _, kernel, _, strides, padding, _, dilation = shape
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    images = np.ones((2,) + input_shape, "float32")
    arguments = (kernel, (strides, strides), padding, (dilation, dilation))
    plain, size = conv2d._windows(images, *arguments)
    widened, widened_size = conv2d._windows(images, *arguments, reach_padding=True)
    assert widened_size == size
    assert [position for position, _ in widened] == [position for position, _ in plain]
    widened_count = 0
    for (_, window), (_, wide) in zip(plain, widened):
        window, wide = keras.ops.convert_to_numpy(window), keras.ops.convert_to_numpy(wide)
        assert window.shape[1:3] == tuple(size)
        np.testing.assert_array_equal(wide[:, :, : size[1]], window)
        assert wide.min() == 0.0
        # Only the windows that missed the padding (all ones) are widened.
        assert (wide.shape[2] > size[1]) == (window.min() == 1.0)
        widened_count += wide.shape[2] > size[1]
    assert widened_count >= (len(plain) if padding == "valid" else 1)


def compiled_call(layer, images, training):
    """`layer(images, training=training)` compiled as a backbone's forward pass would be."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(images)
        return tf.function(lambda: layer(inputs, training=training), jit_compile=True)().numpy()
    if BACKEND == "jax":
        import jax

        def call(variables, inputs):
            outputs, _ = layer.stateless_call(variables, [], inputs, training=training)
            return outputs

        variables = [v.value for v in layer.trainable_variables]
        return np.asarray(jax.jit(call)(variables, images))
    return keras.ops.convert_to_numpy(layer(images, training=training))


@pytest.mark.parametrize("training", [False, True, None])
def test_training_flag_chooses_the_computation_not_the_result(monkeypatch, training):
    """`training=False` computes with the fastest forward pass; same outputs, bias, activation."""
    input_shape, filters, kernel, groups = (9, 9, 16), 32, 3, 8
    arguments = dict(padding="same", use_bias=True, groups=groups, activation="relu")
    reference = keras.layers.Conv2D(filters, kernel, **arguments)
    layer = models.Conv2D(filters, kernel, **arguments)
    images = share_random_weights(reference, layer, (2,) + input_shape, np.random.default_rng(3))
    calls = []
    shifted = conv2d.shifted_convolution
    monkeypatch.setattr(
        conv2d, "shifted_convolution", lambda *a, **k: calls.append(1) or shifted(*a, **k)
    )
    outputs = compiled_call(layer, images, training)
    expected = keras.ops.convert_to_numpy(reference(images))
    assert float(np.mean(expected > 0)) > 0.3  # the activation is exercised
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    xla_cpu = BACKEND in ("tensorflow", "jax") and not conv2d._has_accelerator()
    # Only inference under XLA on a CPU takes the shifted slices (otherwise dense here).
    assert bool(calls) == (xla_cpu and training is False)


@pytest.mark.parametrize(
    "strides, padding, use_bias", [(1, "same", False), (2, "valid", True), (2, "same", False)]
)
def test_pointwise_equals_conv2d(strides, padding, use_bias):
    """A 1 x 1 convolution as a matrix product: outputs and gradients of Keras' layer."""
    arguments = dict(strides=strides, padding=padding, use_bias=use_bias)
    reference = keras.layers.Conv2D(12, 1, **arguments)
    layer = models.Conv2D(12, 1, implementation="pointwise", **arguments)
    batch_shape = (2, 7, 6, 5)
    rng = np.random.default_rng(5)
    images = share_random_weights(reference, layer, batch_shape, rng)
    output_shape = tuple(reference.compute_output_shape(batch_shape))
    output_weights = rng.normal(size=output_shape).astype("float32")
    expected = output_and_gradients(reference, images, output_weights)
    actual = output_and_gradients(layer, images, output_weights)
    assert (
        actual[0].shape
        == output_shape
        == (2, 4 if strides == 2 else 7, 3 if strides == 2 else 6, 12)
    )
    for name, got, want in zip(("output", "input gradient", "kernel gradient"), actual, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_auto_is_pointwise_for_1x1_only_under_xla_on_a_cpu(monkeypatch):
    pointwise = models.Conv2D(8, 1)
    strided = models.Conv2D(8, 1, strides=2)
    spatial = models.Conv2D(8, 3)
    monkeypatch.setattr(conv2d, "compiling_with_xla_for_cpu", lambda: True)
    assert [layer.resolved_implementation() for layer in (pointwise, strided, spatial)] == [
        "pointwise",
        "pointwise",
        "native",
    ]
    monkeypatch.setattr(conv2d, "compiling_with_xla_for_cpu", lambda: False)
    assert pointwise.resolved_implementation() == "native"
    assert models.Conv2D(8, 1, implementation="pointwise").resolved_implementation() == (
        "pointwise"
    )


def test_pointwise_refuses_other_kernels():
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3\), groups=1"):
        models.Conv2D(8, 3, implementation="pointwise")
    with pytest.raises(ValueError, match="groups=2"):
        models.Conv2D(8, 1, groups=2, implementation="pointwise")


def test_invalid_implementation_names_the_value():
    with pytest.raises(ValueError, match="implementation='fast'"):
        models.Conv2D(8, 3, groups=2, implementation="fast")


def test_keras_round_trip(tmp_path):
    _, layer, images = make_pair("mbf", "depthwise")
    restored_layer = keras_round_trip(layer, images, str(tmp_path / "grouped.keras"))
    assert isinstance(restored_layer, models.Conv2D)
    assert restored_layer.implementation == "depthwise"


def legacy_layers_model(layer_class):
    """The architecture of `fixtures/grouped_layers.*`, built with `layer_class`."""
    inputs = keras.Input((8, 8, 16), name="image")
    x = layer_class(16, 3, padding="same", groups=8, use_bias=False, name="mbf_like")(inputs)
    x = keras.layers.ZeroPadding2D(1, name="pad")(x)
    x = layer_class(32, 3, strides=2, groups=2, use_bias=False, name="varg_like")(x)
    x = layer_class(32, 4, groups=4, use_bias=True, name="whole_map")(x)
    return keras.Model(inputs, x, name="grouped_layers")


@pytest.mark.parametrize("file_name", ["grouped_layers.weights.h5", "grouped_layers.keras"])
def test_weight_files_saved_with_conv2d_load(file_name):
    saved = np.load(os.path.join(FIXTURES, "grouped_layers_io.npz"))
    model = legacy_layers_model(models.Conv2D)
    model.load_weights(os.path.join(FIXTURES, file_name))
    outputs = keras.ops.convert_to_numpy(model(saved["images"]))
    scale = float(np.max(np.abs(saved["outputs"])))
    np.testing.assert_allclose(outputs, saved["outputs"], rtol=1e-5, atol=1e-5 * scale)


def test_keras_file_saved_with_conv2d_loads():
    saved = np.load(os.path.join(FIXTURES, "grouped_layers_io.npz"))
    model = keras.saving.load_model(os.path.join(FIXTURES, "grouped_layers.keras"))
    outputs = keras.ops.convert_to_numpy(model(saved["images"]))
    np.testing.assert_allclose(outputs, saved["outputs"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["mobilefacenet_mbf", "vargfacenet"])
def test_backbone_weights_saved_before_conv2d_load(family, tmp_path):
    if BACKEND == "jax" and family == "vargfacenet":
        pytest.skip("VarGFaceNet's first JAX build compiles for minutes (see test_backends.py)")
    saved = np.load(os.path.join(FIXTURES, f"{family}_io.npz"))
    path = str(tmp_path / f"{family}.weights.h5")
    with gzip.open(os.path.join(FIXTURES, f"{family}.weights.h5.gz"), "rb") as source:
        with open(path, "wb") as target:
            shutil.copyfileobj(source, target)
    backbone = models.get(family, input_shape=saved["images"].shape[1:], embedding_size=16)
    assert any(isinstance(layer, models.Conv2D) for layer in backbone.layers)
    backbone.load_weights(path)
    embeddings = keras.ops.convert_to_numpy(backbone(saved["images"], training=False))
    scale = float(np.max(np.abs(saved["outputs"])))
    assert scale > 0.01
    np.testing.assert_allclose(embeddings, saved["outputs"], rtol=1e-4, atol=1e-4 * scale)
