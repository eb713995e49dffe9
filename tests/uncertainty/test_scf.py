"""SCF head, training model and deployable model: layer contract, training, saving."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import scipy.stats
from keras import ops

from keras_face.heads import ArcFace
from keras_face.heads import SubCenterArcFace
from keras_face.models import apply_embedding_output
from keras_face.uncertainty import ClassCentreCosine
from keras_face.uncertainty import SCFTrainingModel
from keras_face.uncertainty import SphericalConfidenceHead
from keras_face.uncertainty import class_centres_from_head
from keras_face.uncertainty import feature_and_embedding_model
from keras_face.uncertainty import kappa_for_cosine
from keras_face.uncertainty import scf_pair_scores
from keras_face.uncertainty import target_cosine
from keras_face.uncertainty import vmf_mean_resultant
from tests.layer_testing import run_layer_test
from tests.training import training_testing


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def _conv_backbone(dim=16, size=8, name="tiny"):
    """A keras_face-style backbone: conv trunk, then `apply_embedding_output` ("embedding_*")."""
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(image)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv2")(x)
    embedding = apply_embedding_output(x, "GDC", embedding_size=dim)
    return keras.Model(image, embedding, name=name)


@pytest.mark.parametrize(
    "architecture, shape",
    [("mlp", (4, 2, 2, 8)), ("mlp", (4, 24)), ("conv", (4, 3, 3, 8))],
)
def test_head_layer_contract(architecture, shape):
    features = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    layer = run_layer_test(
        SphericalConfidenceHead,
        {"architecture": architecture, "initial_kappa": 50.0, "kappa_floor": 1e-6},
        [features],
        expected_output_shape=(4,),
        run_fit=False,
    )
    # The last layer starts at zero: every image starts at initial_kappa.
    np.testing.assert_allclose(_numpy(layer(features)), 50.0, rtol=1e-5)
    width = int(np.prod(shape[1:])) if architecture == "mlp" else 8
    assert [d.units for d in layer.hidden_layers] == [width // 2, width // 4]


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_head_mixed_precision(architecture):
    features = np.random.default_rng(1).normal(size=(6, 3, 3, 8)).astype(np.float32)
    config = {"architecture": architecture, "hidden_units": (16, 8), "initial_kappa": 200.0}
    reference = SphericalConfidenceHead(**config)
    reference(features)
    rng = np.random.default_rng(2)
    reference.set_weights(
        [
            # Batch-norm variances must stay positive.
            (np.abs(value) + 0.5 if "variance" in weight.path else value).astype(np.float32)
            for weight, value in zip(
                reference.weights,
                (rng.normal(0, 0.4, w.shape) for w in reference.get_weights()),
            )
        ]
    )
    expected = _numpy(reference(features))
    assert np.std(np.log(expected)) > 0.01  # a non-trivial output
    for policy in ("mixed_float16", "mixed_bfloat16"):
        mixed = SphericalConfidenceHead(**config, dtype=policy)
        mixed(features)
        mixed.set_weights(reference.get_weights())
        out = mixed(features)
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        # log kappa spans ~8 nats here; half precision keeps ~3 (fp16) or ~2 (bf16) digits.
        tolerance = 6e-2 if policy == "mixed_bfloat16" else 1e-2
        np.testing.assert_allclose(
            np.log(_numpy(out)), np.log(expected), atol=tolerance, err_msg=policy
        )


def test_head_bad_arguments():
    with pytest.raises(ValueError, match="architecture='resnet'"):
        SphericalConfidenceHead("resnet")
    with pytest.raises(ValueError, match="initial_kappa=0.0"):
        SphericalConfidenceHead(initial_kappa=0.0)
    with pytest.raises(ValueError, match="hidden_units=4"):
        SphericalConfidenceHead(hidden_units=4)
    with pytest.raises(ValueError, match="input shape"):
        SphericalConfidenceHead("conv")(np.zeros((2, 12), np.float32))


@pytest.mark.parametrize("kernel_layout", ["columns", "rows"])
@pytest.mark.parametrize("sub_centers", [1, 2])
def test_centres_from_head_give_the_head_cosine(sub_centers, kernel_layout):
    rng = np.random.default_rng(3)
    if sub_centers == 1:
        head = ArcFace(5, scale=1.0, kernel_layout=kernel_layout)
    else:
        head = SubCenterArcFace(5, scale=1.0, sub_centers=sub_centers, kernel_layout=kernel_layout)
    embeddings = rng.normal(size=(7, 16)).astype(np.float32)
    labels = rng.integers(0, 5, 7).astype(np.int32)
    cosines = _numpy(head(embeddings, training=False))  # s = 1: the class cosines
    centres = class_centres_from_head(head)
    assert centres.shape == (5, sub_centers, 16)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), 1.0, rtol=1e-6)
    expected = cosines[np.arange(7), labels]
    np.testing.assert_allclose(
        _numpy(target_cosine(embeddings, centres, labels)), expected, atol=1e-6
    )
    layer = ClassCentreCosine(5, 16, sub_centers)
    layer.build()
    layer.centres.assign(centres)
    np.testing.assert_allclose(_numpy(layer([embeddings, labels])), expected, atol=1e-6)
    with pytest.raises(ValueError, match="head="):
        class_centres_from_head(keras.layers.Dense(3))
    # Mixed precision: float16 embeddings in, float32 cosines out, same values.
    mixed = ClassCentreCosine(5, 16, sub_centers, dtype="mixed_float16")
    mixed.build()
    mixed.centres.assign(centres)
    out = mixed([embeddings.astype(np.float16), labels])
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(_numpy(out), expected, atol=2e-3)
    assert ClassCentreCosine.from_config(layer.get_config()).get_config() == layer.get_config()


def test_feature_map_lookup():
    backbone = _conv_backbone()
    features = feature_and_embedding_model(backbone)
    assert tuple(features.outputs[0].shape[1:]) == (2, 2, 16)
    named = feature_and_embedding_model(backbone, feature_layer="relu1")
    assert tuple(named.outputs[0].shape[1:]) == (4, 4, 8)
    plain_input = keras.Input((8,))
    plain = keras.Model(plain_input, keras.layers.Dense(16, name="fc")(plain_input), name="plain")
    with pytest.raises(ValueError, match="feature map of backbone 'plain'"):
        feature_and_embedding_model(plain)
    with pytest.raises(ValueError, match="feature_layer='nope'"):
        feature_and_embedding_model(backbone, feature_layer="nope")


def _quality_data(num_classes=8, per_class=64, dim=16, seed=0):
    """Embeddings `centre + sigma * noise`; quality = -sigma sets the cosine to the centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim))
    centres /= np.linalg.norm(centres, axis=-1, keepdims=True)
    labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
    sigma = rng.uniform(0.1, 1.5, labels.size)
    noise = rng.normal(size=(labels.size, dim)) / np.sqrt(dim)
    embeddings = (centres[labels] + sigma[:, None] * noise).astype(np.float32)
    return embeddings, labels, sigma, centres.astype(np.float32)


