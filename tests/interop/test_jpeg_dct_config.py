"""`data.jpeg_dct_method`: the JPEG decoder of the training readers and `.bin` sets.

INTEGER_ACCURATE (the default) gives the pixels OpenCV, MXNet and Pillow decode, which
insightface trains and evaluates on (tests/interop/test_mxnet_round_trip.py checks them
against MXNet); INTEGER_FAST is TensorFlow's faster, slightly different IDCT.
"""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_face import data
from keras_face import training
from keras_face.training import config_schema

pytestmark = pytest.mark.tf_only

COUNT = 8


def _jpegs():
    rng = np.random.default_rng(3)
    encoded = []
    for _ in range(COUNT):
        pixels = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        encoded.append(buffer.getvalue())
    return encoded


def _decode(jpeg, method):
    return tf.io.decode_jpeg(jpeg, channels=3, dct_method=method).numpy()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dct")
    jpegs = _jpegs()
    rec = directory / "train.rec"
    data.write_recordio(str(rec), list(zip(jpegs, range(COUNT))), progress=False)
    bin_path = directory / "pairs.bin"
    data.write_bin(str(bin_path), jpegs, [1, 0, 1, 0], progress=False)
    return jpegs, str(rec), str(bin_path)


def _config(rec, bin_path, method):
    overrides = [
        "data.source=recordio",
        f"data.path={rec}",
        "data.random_flip=false",
        f"data.verification=[{bin_path}]",
    ]
    if method is not None:
        overrides.append(f"data.jpeg_dct_method={method}")
    return training.load_config(overrides=overrides)


@pytest.mark.parametrize("method", [None, "INTEGER_ACCURATE", "INTEGER_FAST"])
def test_config_key_reaches_the_readers(method, files):
    jpegs, rec, bin_path = files
    config = _config(rec, bin_path, method)
    expected_method = method or "INTEGER_ACCURATE"
    assert config["data"]["jpeg_dct_method"] == expected_method
    loaded = training.load_training_data(config, COUNT, progress=False)
    dataset = loaded.make_dataset(0)
    inputs, labels = next(iter(dataset))  # ((images, labels), labels) for a margin head
    images = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    images, labels = np.asarray(images), np.asarray(labels)
    assert sorted(labels.tolist()) == list(range(COUNT))
    for image, label in zip(images, labels):
        np.testing.assert_array_equal(image, _decode(jpegs[label], expected_method))
    bin_images, _ = loaded.verification["pairs"]
    for image, jpeg in zip(bin_images, jpegs):
        np.testing.assert_array_equal(image, _decode(jpeg, expected_method))


def test_the_two_methods_differ_on_these_images(files):
    jpegs, _, _ = files
    differences = [
        np.abs(_decode(jpeg, "INTEGER_FAST").astype(int) - _decode(jpeg, "INTEGER_ACCURATE")).max()
        for jpeg in jpegs
    ]
    assert min(differences) >= 1  # so the test above tells the methods apart


def test_bad_value_is_a_config_error(files):
    _, rec, bin_path = files
    with pytest.raises(training.ConfigError, match="INTEGER_SLOW"):
        _config(rec, bin_path, "INTEGER_SLOW")


def test_choices_are_the_readers():
    assert config_schema.JPEG_DCT_METHODS == data.JPEG_DCT_METHODS
