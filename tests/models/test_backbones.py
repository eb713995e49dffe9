"""Behaviour every backbone family shares: saving, gradients, training, mixed precision."""

import os

import keras
import numpy as np
import pytest

from keras_face import models
from keras_face.heads import ArcFace
from tests.models.backbone_testing import SMALL_BACKBONES
from tests.models.backbone_testing import SMALL_EMBEDDING_SIZE
from tests.models.backbone_testing import SMALL_INPUT_SHAPE
from tests.models.backbone_testing import randomize_weights
from tests.models.backbone_testing import synthetic_identities

FAMILIES = sorted(SMALL_BACKBONES)
# VarGFaceNet (321 layers, 38 grouped convolutions) is several times slower to build,
# save and run eagerly on CPU than the others; where its case adds nothing specific to
# it, it runs with the slow tests.
FAMILIES_VARGFACENET_SLOW = [
    pytest.param(family, marks=[pytest.mark.slow] if family == "vargfacenet" else [])
    for family in FAMILIES
]


def _cosine_similarity(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def _training_model(backbone, num_classes):
    images = keras.Input(SMALL_INPUT_SHAPE, name="images")
    labels = keras.Input((), dtype="int32", name="labels")
    logits = ArcFace(num_classes, scale=16.0, margin=0.2)([backbone(images), labels])
    return keras.Model([images, labels], logits)


@pytest.mark.parametrize("family", FAMILIES_VARGFACENET_SLOW)
def test_keras_round_trip_gives_equal_outputs(family, tmp_path):
    options = {"se": True} if family == "iresnet18" else {}
    backbone = SMALL_BACKBONES[family](**options)
    # Non-trivial BN statistics, scales and slopes, so that every weight matters.
    randomize_weights(backbone)
    images, _ = synthetic_identities(2, 2)
    path = os.path.join(tmp_path, f"{family}.keras")
    backbone.save(path)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in backbone.layers]
    expected = keras.ops.convert_to_numpy(backbone(images, training=False))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(images, training=False)), expected
    )
    assert models.count_parameters(loaded) == models.count_parameters(backbone)


def _first_conv(backbone):
    return backbone.get_layer("head_conv" if "vargfacenet" in backbone.name else "stem_conv")


