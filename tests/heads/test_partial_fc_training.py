"""`PartialFC` in training: the model's loss and metrics, the optimizer, the config, replicas.

TensorFlow only (the training package): `FaceTrainingModel` remaps the labels of the
loss and metrics to the sampled columns, momentum SGD with L2 moves unsampled columns as
arcface_torch's v2 does, `head.partial_fc` in the config wraps the head, and 2
MirroredStrategy replicas equal 1 replica (in a subprocess, `partial_fc_mirrored_worker.py`).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_face import heads
from keras_face.errors import ConfigError
from keras_face.training import L2SGD
from keras_face.training import FaceTrainingModel
from keras_face.training import build_head
from keras_face.training import load_config

pytestmark = pytest.mark.tf_only

WORKER = os.path.join(os.path.dirname(__file__), "partial_fc_mirrored_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIM, NUM_CLASSES = 8, 40


def _model(head, optimizer):
    inputs = keras.Input((DIM,))
    backbone = keras.Model(inputs, keras.layers.Dense(DIM, name="projection")(inputs))
    model = FaceTrainingModel(backbone, head)
    model.compile(optimizer=optimizer)
    return model


def _cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def test_loss_and_accuracy_use_the_sampled_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, DIM)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=12).astype(np.int32)
    head = heads.PartialFC(heads.ArcFace(NUM_CLASSES, scale=16.0), sample_rate=0.25, seed=2)
    model = _model(head, keras.optimizers.SGD(0.0))
    logs = model.train_on_batch((x, y), y, return_dict=True)
    sampled = head.sampled_classes
    assert len(sampled) == max(10, len(np.unique(y)))  # all positives, budget 10
    embeddings = model.embedding_model(x)
    full = keras.ops.convert_to_numpy(head.head([embeddings, y], training=True))
    targets = np.searchsorted(sampled, y)
    expected_loss = _cross_entropy(full[:, sampled], targets)
    np.testing.assert_allclose(logs["loss"], expected_loss, rtol=1e-5)
    expected_accuracy = np.mean(np.argmax(full[:, sampled], axis=1) == targets)
    np.testing.assert_allclose(logs["accuracy"], expected_accuracy, rtol=1e-6)
    # Evaluation: the whole (batch, C) logits and the original labels.
    evaluation = model.evaluate((x, y), y, batch_size=12, verbose=0, return_dict=True)
    inference = keras.ops.convert_to_numpy(head.head([embeddings, y], training=False))
    np.testing.assert_allclose(evaluation["loss"], _cross_entropy(inference, y), rtol=1e-5)


@pytest.mark.parametrize("kernel_layout", ["rows", "columns"])
def test_unsampled_columns_decay_as_arcface_torch_v2(kernel_layout):
    # L2SGD(lr 0.1, momentum 0.9, l2 5e-4): a column sampled in neither of two steps is
    # scaled by (1 - lr l2)^2 - lr mu l2 = 0.99985500025 (spec §4 item 8); a column
    # sampled only in step 1 still moves in step 2 (momentum). With a class per row the
    # kernel gradient is row-sparse on TensorFlow: the same update.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, DIM)).astype(np.float32)
    y = np.array([1, 5, 9, 5], np.int32)
    head = heads.PartialFC(
        heads.ArcFace(NUM_CLASSES, scale=16.0),
        sample_rate=0.1,
        seed=3,
        kernel_layout=kernel_layout,
    )
    model = _model(head, L2SGD(0.1, momentum=0.9, l2=5e-4))
    initial = head.head.centre_rows().T
    model.train_on_batch((x, y), y)
    after_one = head.head.centre_rows().T
    first = head.sampled_classes
    model.train_on_batch((x, y), y)
    after_two = head.head.centre_rows().T
    second = head.sampled_classes
    assert len(first) == len(second) == 4
    never = np.setdiff1d(np.arange(NUM_CLASSES), np.concatenate([first, second]))
    assert len(never) >= NUM_CLASSES - 8
    np.testing.assert_allclose(after_two[:, never], 0.99985500025 * initial[:, never], rtol=2e-7)
    only_first = np.setdiff1d(first, second)
    assert len(only_first) > 0
    decayed = after_one[:, only_first] * (0.99985500025 / (1 - 0.1 * 5e-4))
    assert np.max(np.abs(after_two[:, only_first] - decayed)) > 1e-5
    # The positives were trained in both steps.
    assert set(np.unique(y)) <= set(first) & set(second)


def test_mixed_precision_fit_is_the_same_in_either_layout():
    # mixed_float16 (a LossScaleOptimizer around L2SGD) with global gradient clipping: the
    # row-sparse kernel gradient of a class per row is unscaled, clipped and applied as
    # the dense gradient of a class per column.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(16, DIM)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, 16).astype(np.int32)
    kernel = rng.normal(scale=0.01, size=(DIM, NUM_CLASSES)).astype(np.float32)
    results = {}
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        for layout in ("rows", "columns"):
            keras.utils.set_random_seed(0)
            head = heads.PartialFC(
                heads.ArcFace(NUM_CLASSES), sample_rate=0.3, seed=1, kernel_layout=layout
            )
            model = _model(head, L2SGD(0.1, momentum=0.9, l2=5e-4, global_clipnorm=5.0))
            head.head.kernel.assign(kernel if layout == "columns" else kernel.T)
            history = model.fit((x, y), y, batch_size=8, epochs=2, verbose=0)
            results[layout] = (history.history["loss"], head.head.centre_rows())
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    np.testing.assert_allclose(results["rows"][0], results["columns"][0], rtol=1e-5)
    np.testing.assert_allclose(results["rows"][1], results["columns"][1], rtol=1e-4, atol=1e-6)
    assert not np.allclose(results["rows"][1], kernel.T, atol=1e-5)


def test_config_wraps_the_head():
    # Two overrides of the nested mapping: the second keeps the first's sample_rate.
    config = load_config(None, ["head.partial_fc.sample_rate=0.3", "head.partial_fc.seed=4"])
    head = build_head(config, 300)
    assert isinstance(head, heads.PartialFC)
    assert isinstance(head.head, heads.ArcFace) and head.head.scale == 16.0
    assert head.num_sample == 90 and head.seed == 4
    assert not isinstance(build_head(load_config(), 300), heads.PartialFC)


@pytest.mark.parametrize(
    "override, message",
    [
        ("head.partial_fc.sample_rate=1.5", "head.partial_fc.sample_rate=1.5"),
        ("head.partial_fc.sample_rate=.nan", "head.partial_fc.sample_rate=nan"),
        ("head.partial_fc.rate=0.1", "head.partial_fc.rate"),
        ("head.partial_fc=0.1", "head.partial_fc=0.1"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, [override])


@pytest.fixture(scope="module")
def mirrored():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, WORKER], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = [line for line in completed.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(line)


def test_two_replicas_equal_one(mirrored):
    single, replicas = mirrored["single"], mirrored["mirrored"]
    assert single["step"] == replicas["step"] == 5
    assert single["sampled"] == replicas["sampled"]
    np.testing.assert_allclose(replicas["losses"], single["losses"], rtol=1e-6)
    assert replicas["max_weight_difference"] < 1e-5


def test_without_the_label_gather_replicas_break(mirrored):
    # Each replica sampling from its own half batch misses the other's positives.
    assert "label value of -1" in mirrored["local"].get("error", "")
