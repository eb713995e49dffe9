"""Shared pytest configuration.

Tests marked `tf_only` need TensorFlow and are skipped when the Keras backend is not
TensorFlow (the head and model tests also run under `KERAS_BACKEND=jax` and `torch`).
"""

import keras
import pytest


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(
        reason=f"needs the TensorFlow backend (running {keras.backend.backend()})"
    )
    for item in items:
        if "tf_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _reset_dtype_policy():
    """A test that sets a global dtype policy must not leak it into the next test."""
    yield
    keras.config.set_dtype_policy("float32")
