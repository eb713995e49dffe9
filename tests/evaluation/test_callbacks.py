"""VerificationCallback on a tiny Keras model trained on synthetic faces."""

import csv
import math

import keras
import pytest

from keras_face.data.synthetic import synthetic_faces
from keras_face.data.synthetic import synthetic_pairs
from keras_face.evaluation import VerificationCallback
from keras_face.evaluation import extract_embeddings
from keras_face.evaluation import verify

# fit + the TensorFlow .bin reader.
pytestmark = pytest.mark.tf_only

SIZE = 24


@pytest.fixture(scope="module")
def data():
    train = synthetic_faces(8, 6, seed=0, image_size=SIZE, quality=None)
    held_out = synthetic_faces(10, 4, seed=0, image_size=SIZE, quality=None, identity_offset=10**6)
    pairs = synthetic_pairs(held_out, 40, seed=1)
    return train, pairs


def build_models(seed=0):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(
        4, 3, strides=2, kernel_initializer=keras.initializers.GlorotUniform(seed)
    )(x)
    x = keras.layers.Flatten()(x)
    embeddings = keras.layers.Dense(
        8, kernel_initializer=keras.initializers.GlorotUniform(seed + 1), name="embedding"
    )(x)
    backbone = keras.Model(inputs, embeddings, name="backbone")
    logits = keras.layers.Dense(8, kernel_initializer=keras.initializers.GlorotUniform(seed + 2))(
        backbone.output
    )
    training_model = keras.Model(backbone.input, logits)
    training_model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return backbone, training_model


def test_logs_history_csv_and_saves_best(data, tmp_path):
    train, (pair_images, issame) = data
    backbone, training_model = build_models()
    best_path = str(tmp_path / "best.keras")
    callback = VerificationCallback(
        {"synthetic": (pair_images, issame)},
        embedding_model=backbone,
        batch_size=16,
        save_best_path=best_path,
        verbose=0,
    )
    csv_path = tmp_path / "log.csv"
    history = training_model.fit(
        train.images.astype("float32"),
        train.labels,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[callback, keras.callbacks.CSVLogger(str(csv_path))],
    )
    for key in ("synthetic_accuracy", "synthetic_accuracy_std", "synthetic_val_at_far_1e-3"):
        assert len(history.history[key]) == 2
    # The logged numbers are the protocol's numbers for the backbone at that epoch.
    expected = verify(extract_embeddings(backbone, pair_images, verbose=False), issame)
    assert history.history["synthetic_accuracy"][-1] == pytest.approx(expected["accuracy"])
    assert callback.results[1]["synthetic"]["accuracy"] == history.history["synthetic_accuracy"][-1]
    assert 0.3 < expected["accuracy"] <= 1.0
    with open(csv_path) as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 and float(rows[1]["synthetic_accuracy"]) == pytest.approx(
        expected["accuracy"]
    )
    # The best embedding model was saved and reloads without custom objects.
    assert callback.best_epoch in (0, 1)
    restored = keras.saving.load_model(best_path)
    assert restored.output_shape == (None, 8)
    best = callback.results[callback.best_epoch]["synthetic"]["accuracy"]
    assert best == max(history.history["synthetic_accuracy"])


def test_every_n_epochs_bin_source_and_default_model(data, tmp_path):
    data_module = pytest.importorskip("keras_face.data")
    train, (pair_images, issame) = data
    path = str(tmp_path / "pairs.bin")
    data_module.write_bin(path, pair_images, issame, image_format="png", progress=False)
    backbone, training_model = build_models(seed=3)
    # Without embedding_model, the callback uses the model's `backbone` attribute.
    training_model.backbone = backbone
    callback = VerificationCallback(
        {"pairs": path, "memory": (pair_images, issame)},
        every_n_epochs=2,
        monitor="memory",
        verbose=0,
    )
    history = training_model.fit(
        train.images.astype("float32"),
        train.labels,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[callback],
    )
    assert math.isnan(history.history["pairs_accuracy"][0])
    assert not math.isnan(history.history["pairs_accuracy"][1])
    # PNG round trip is lossless: both sources give the same numbers.
    assert history.history["pairs_accuracy"][1] == history.history["memory_accuracy"][1]
    assert list(callback.results) == [1]


def test_argument_validation():
    with pytest.raises(ValueError, match="non-empty dict"):
        VerificationCallback({})
    with pytest.raises(ValueError, match="every_n_epochs=0"):
        VerificationCallback({"a": "a.bin"}, every_n_epochs=0)
    with pytest.raises(ValueError, match="monitor='b'"):
        VerificationCallback({"a": "a.bin"}, monitor="b")
    with pytest.raises(ValueError, match="save_best_path='best.h5'"):
        VerificationCallback({"a": "a.bin"}, save_best_path="best.h5")
    with pytest.raises(ValueError, match="a=int"):
        VerificationCallback({"a": 3})
