import os

import keras
import numpy as np
import pytest

from keras_face import heads
from keras_face import training
from tests.training import training_testing

pytestmark = pytest.mark.tf_only

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def data():
    return training_testing.identity_images(NUM_CLASSES, 4)


def test_assembly_shapes_and_shared_weights(data):
    images, labels = data
    backbone = training_testing.tiny_backbone()
    model = training.build_training_model(backbone, heads.ArcFace(NUM_CLASSES, scale=16.0))
    assert model.embedding_model is backbone
    assert [tuple(t.shape) for t in model.inputs] == [(None, 16, 16, 3), (None,)]
    logits = model([images, labels], training=True)
    assert tuple(logits.shape) == (len(labels), NUM_CLASSES)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    before = backbone.get_layer("fc").kernel.numpy().copy()
    model.compile(optimizer=training.L2SGD(0.1))
    model.fit([images, labels], labels, batch_size=8, epochs=1, verbose=0)
    after = backbone.get_layer("fc").kernel.numpy()
    assert np.abs(after - before).max() > 0  # the training step moved the backbone itself
    inner = model.get_layer(backbone.name).get_layer("fc").kernel.numpy()
    np.testing.assert_array_equal(inner, after)


@pytest.mark.parametrize("name", sorted(set(heads.names()) | {"softmax"}))
def test_every_head_trains(name, data):
    images, labels = data
    keras.utils.set_random_seed(0)
    head = training.SoftmaxHead(NUM_CLASSES) if name == "softmax" else heads.get(name, NUM_CLASSES)
    model = training.build_training_model(training_testing.tiny_backbone(), head)
    model.compile(optimizer=training.L2SGD(0.01, momentum=0.9, l2=5e-4))
    history = model.fit([images, labels], labels, batch_size=8, epochs=1, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)), losses
    embeddings = model.embedding_model.predict(images, verbose=0)
    assert embeddings.shape == (len(labels), training_testing.EMBEDDING_SIZE)


def test_training_model_keras_round_trip(tmp_path, data):
    images, labels = data
    model = training.build_training_model(
        training_testing.tiny_backbone(), heads.CurricularFace(NUM_CLASSES, scale=16.0)
    )
    model.compile(optimizer=training.L2SGD(0.05))
    model.fit([images, labels], labels, batch_size=8, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "training.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, training.FaceTrainingModel)
    assert isinstance(restored.optimizer, training.L2SGD)
    np.testing.assert_allclose(
        restored([images, labels], training=False),
        model([images, labels], training=False),
        atol=1e-6,
    )
    assert float(restored.head.t) == pytest.approx(float(model.head.t))
    embedding_path = os.path.join(tmp_path, "embedding.keras")
    model.embedding_model.save(embedding_path)
    embedding = keras.saving.load_model(embedding_path)
    np.testing.assert_allclose(
        embedding.predict(images, verbose=0),
        model.embedding_model.predict(images, verbose=0),
        atol=1e-6,
    )


def test_magface_regulariser_is_in_the_training_loss(data):
    images, labels = data
    keras.utils.set_random_seed(0)
    model = training.build_training_model(
        training_testing.tiny_backbone(), heads.MagFace(NUM_CLASSES)
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # learning rate 0: weights stay
    reported = model.train_on_batch([images, labels], labels, return_dict=True)["loss"]
    logits = model([images, labels], training=True)
    assert len(model.losses) == 1
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    regulariser = float(model.losses[0])
    assert regulariser > 0
    assert float(reported) == pytest.approx(float(cross_entropy) + regulariser, rel=1e-5)


def test_softmax_head_serialization_and_dtype(data):
    images, labels = data
    head = training.SoftmaxHead(NUM_CLASSES, use_bias=False, dtype="mixed_float16")
    logits = head([np.ones((2, 8), "float32"), np.zeros(2, "int32")])
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    restored = training.SoftmaxHead.from_config(head.get_config())
    assert restored.num_classes == NUM_CLASSES and restored.use_bias is False
    with pytest.raises(ValueError, match="num_classes"):
        training.SoftmaxHead(0)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_training(precision, data):
    images, labels = data
    keras.utils.set_random_seed(0)
    with training.dtype_policy_scope(precision):
        model = training.build_training_model(
            training_testing.tiny_backbone(), heads.ArcFace(NUM_CLASSES)
        )
        model.compile(optimizer=training.L2SGD(0.01))
    assert keras.config.dtype_policy().name == "float32"  # restored after the block
    assert model.get_layer("tiny").get_layer("conv").compute_dtype == precision.split("_")[1]
    if precision == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit([images, labels], labels, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    logits = model([images, labels], training=True)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


def test_jit_compile(data):
    images, labels = data
    model = training.build_training_model(
        training_testing.tiny_backbone(), heads.CurricularFace(NUM_CLASSES)
    )
    model.compile(optimizer=training.L2SGD(0.01), jit_compile=True)
    assert model.jit_compile is True
    history = model.fit([images, labels], labels, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_a_bad_label_under_xla_gives_a_finite_loss_and_is_counted(data):
    images, labels = data
    head = heads.ArcFace(NUM_CLASSES, scale=16.0)
    model = training.build_training_model(training_testing.tiny_backbone(), head)
    model.compile(optimizer=training.L2SGD(0.01), jit_compile=True)
    bad = labels[:8].copy()
    bad[2] = NUM_CLASSES + 1000
    logs = model.train_on_batch([images[:8], bad], bad, return_dict=True)
    assert np.isfinite(logs["loss"])
    for variable in model.weights:
        if "float" in variable.dtype:
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(variable))), variable.path
    assert head.invalid_labels().count == 1
    with pytest.raises(ValueError, match=f"labels containing {NUM_CLASSES + 1000}"):
        head.raise_for_invalid_labels()


def test_rejects_bad_backbone():
    with pytest.raises(ValueError, match="backbone must be a keras.Model"):
        training.FaceTrainingModel(keras.layers.Dense(3), heads.ArcFace(3))