# TensorFlow and XLA differentiate grouped convolutions very slowly on CPU (seconds per
# step and minutes of graph set-up for VarGFaceNet's 38).
@pytest.mark.parametrize("family", FAMILIES_VARGFACENET_SLOW)
def test_short_fit_with_arc_face_lowers_the_loss_and_trains_the_first_conv(family):
    keras.utils.set_random_seed(0)
    backbone = SMALL_BACKBONES[family]()
    first_conv_before = keras.ops.convert_to_numpy(_first_conv(backbone).kernel).copy()
    images, labels = synthetic_identities(4, 4)
    model = _training_model(backbone, 4)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    history = model.fit([images, labels], labels, batch_size=16, epochs=10, shuffle=True, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses
    # Adam leaves a weight whose gradient was always zero exactly where it was: a change
    # means the gradient reached the first convolution.
    first_conv_after = keras.ops.convert_to_numpy(_first_conv(backbone).kernel)
    assert np.all(np.isfinite(first_conv_after))
    assert np.max(np.abs(first_conv_after - first_conv_before)) > 1e-5


@pytest.mark.parametrize("family", FAMILIES_VARGFACENET_SLOW)
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_embeddings_are_float32(family, policy):
    images, _ = synthetic_identities(2, 2)
    reference_model = SMALL_BACKBONES[family]()
    reference = keras.ops.convert_to_numpy(reference_model(images, training=False))
    keras.config.set_dtype_policy(policy)
    mixed_model = SMALL_BACKBONES[family]()
    mixed_model.set_weights(reference_model.get_weights())
    assert _first_conv(mixed_model).compute_dtype == policy.split("_")[1]
    embeddings = mixed_model(images, training=False)
    assert keras.backend.standardize_dtype(embeddings.dtype) == "float32"
    assert embeddings.shape == (4, SMALL_EMBEDDING_SIZE)
    embeddings = keras.ops.convert_to_numpy(embeddings)
    assert np.all(np.isfinite(embeddings))
    # Same weights, lower precision: the same directions up to rounding.
    assert np.min(_cosine_similarity(embeddings, reference)) > 0.98


def test_get_builds_every_name_and_rejects_unknown_names():
    assert models.names() == sorted(
        [
            "iresnet18",
            "iresnet34",
            "iresnet50",
            "iresnet100",
            "iresnet200",
            "mobilefacenet",
            "mobilefacenet_mbf",
            "vargfacenet",
        ]
    )
    backbone = models.get("MobileFaceNet-MBF", input_shape=(16, 16, 3), embedding_size=8)
    assert backbone.name == "mobilefacenet_mbf"
    assert backbone.output.shape == (None, 8)
    with pytest.raises(ValueError, match=r"Received: name='resnet50'"):
        models.get("resnet50")


@pytest.mark.parametrize("factory", [models.iresnet18, models.mobilefacenet, models.vargfacenet])
def test_argument_validation(factory):
    with pytest.raises(ValueError, match=r"embedding_size.*Received: embedding_size=0"):
        factory(embedding_size=0)
    with pytest.raises(ValueError, match=r"Received: embedding_size=-3"):
        factory(embedding_size=-3)
    with pytest.raises(ValueError, match=r"at least 16x16.*Received: input_shape=\(8, 64, 3\)"):
        factory(input_shape=(8, 64, 3))
    with pytest.raises(ValueError, match=r"Received: input_shape=\(112, 112\)"):
        factory(input_shape=(112, 112))
    with pytest.raises(ValueError, match=r"Received: dropout=1.5"):
        factory(dropout=1.5)
    with pytest.raises(ValueError, match=r"Received: preprocessing='imagenet'"):
        factory(preprocessing="imagenet")


def test_unknown_depth_and_output_are_rejected():
    with pytest.raises(ValueError, match=r"depth.*Received: depth=77"):
        models.build_iresnet(77)
    with pytest.raises(ValueError, match=r"Unknown embedding output.*Received: output='Z'"):
        models.iresnet18(output="Z")
    with pytest.raises(ValueError, match=r"Received: output='pooling'"):
        models.mobilefacenet(output="pooling")


@pytest.mark.parametrize(
    "preprocessing, black, white",
    [
        (True, -127.5 / 128.0, 127.5 / 128.0),
        ("arcface", -127.5 / 128.0, 127.5 / 128.0),
        ("insightface", -1.0, 1.0),
        (None, 0.0, 255.0),
        (False, 0.0, 255.0),
    ],
)
def test_preprocessing_modes(preprocessing, black, white):
    backbone = models.mobilefacenet(input_shape=(16, 16, 3), preprocessing=preprocessing)
    # The stem conv is strided, so its padding layer sees the preprocessed image.
    probe = keras.Model(backbone.input, backbone.get_layer("stem_conv_pad").input)
    for value, expected in ((0, black), (255, white)):
        out = keras.ops.convert_to_numpy(probe(np.full((1, 16, 16, 3), value, "uint8")))
        np.testing.assert_allclose(out, expected, rtol=1e-6)
    has_layer = any(layer.name == "preprocessing" for layer in backbone.layers)
    assert has_layer == (preprocessing not in (None, False))


@pytest.mark.tf_only
def test_fit_under_mirrored_strategy():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        backbone = SMALL_BACKBONES["mobilefacenet"]()
        model = _training_model(backbone, 4)
        model.compile(
            optimizer=keras.optimizers.SGD(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=False,
        )
    images, labels = synthetic_identities(4, 4)
    history = model.fit([images, labels], labels, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
