import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from keras_face.data.preprocessing import fused_preprocess_function  # noqa: E402

pytestmark = pytest.mark.tf_only


def test_modes_match_their_formulas():
    pixels = np.array([0, 1, 127, 128, 254, 255], dtype=np.uint8)
    arcface = data.preprocess(pixels, mode="arcface")
    insightface = data.preprocess(pixels, mode="insightface")
    assert isinstance(arcface, np.ndarray) and arcface.dtype == np.float32
    np.testing.assert_allclose(
        arcface, [-0.99609375, -0.98828125, -0.00390625, 0.00390625, 0.98828125, 0.99609375]
    )
    np.testing.assert_allclose(
        insightface,
        [-1.0, -0.9921568627, -0.0039215686, 0.0039215686, 0.9921568627, 1.0],
        rtol=1e-6,
    )
    tensor = data.preprocess(tf.constant(pixels), mode="insightface")
    assert isinstance(tensor, tf.Tensor) and tensor.dtype == tf.float32
    np.testing.assert_allclose(tensor.numpy(), insightface)
    batch = np.random.default_rng(0).integers(0, 256, (3, 4, 5, 3)).astype(np.uint8)
    for mode in ("arcface", "insightface"):
        np.testing.assert_allclose(
            fused_preprocess_function(mode)(batch).numpy(), data.preprocess(batch, mode), atol=1e-6
        )
    with pytest.raises(ValueError, match=r"Received: mode='caffe'"):
        data.preprocess(pixels, mode="caffe")


def test_random_flip_mirrors_or_keeps_each_image():
    images = np.random.default_rng(1).integers(0, 256, (64, 3, 5, 3)).astype(np.uint8)
    flipped = data.random_flip(images, seed=(1, 2)).numpy()
    mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images)]
    kept = [np.array_equal(f, i) for f, i in zip(flipped, images)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 16 <= sum(mirrored) <= 48
    np.testing.assert_array_equal(data.random_flip(images, seed=(1, 2)).numpy(), flipped)
    single = data.random_flip(images[0]).numpy()
    assert np.array_equal(single, images[0]) or np.array_equal(single, images[0][:, ::-1])