def _identity_backbone(dim=16):
    """Frozen backbone whose feature map (1x1xD) flattens to the embedding."""
    image = keras.Input((1, 1, dim), name="image")
    embedding = keras.layers.Flatten(name="embedding_flatten")(image)
    return keras.Model(image, embedding, name="identity")


def test_scf_training_makes_kappa_track_quality():
    """A few hundred steps on a frozen backbone: kappa rises with quality, towards kappa*."""
    keras.utils.set_random_seed(0)
    embeddings, labels, sigma, centres = _quality_data()
    dim = embeddings.shape[1]
    cosine = _numpy(target_cosine(embeddings, centres, labels))
    initial = float(_numpy(kappa_for_cosine(np.float32(cosine.mean()), dim)))
    head = SphericalConfidenceHead("mlp", hidden_units=(32, 16), initial_kappa=initial)
    model = SCFTrainingModel(_identity_backbone(dim), centres, head)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    images = embeddings[:, None, None, :]
    history = model.fit([images, labels], labels, batch_size=128, epochs=30, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert set(history.history) >= {"loss", "kappa", "cosine", "stationarity"}
    assert abs(history.history["stationarity"][-1]) < 0.05
    kappa = _numpy(model.predict([images, labels], verbose=0)["kappa"])
    rho = scipy.stats.spearmanr(kappa, -sigma).statistic
    assert rho > 0.75, rho  # the optimum kappa*(cos) itself reaches 0.87 on this data
    # kappa lands near the per-image optimum kappa*(cos): the loss is minimised per image.
    optimum = _numpy(kappa_for_cosine(cosine, dim))
    assert scipy.stats.spearmanr(kappa, optimum).statistic > 0.85
    positive = optimum > 0  # kappa* = 0 where cos <= 0
    assert np.median(np.abs(np.log(kappa[positive] / optimum[positive]))) < 0.5
    # Only the confidence head trains.
    assert len(model.trainable_weights) == len(head.trainable_weights) == 6


def test_scf_model_round_trips_and_deploys(tmp_path):
    keras.utils.set_random_seed(1)
    backbone = _conv_backbone()
    head = ArcFace(4, scale=16.0)
    rng = np.random.default_rng(4)
    images = rng.uniform(0, 1, size=(6, 8, 8, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 0, 1], np.int32)
    head([backbone(images), labels])  # build the head's kernel
    confidence = SphericalConfidenceHead("conv", hidden_units=(8, 4), initial_kappa=30.0)
    model = SCFTrainingModel(backbone, head, confidence)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    frozen = [np.array(w) for w in backbone.get_weights()]
    model.fit([images, labels], labels, epochs=2, batch_size=3, verbose=0)
    for before, after in zip(frozen, backbone.get_weights()):
        np.testing.assert_array_equal(before, after)  # the backbone (and its BN) is frozen
    assert {w.path for w in model.trainable_weights} == {
        w.path for w in confidence.trainable_weights
    }
    outputs = model.predict([images, labels], verbose=0)
    assert outputs["kappa"].shape == (6,) and outputs["cosine"].shape == (6,)
    path = os.path.join(tmp_path, "scf_training.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    again = loaded.predict([images, labels], verbose=0)
    np.testing.assert_array_equal(again["kappa"], outputs["kappa"])
    np.testing.assert_array_equal(again["cosine"], outputs["cosine"])

    deployable = model.confidence_model()
    result = deployable.predict(images, verbose=0)
    np.testing.assert_allclose(result["kappa"], outputs["kappa"], rtol=1e-6)
    np.testing.assert_allclose(result["embedding"], _numpy(backbone(images)), rtol=1e-5, atol=1e-6)
    path = os.path.join(tmp_path, "scf.keras")
    deployable.save(path)
    restored = keras.saving.load_model(path)
    reloaded = restored.predict(images, verbose=0)
    np.testing.assert_array_equal(reloaded["kappa"], result["kappa"])
    np.testing.assert_array_equal(reloaded["embedding"], result["embedding"])

    scores = scf_pair_scores(restored, images[:3], images[3:])
    expected_cos = np.sum(
        result["embedding"][:3]
        / np.linalg.norm(result["embedding"][:3], axis=-1, keepdims=True)
        * result["embedding"][3:]
        / np.linalg.norm(result["embedding"][3:], axis=-1, keepdims=True),
        axis=-1,
    )
    np.testing.assert_allclose(scores["cosine"], expected_cos, atol=1e-6)
    assert np.all(np.isfinite(scores["mutual_likelihood"]))
    np.testing.assert_array_equal(scores["kappa_a"], reloaded["kappa"][:3])


def test_precomputed_features_match_the_image_model():
    keras.utils.set_random_seed(2)
    backbone = _conv_backbone()
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 1, size=(5, 8, 8, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 0], np.int32)
    centres = rng.normal(size=(3, 16)).astype(np.float32)
    confidence = SphericalConfidenceHead("mlp", initial_kappa=20.0)
    on_images = SCFTrainingModel(backbone, centres, confidence)
    feature_maps, embeddings = feature_and_embedding_model(backbone).predict(images, verbose=0)
    on_features = SCFTrainingModel(None, centres, confidence, feature_shape=feature_maps.shape[1:])
    a = on_images.predict([images, labels], verbose=0)
    b = on_features.predict([feature_maps, embeddings, labels], verbose=0)
    np.testing.assert_allclose(b["kappa"], a["kappa"], rtol=1e-6)
    np.testing.assert_allclose(b["cosine"], a["cosine"], atol=1e-6)
    deployable = on_features.confidence_model(backbone)
    np.testing.assert_allclose(
        deployable.predict(images, verbose=0)["kappa"], a["kappa"], rtol=1e-6
    )


def test_training_model_bad_input():
    backbone = _conv_backbone()
    confidence = SphericalConfidenceHead()
    with pytest.raises(ValueError, match="dim=8"):
        SCFTrainingModel(None, np.ones((3, 8), np.float32), confidence, feature_shape=(4,))
    with pytest.raises(ValueError, match="feature_shape=None"):
        SCFTrainingModel(None, np.ones((3, 16), np.float32), confidence)
    with pytest.raises(ValueError, match="class_centres with 1 non-finite"):
        centres = np.ones((3, 16), np.float32)
        centres[1, 2] = np.nan
        SCFTrainingModel(backbone, centres, confidence)
    with pytest.raises(ValueError, match="dimension 32"):
        SCFTrainingModel(backbone, np.ones((3, 32), np.float32), confidence)
    model = SCFTrainingModel(backbone, np.ones((3, 16), np.float32), confidence)
    with pytest.raises(ValueError, match="loss="):
        model.compile(optimizer="adam", loss="mse")
    # The stationarity metric is the loss's derivative in kappa: A_d(kappa) - cos.
    assert float(_numpy(vmf_mean_resultant(np.float32(1e-3), 16))) == pytest.approx(
        1e-3 / 16, rel=1e-3
    )


def test_two_cpu_replicas_match_one(tmp_path):
    """Under MirroredStrategy the replicas' gradients are summed: each must give its share."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "replica_script.py")
    env = training_testing.script_environment()
    outputs = {}
    for replicas in (1, 2):
        path = tmp_path / f"{replicas}.npz"
        completed = subprocess.run(
            [sys.executable, script, str(replicas), os.fspath(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-4000:]
        with np.load(path) as data:
            outputs[replicas] = {key: data[key] for key in data.files}
    one, two = outputs[1], outputs[2]
    assert int(one["iterations"]) == int(two["iterations"]) == 4
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    # Equal weights after 4 steps (summed unscaled gradients would double every step).
    for key in one:
        if key.startswith("w"):
            np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6)
