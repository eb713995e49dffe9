"""Shared pieces of the backbone tests: small configurations and synthetic identities."""

import keras
import numpy as np

from keras_face import models

SMALL_INPUT_SHAPE = (16, 16, 3)
SMALL_EMBEDDING_SIZE = 16

# The smallest model of each family at the smallest input its total stride (16) allows:
# VarGFaceNet's many grouped convolutions are slow to trace and differentiate on CPU.
SMALL_BACKBONES = {
    "iresnet18": lambda **kwargs: models.iresnet18(
        input_shape=SMALL_INPUT_SHAPE, embedding_size=SMALL_EMBEDDING_SIZE, **kwargs
    ),
    "mobilefacenet": lambda **kwargs: models.mobilefacenet(
        input_shape=SMALL_INPUT_SHAPE, embedding_size=SMALL_EMBEDDING_SIZE, **kwargs
    ),
    "vargfacenet": lambda **kwargs: models.vargfacenet(
        input_shape=SMALL_INPUT_SHAPE, embedding_size=SMALL_EMBEDDING_SIZE, **kwargs
    ),
}


def synthetic_identities(num_identities, images_per_identity, shape=SMALL_INPUT_SHAPE, seed=0):
    """uint8 images of `num_identities` distinct smooth templates plus noise, and labels.

    Each identity is a random low-frequency pattern (upsampled 4x4 grid per channel);
    its images add independent pixel noise, so identities are separable but not
    identical copies.
    """
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    templates = rng.uniform(40, 215, size=(num_identities, 4, 4, channels))
    templates = templates.repeat(height // 4, axis=1).repeat(width // 4, axis=2)
    labels = np.repeat(np.arange(num_identities), images_per_identity).astype("int32")
    noise = rng.normal(0, 20, size=(len(labels), height, width, channels))
    images = np.clip(templates[labels] + noise, 0, 255).astype("uint8")
    return images, labels


def randomize_weights(model, seed=0):
    """Give BN statistics, scales and PReLU slopes non-trivial values."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if variable.name in ("gamma", "moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif variable.name in ("beta", "moving_mean", "bias"):
            variable.assign(rng.normal(0.0, 0.1, shape).astype("float32"))
        elif variable.name == "alpha":
            variable.assign(rng.uniform(0.0, 0.5, shape).astype("float32"))


def keras_round_trip(layer, images, path):
    """Save `layer` in a `.keras` model at `path`, load it back: the restored layer.

    Asserts that the restored model gives the same outputs (1e-6) and the layer the same
    config.
    """
    model = keras.Sequential([keras.Input(images.shape[1:]), layer])
    model.save(path)
    restored = keras.saving.load_model(path)
    restored_layer = restored.layers[-1]
    assert restored_layer.get_config() == layer.get_config()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(images)),
        keras.ops.convert_to_numpy(model(images)),
        rtol=1e-6,
        atol=1e-6,
    )
    return restored_layer
