"""Flip-test embedding extraction and L2 normalisation."""

import keras
import numpy as np
import pytest

from keras_face.evaluation import extract_embeddings
from keras_face.evaluation import l2_normalize

preprocessing = pytest.importorskip("sklearn.preprocessing")


def tiny_model(seed=0, size=8, dim=5):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(
        dim, kernel_initializer=keras.initializers.RandomNormal(seed=seed)
    )(x)
    return keras.Model(inputs, outputs)


def test_l2_normalize_matches_sklearn_bitwise():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        features = rng.normal(size=(50, 17)).astype(dtype) * rng.uniform(0.01, 100, (50, 1)).astype(
            dtype
        )
        features[3] = 0.0
        ours = l2_normalize(features)
        theirs = preprocessing.normalize(features)
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
        assert np.all(ours[3] == 0.0)
    with pytest.raises(ValueError, match="features.shape=\\(3,\\)"):
        l2_normalize(np.ones(3))


def test_flip_sum_then_normalise():
    model = tiny_model()
    images = np.random.default_rng(1).integers(0, 256, (7, 8, 8, 3)).astype(np.uint8)
    embeddings = extract_embeddings(model, images, batch_size=3, verbose=False, dtype="float64")
    direct = model.predict(images.astype(np.float32), verbose=0).astype(np.float64)
    flipped = model.predict(images[:, :, ::-1].astype(np.float32), verbose=0).astype(np.float64)
    np.testing.assert_allclose(
        embeddings, preprocessing.normalize(direct + flipped), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-12)
    # The flip matters for this model, and the batch size does not.
    plain = extract_embeddings(model, images, batch_size=64, flip=False, verbose=False)
    np.testing.assert_allclose(plain, preprocessing.normalize(direct), rtol=1e-5, atol=1e-6)
    assert np.abs(plain - embeddings).max() > 1e-2
    one_by_one = extract_embeddings(model, images, batch_size=1, verbose=False, dtype="float64")
    np.testing.assert_allclose(one_by_one, embeddings, rtol=1e-5, atol=1e-6)
    assert extract_embeddings(model, images, verbose=False).dtype == np.float32


def test_unnormalised_features_keep_the_norm():
    model = tiny_model(seed=3)
    images = np.random.default_rng(2).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    raw = extract_embeddings(model, images, flip=True, normalize=False, verbose=False)
    expected = model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(raw, expected, rtol=1e-5)


def test_plain_callable_and_validation():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)

    def column_means(batch):
        return batch.mean(axis=(1, 3))  # (B, W): flip-sensitive

    embeddings = extract_embeddings(column_means, images, verbose=False)
    expected = preprocessing.normalize(column_means(images) + column_means(images[:, :, ::-1]))
    np.testing.assert_allclose(embeddings, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size=0"):
        extract_embeddings(column_means, images, batch_size=0)
    with pytest.raises(ValueError, match="shape=\\(4, 4, 3\\)"):
        extract_embeddings(column_means, images[0])
    with pytest.raises(ValueError, match="output shape"):
        extract_embeddings(lambda batch: batch, images, verbose=False)


def test_compiled_inference_path_equals_the_eager_call_in_inference_mode():
    from keras_face.evaluation.embeddings import inference_function

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(6)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(4, 3.0, "float32"))
    bn.moving_variance.assign(np.full(4, 4.0, "float32"))
    images = np.random.default_rng(3).uniform(0, 255, (5, 8, 8, 3)).astype(np.float32)
    forward = inference_function(model)
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    # Any batch size through the one compiled function; dropout and batch statistics off.
    for count in (5, 2, 1):
        np.testing.assert_allclose(forward(images[:count]), expected[:count], rtol=1e-5, atol=1e-5)
    embeddings = extract_embeddings(model, images, batch_size=2, flip=False, verbose=False)
    np.testing.assert_allclose(embeddings, preprocessing.normalize(expected), rtol=1e-5, atol=1e-6)
    # (Last: a training call updates the BN statistics.)
    training = keras.ops.convert_to_numpy(model(images, training=True))
    assert np.abs(training - expected).max() > 1e-2


def test_compiled_path_is_kept_per_model_and_sees_new_weights():
    from keras_face.evaluation.embeddings import inference_function

    model = tiny_model(seed=4)
    images = np.random.default_rng(5).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    assert inference_function(model) is inference_function(model)
    before = extract_embeddings(model, images, flip=False, normalize=False, verbose=False)
    model.set_weights([weight * 2.0 for weight in model.get_weights()])
    after = extract_embeddings(model, images, flip=False, normalize=False, verbose=False)
    np.testing.assert_allclose(after, 2.0 * before, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        after, keras.ops.convert_to_numpy(model(images)), rtol=1e-5, atol=1e-5
    )
