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


def _keras_grouped_conv_model():
    """Keras' own grouped Conv2D runs through an XLA function that tf2onnx cannot convert."""
    images = keras.Input((16, 16, 4), name="image")
    features = keras.layers.Conv2D(4, 3, groups=2, name="grouped")(images)
    return keras.Model(images, keras.layers.Flatten()(features), name="keras_grouped")


def test_invalid_onnx_export_raises_and_leaves_no_file(tmp_path):
    pytest.importorskip("tf2onnx")
    output = tmp_path / "grouped.onnx"
    with pytest.raises(training.ExportError, match="StatefulPartitionedCall") as info:
        training.export_embedding_model(_keras_grouped_conv_model(), output, format="onnx")
    assert str(output) in str(info.value)
    assert os.listdir(tmp_path) == []  # neither the file nor the temporary folder


def test_unreadable_written_file_raises(embedding_model, tmp_path, monkeypatch):
    """Whatever the converter writes is loaded and run before the export succeeds."""
    from keras_face.training import export

    def write_garbage(serving, path):
        with open(path, "wb") as file:
            file.write(b"not a flatbuffer")

    monkeypatch.setattr(export, "_export_tflite", write_garbage)
    model, _ = embedding_model
    output = tmp_path / "m.tflite"
    with pytest.raises(training.ExportError, match="does not run in its runtime"):
        training.export_embedding_model(model, output, format="tflite")
    assert not output.exists()


def test_non_finite_export_raises(tmp_path):
    images = keras.Input((16, 16, 3), name="image")
    embeddings = keras.layers.Flatten()(
        keras.layers.Lambda(lambda x: keras.ops.log(x - 255))(images)
    )
    model = keras.Model(images, embeddings)
    with pytest.raises(training.ExportError, match="non-finite"):
        training.export_embedding_model(model, tmp_path / "nan", format="savedmodel")
    assert not (tmp_path / "nan").exists()


def test_onnx_batch_dimension_is_named_batch(embedding_model, tmp_path):
    pytest.importorskip("tf2onnx")
    onnx = pytest.importorskip("onnx")
    model, _ = embedding_model
    output = tmp_path / "m.onnx"
    training.export_embedding_model(model, output, format="onnx", input_dtype="uint8")
    graph = onnx.load(output).graph
    shapes = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in list(graph.input) + list(graph.output)
    }
    assert shapes == {"images": ["batch", 112, 112, 3], "embeddings": ["batch", 128]}


@pytest.fixture(scope="module")
def scf_model():
    from keras_face import uncertainty

    keras.utils.set_random_seed(0)
    backbone = models.mobilefacenet(input_shape=(32, 32, 3), embedding_size=32)
    head = uncertainty.SphericalConfidenceHead("mlp", hidden_units=(16,), initial_kappa=300.0)
    return uncertainty.embedding_and_confidence_model(backbone, head)


@pytest.mark.parametrize("format", ["savedmodel", "onnx", "tflite"])
def test_scf_model_exports_embeddings_and_kappa(format, scf_model, tmp_path):
    if format == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")
    output = tmp_path / {"savedmodel": "scf", "onnx": "scf.onnx", "tflite": "scf.tflite"}[format]
    training.export_embedding_model(scf_model, output, format=format, input_dtype="uint8")
    images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    actual = training.run_exported(output, images)
    expected = scf_model.predict(images.astype("float32"), verbose=0)
    assert sorted(actual) == ["embeddings", "kappa"]
    assert actual["embeddings"].shape == (3, 32) and actual["kappa"].shape == (3,)
    np.testing.assert_allclose(actual["embeddings"], expected["embedding"], atol=1e-4)
    np.testing.assert_allclose(actual["kappa"], expected["kappa"], rtol=1e-5)
    assert np.all(expected["kappa"] > 1.0)
    differences = training.check_exported(scf_model, output, format=format)
    assert set(differences) == {"embeddings", "kappa"}
    assert max(differences.values()) <= 1e-4


def test_check_exported_reports_a_different_model(embedding_model, tmp_path):
    model, _ = embedding_model
    output = tmp_path / "saved"
    training.export_embedding_model(model, output)
    other = models.mobilefacenet(input_shape=(112, 112, 3), embedding_size=128)
    with pytest.raises(training.ExportError, match="differs from the Keras model by"):
        training.check_exported(other, output)


def test_cli_export_fails_without_exported_line(tmp_path, capsys):
    pytest.importorskip("tf2onnx")
    from keras_face import cli

    path = tmp_path / "grouped.keras"
    _keras_grouped_conv_model().save(path)
    output = tmp_path / "grouped.onnx"
    status = cli.main(
        ["export", "--model", str(path), "--format", "onnx", "--output", str(output), "--check"]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "Exported" not in captured.out
    assert "Traceback" not in captured.err
    error_lines = [line for line in captured.err.splitlines() if line.startswith("keras-face")]
    assert error_lines == [
        line for line in error_lines if line.startswith("keras-face export: error: ")
    ]
    assert len(error_lines) == 1 and str(output) in error_lines[0]
    assert not output.exists()


def test_cli_check_of_a_broken_runtime_is_one_line(embedding_model, tmp_path, capsys, monkeypatch):
    from keras_face import cli
    from keras_face.training import export

    _, path = embedding_model
    output = tmp_path / "saved"
    real_run = export._run
    calls = []

    def run_then_break(file, images, format):
        calls.append(file)
        if len(calls) > 1:  # the validation run passes, the --check run fails
            raise RuntimeError("runtime crashed")
        return real_run(file, images, format)

    monkeypatch.setattr(export, "_run", run_then_break)
    status = cli.main(
        ["export", "--model", path, "--format", "savedmodel", "--output", str(output), "--check"]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "keras-face export: error: " in captured.err and "runtime crashed" in captured.err
    assert "Traceback" not in captured.err
