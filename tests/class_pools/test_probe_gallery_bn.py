"""The gallery net's batch norms run in training mode (batch statistics), as the authors'."""

import keras
import numpy as np
import pytest

from keras_face.class_pools import F2CTrainingModel

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the pool models run on TensorFlow"
)


def _backbone():
    image = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(image)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(image, keras.layers.Dense(8, name="fc")(x), name="tiny")


def test_gallery_batch_norm_uses_batch_statistics_and_stays_out_of_the_optimizer():
    keras.utils.set_random_seed(0)
    model = F2CTrainingModel(_backbone(), pool_size=12)
    gallery = model.gallery
    images = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    training = keras.ops.convert_to_numpy(gallery(images, training=True))
    inference = keras.ops.convert_to_numpy(gallery(images, training=False))
    assert np.abs(training - inference).max() > 1e-3
    moving = keras.ops.convert_to_numpy(gallery.get_layer("bn").moving_mean)
    assert np.abs(moving).max() > 0  # updated by the training call
    trainable = {id(v) for v in model.trainable_weights}
    assert not any(id(v) in trainable for v in gallery.weights)
    assert all(id(v) in trainable for v in model.probe.trainable_weights)
