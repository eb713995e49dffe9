import os

import keras
import numpy as np
import pytest

from keras_face import models
from keras_face import training

pytestmark = pytest.mark.tf_only


@pytest.fixture(scope="module")
def embedding_model(tmp_path_factory):
    """MobileFaceNet at 112x112 with non-trivial batch-norm statistics, saved as .keras."""
    keras.utils.set_random_seed(0)
    model = models.mobilefacenet(input_shape=(112, 112, 3), embedding_size=128)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.1, size).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size).astype("float32"))
    path = os.path.join(tmp_path_factory.mktemp("export"), "embedding.keras")
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, size=(5, 112, 112, 3)).astype(np.uint8)


@pytest.mark.parametrize(
    "format, input_dtype",
    [
        ("savedmodel", "float32"),
        ("tflite", "float32"),
        ("onnx", "float32"),
        ("onnx", "uint8"),
    ],
)
def test_export_parity(format, input_dtype, embedding_model, images, tmp_path):
    if format == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")
    model, path = embedding_model
    expected = model.predict(images.astype("float32"), verbose=0)
    output = os.path.join(
        tmp_path, {"savedmodel": "saved", "tflite": "m.tflite", "onnx": "m.onnx"}[format]
    )
    training.export_embedding_model(path, output, format=format, input_dtype=input_dtype)
    actual = training.run_exported(output, images)
    assert actual.shape == expected.shape == (5, 128)
    assert np.abs(actual - expected).max() <= 1e-4
    assert np.abs(expected).max() > 0.1  # the comparison is not between near-zero vectors


def test_export_takes_the_training_model(embedding_model, images, tmp_path):
    from keras_face import heads

    model, _ = embedding_model
    training_model = training.build_training_model(model, heads.ArcFace(7))
    output = os.path.join(tmp_path, "from_training_model")
    training.export_embedding_model(
        training_model, output, format="savedmodel", input_dtype="uint8"
    )
    np.testing.assert_allclose(
        training.run_exported(output, images),
        model.predict(images.astype("float32"), verbose=0),
        atol=1e-4,
    )


def test_export_errors(embedding_model, tmp_path):
    model, _ = embedding_model
    with pytest.raises(ValueError, match="Received: format='pb'"):
        training.export_embedding_model(model, tmp_path / "x", format="pb")
    with pytest.raises(ValueError, match="input_dtype"):
        training.export_embedding_model(model, tmp_path / "x", input_dtype="float16")
    with pytest.raises(FileNotFoundError, match="Model file not found"):
        training.export_embedding_model(tmp_path / "missing.keras", tmp_path / "x")
    with pytest.raises(ValueError, match="Cannot tell the format"):
        training.run_exported(__file__, np.zeros((1, 112, 112, 3)))
