"""Per-image quality scores of a model (norm, kappa) and its embedding-only view."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_face.uncertainty import SphericalConfidenceHead
from keras_face.uncertainty import embedding_and_confidence_model
from keras_face.uncertainty import embedding_output_model
from keras_face.uncertainty import quality_scores
from tests.uncertainty.test_scf import _conv_backbone


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def _images(count=10, size=8, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("uint8")


def _scf_model(dim=16):
    keras.utils.set_random_seed(0)
    backbone = _conv_backbone(dim)
    head = SphericalConfidenceHead("mlp", hidden_units=(8,), initial_kappa=50.0)
    model = embedding_and_confidence_model(backbone, head)
    # Random last-layer weights, so that kappa differs between images.
    head.output_layer.kernel.assign(np.random.default_rng(1).normal(0, 0.5, (8, 1)))
    return backbone, model


def test_norm_and_kappa_of_a_confidence_model():
    _, model = _scf_model()
    images = _images()
    outputs = model(images.astype("float32"), training=False)
    embeddings = _numpy(outputs["embedding"]).astype(np.float64)
    kappa = _numpy(outputs["kappa"])
    scores = quality_scores(model, images, batch_size=3)  # batches of 3, 3, 3, 1
    assert sorted(scores) == ["kappa", "norm"]
    assert scores["norm"].dtype == np.float32 and scores["norm"].shape == (10,)
    np.testing.assert_allclose(scores["norm"], np.linalg.norm(embeddings, axis=1), rtol=1e-5)
    np.testing.assert_allclose(scores["kappa"], kappa, rtol=1e-5)
    assert np.ptp(scores["kappa"]) > 1.0  # a real ranking, not one constant


def test_norm_of_an_embedding_model_and_of_a_two_output_list():
    backbone, model = _scf_model()
    images = _images(6)
    embeddings = _numpy(backbone(images.astype("float32"), training=False))
    scores = quality_scores(backbone, images)
    assert sorted(scores) == ["norm"]
    np.testing.assert_allclose(scores["norm"], np.linalg.norm(embeddings, axis=1), rtol=1e-5)
    as_list = keras.Model(
        model.input, [model.get_layer("embedding").output, model.get_layer("kappa").output]
    )
    listed = quality_scores(as_list, images)
    np.testing.assert_allclose(listed["norm"], scores["norm"], rtol=1e-6)
    np.testing.assert_allclose(listed["kappa"], quality_scores(model, images)["kappa"], rtol=1e-6)


def test_embedding_output_model_shares_the_weights():
    backbone, model = _scf_model()
    assert embedding_output_model(backbone) is backbone
    function = lambda images: images  # noqa: E731
    assert embedding_output_model(function) is function  # no symbolic outputs: unchanged
    embedder = embedding_output_model(model)
    assert len(embedder.outputs) == 1
    images = _images(4).astype("float32")
    expected = _numpy(model(images, training=False)["embedding"])
    np.testing.assert_allclose(_numpy(embedder(images, training=False)), expected, rtol=1e-6)
    backbone.get_layer("conv1").kernel.assign(np.zeros((3, 3, 3, 8), "float32"))
    np.testing.assert_allclose(
        _numpy(embedder(images, training=False)),
        _numpy(model(images, training=False)["embedding"]),
        rtol=1e-6,
    )


def test_bad_inputs_name_the_value():
    backbone, model = _scf_model()
    image = keras.Input((8, 8, 3))
    no_embedding = keras.Model(image, {"features": backbone(image)})
    with pytest.raises(ValueError, match=r"'embedding' output.*Received: outputs \['features'\]"):
        quality_scores(no_embedding, _images(2))
    three = keras.Model(image, [backbone(image)] * 3)
    with pytest.raises(ValueError, match="Received: a model with 3 outputs"):
        embedding_output_model(three)
    with pytest.raises(ValueError, match="Received: shape=\\(8, 8, 3\\)"):
        quality_scores(model, _images(1)[0])
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        quality_scores(model, _images(2), batch_size=0)
    with pytest.raises(ValueError, match="Received: model=function"):
        quality_scores(lambda images: images, _images(2))
    nan_model = keras.Model(image, keras.layers.Lambda(lambda x: x * np.nan)(backbone(image)))
    with pytest.raises(ValueError, match="embedding must be finite"):
        quality_scores(nan_model, _images(2))
