"""Shared pieces of the training tests: a tiny backbone, data, and subprocess runners."""

import os
import subprocess
import sys

import keras
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(os.path.dirname(HERE))
IMAGE_SIZE = 16
EMBEDDING_SIZE = 8


def tiny_backbone(
    image_size=IMAGE_SIZE, embedding_size=EMBEDDING_SIZE, synchronized_bn=False, name="tiny"
):
    """Conv -> BN -> PReLU -> Dense -> BN backbone (raw 0..255 RGB in), a few thousand weights.

    `synchronized_bn=True` all-reduces the batch-norm statistics across replicas, so that
    a multi-replica step equals a single-replica step on the same global batch.
    """
    images = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.5 / 128.0, name="preprocess")(images)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(synchronized=synchronized_bn, name="bn")(x)
    x = keras.layers.PReLU(shared_axes=[1, 2], name="prelu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(embedding_size, name="fc")(x)
    embeddings = keras.layers.BatchNormalization(synchronized=synchronized_bn, name="features")(x)
    return keras.Model(images, embeddings, name=name)


def identity_images(num_identities, images_per_identity, image_size=IMAGE_SIZE, seed=0):
    """uint8 images: one smooth random template per identity plus pixel noise, and labels."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(30, 225, size=(num_identities, 4, 4, 3))
    scale = image_size // 4
    templates = templates.repeat(scale, axis=1).repeat(scale, axis=2)
    labels = np.repeat(np.arange(num_identities), images_per_identity).astype("int32")
    noise = rng.normal(0, 25, size=(len(labels), image_size, image_size, 3))
    return np.clip(templates[labels] + noise, 0, 255).astype("uint8"), labels


def script_environment(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPOSITORY + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["KERAS_BACKEND"] = "tensorflow"
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_script(name, *args, timeout=900, env=None, check=True):
    """Run `tests/training/<name>` in a fresh Python process; return the CompletedProcess."""
    completed = subprocess.run(
        [sys.executable, os.path.join(HERE, name), *map(str, args)],
        env=env or script_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"{name} {args} exited with {completed.returncode}:\n{completed.stdout[-3000:]}\n"
            f"{completed.stderr[-5000:]}"
        )
    return completed
