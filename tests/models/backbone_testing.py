"""Shared pieces of the backbone tests: small configurations and synthetic identities."""

import numpy as np

from keras_face import models

SMALL_INPUT_SHAPE = (32, 32, 3)
SMALL_EMBEDDING_SIZE = 16

# The smallest model of each family, at a small input (total stride 16 allows 32x32).
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
