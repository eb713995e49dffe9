"""AgeInvariantTrainingModel (spec 3.8, 7): its loss, the reversed gradient, fit, saving."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_face import heads
from keras_face import training
from keras_face.age_invariant import AgeInvariantTrainingModel
from keras_face.age_invariant import adapt_age_data
from keras_face.age_invariant import age_loss
from keras_face.models import apply_embedding_output
from tests.training.test_trainer import SMALL_RUN

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the training model runs on TensorFlow"
)
SIZE = 16


def _backbone(seed=0):
    keras.utils.set_random_seed(seed)
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(image)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    embeddings = apply_embedding_output(x, "E", embedding_size=8)
    return keras.Model(image, embeddings, name="tiny")


def _model(da_weight=0.002, grl_scale=1.0, seed=0):
    model = AgeInvariantTrainingModel(
        _backbone(seed),
        heads.CosFace(5, scale=16.0, margin=0.35),
        num_groups=4,
        age_weight=0.001,
        da_weight=da_weight,
        grl_scale=grl_scale,
        reduction=8,
        spatial_kernel=3,
        age_hidden=16,
    )
    return model


def _batch(n=6, seed=1):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, 5, n).astype(np.int32)
    ages = rng.uniform(2, 80, n).astype(np.float32)
    return images, labels, ages


def _trunk_variables(model):
    return [v for v in model.backbone.trainable_variables if "conv" in v.path]


def _gradients(model, loss_of, variables):
    images, labels, ages = _batch()
    with tf.GradientTape() as tape:
        outputs = model([images, labels, ages], training=True)
        loss = loss_of(model, outputs, (images, labels, ages))
    return loss, tape.gradient(loss, variables)


def _model_loss(model, outputs, x):
    return model.compute_loss(x=x, y=x[1], y_pred=outputs)


def _parts(outputs, x):
    _, labels, ages = x
    identity = tf.reduce_mean(
        keras.losses.sparse_categorical_crossentropy(labels, outputs["logits"], from_logits=True)
    )
    main = tf.reduce_mean(age_loss(outputs["age_logits"], outputs["group_logits"], ages, 4))
    adversary = tf.reduce_mean(
        age_loss(outputs["da_age_logits"], outputs["da_group_logits"], ages, 4)
    )
    return identity, main, adversary


def test_loss_is_identity_plus_weighted_age_terms():
    model = _model()
    x = _batch()
    outputs = model(list(x), training=True)
    identity, main, adversary = _parts(outputs, x)
    assert float(main) > 1.0 and float(adversary) > 1.0
    np.testing.assert_allclose(
        float(_model_loss(model, outputs, x)),
        float(identity + 0.001 * main + 0.002 * adversary),
        rtol=1e-6,
    )
    assert set(outputs) == {
        "logits",
        "age_logits",
        "group_logits",
        "da_age_logits",
        "da_group_logits",
    }
    assert outputs["logits"].shape == (6, 5) and outputs["da_group_logits"].shape == (6, 4)


def test_without_the_adversary_the_gradients_are_identity_plus_age():
    model = _model(da_weight=0.0)
    variables = _trunk_variables(model)
    _, model_grads = _gradients(model, _model_loss, variables)

    def hand_built(model, outputs, x):
        identity, main, _ = _parts(outputs, x)
        return identity + 0.001 * main

    _, hand_grads = _gradients(model, hand_built, variables)
    for got, expected in zip(model_grads, hand_grads):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)


def test_the_adversary_gradient_is_reversed_below_and_not_in_the_discriminator():
    model = _model(grl_scale=0.5)
    trunk = _trunk_variables(model)
    discriminator = model.da_head.trainable_variables

    def adversary_only(model, outputs, x):
        return _parts(outputs, x)[2]

    _, reversed_grads = _gradients(model, adversary_only, trunk + discriminator)

    # The same graph without the reversal layer, from the model's own sub-layers.
    def plain(model, outputs, x):
        images, _, ages = x
        feature_map = model.get_layer("tiny_trunk")(images, training=True)
        x_id, _ = model.decomposition(feature_map, training=True)
        age_logits, group_logits = model.da_head(x_id, training=True)
        return tf.reduce_mean(age_loss(age_logits, group_logits, ages, 4))

    _, plain_grads = _gradients(model, plain, trunk + discriminator)
    for got, expected in zip(reversed_grads[: len(trunk)], plain_grads[: len(trunk)]):
        scale = float(tf.reduce_max(tf.abs(expected)))
        assert scale > 0
        np.testing.assert_allclose(got.numpy(), -0.5 * expected.numpy(), atol=1e-5 * scale)
    # The discriminator learns to read age (its gradient is not reversed); the forward
    # value through the reversal layer differs from x by one rounding.
    for got, expected in zip(reversed_grads[len(trunk) :], plain_grads[len(trunk) :]):
        scale = float(tf.reduce_max(tf.abs(expected)))
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5 * scale)


def test_fit_logs_age_metrics_and_the_embedding_model_saves(tmp_path):
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.05, weight_decay=5e-4))
    images, labels, ages = _batch(n=12, seed=2)
    history = model.fit((images, labels, ages), labels, batch_size=6, epochs=2, verbose=0)
    for name in ("loss", "accuracy", "age_mae", "group_acc", "da_age_mae", "da_group_acc"):
        assert np.all(np.isfinite(history.history[name])), name
    assert 0 < history.history["age_mae"][0] < 80
    embedding = model.embedding_model
    trunk = model.get_layer("tiny_trunk")
    expected = model.backbone.get_layer("embedding_features")  # the tail's last layer
    assert expected is not None
    x_id, _ = model.decomposition(trunk(images[:3]))
    tail = keras.Model(trunk.output, model.backbone.output)
    np.testing.assert_allclose(
        embedding.predict(images[:3], verbose=0), tail(x_id).numpy(), rtol=1e-5, atol=1e-6
    )
    path = os.path.join(tmp_path, "embedding.keras")
    embedding.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        loaded.predict(images[:3], verbose=0), embedding.predict(images[:3], verbose=0)
    )
    model_path = os.path.join(tmp_path, "model.keras")
    model.save(model_path)
    revived = keras.saving.load_model(model_path)
    np.testing.assert_allclose(
        revived([images, labels, ages])["da_age_logits"].numpy(),
        model([images, labels, ages])["da_age_logits"].numpy(),
        rtol=1e-6,
    )


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_groups=3"):
        AgeInvariantTrainingModel(_backbone(), heads.CosFace(5), num_groups=3)
    with pytest.raises(ValueError, match="da_weight=-1"):
        AgeInvariantTrainingModel(_backbone(), heads.CosFace(5), da_weight=-1)
    with pytest.raises(ValueError, match="loss"):
        _model().compile(loss="mse")


def test_train_selects_the_method_and_adds_cross_age_pairs(tmp_path):
    results = training.train(
        output_dir=str(tmp_path / "run"),
        overrides=SMALL_RUN
        + [
            "training.method=age_invariant",
            "age.num_groups=4",
            "age.hidden=16",
            "age.reduction=8",
            "age.confound_spread=5",
        ],
        backbone=_backbone(),
        progress=False,
    )
    for name in ("heldout", "heldout_cross_age"):
        assert 0.3 < results["verification"][name]["accuracy"] <= 1.0
    assert os.path.exists(tmp_path / "run" / "embedding_model.keras")
    with pytest.raises(training.ConfigError, match="age.num_groups=9"):
        training.load_config(None, ["age.num_groups=9"])
    folder = training.load_config(None, ["data.source=folder", f"data.path={tmp_path}"])
    with pytest.raises(training.ConfigError, match="data.source='folder'"):
        adapt_age_data(folder, None, 16)
