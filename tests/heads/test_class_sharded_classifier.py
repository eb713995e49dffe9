"""`keras_face.heads.ClassShardedClassifier`: the kernel split by classes over devices.

The 8-device checks run in a subprocess (`class_sharded_worker.py`, JAX on 8 simulated
CPU devices: `XLA_FLAGS` must be set before JAX starts); they run once, on the JAX
backend's pass over the heads. The per-shard sampling without a mesh (one shard after
the other) and the bad inputs run on every backend.
"""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import keras_face
from keras_face.heads import ClassShardedClassifier

WORKER = os.path.join(os.path.dirname(__file__), "class_sharded_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMBEDDING_DIM, NUM_CLASSES, BATCH = 24, 64, 16

jax_only = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="the 8-device worker runs on the JAX pass"
)


def arcface_loss(x, kernel, labels, classes, scale=64.0, margin=0.5):
    """float64 ArcFace (no fallback) softmax cross-entropy over the columns `classes`."""
    x = np.asarray(x, np.float64)
    w = np.asarray(kernel, np.float64)[:, classes]
    cosine = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0))
    targets = np.searchsorted(classes, labels)
    rows = np.arange(len(labels))
    logits = scale * cosine
    logits[rows, targets] = scale * np.cos(
        np.arccos(np.clip(cosine[rows, targets], -1, 1)) + margin
    )
    top = logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_sum - logits[rows, targets]))


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, WORKER], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


@jax_only
def test_kernel_and_momentum_are_split_by_classes(results):
    assert results["devices"] == 8
    assert results["kernel_spec"] == ["None", "model"]
    assert results["kernel_shards"] == [[EMBEDDING_DIM, NUM_CLASSES // 8]]
    assert results["momentum_spec"] == ["None", "model"]
    assert results["momentum_shards"] == [[EMBEDDING_DIM, NUM_CLASSES // 8]]


@jax_only
def test_sharded_step_equals_single_device_step(results):
    assert math.isclose(results["sharded_loss"], results["single_loss"], rel_tol=1e-5)
    # The step moved the kernel (by up to 0.08), identically to 1e-6.
    assert results["kernel_update"] > 1e-2
    assert results["kernel_difference"] < 1e-6


@jax_only
def test_compiled_step_never_gathers_the_kernel(results):
    kernel_shapes = {f"f32[{EMBEDDING_DIM},{NUM_CLASSES}]", f"f32[{NUM_CLASSES},{EMBEDDING_DIM}]"}
    # Nor the class-sharded (B, C) logits (here B x 8 S = B x C for the sampled step):
    # the softmax's max and sum-exp are all-reduced as (B,) vectors instead.
    logit_shapes = {f"f32[{BATCH},{NUM_CLASSES}]"}
    for key in ("all_gathers", "sampled_all_gathers"):
        assert not (kernel_shapes | logit_shapes) & set(results[key]), results[key]
    # The embeddings are gathered instead (arcface_torch's pattern).
    assert f"f32[{BATCH},{EMBEDDING_DIM}]" in results["all_gathers"]
    assert results["sampled_gradient_spec"] == ["None", "model"]


@jax_only
def test_per_shard_sampling_on_the_mesh(results):
    sampled = np.asarray(results["sampled"])
    labels = np.asarray(results["labels"])
    per_shard = NUM_CLASSES // 8
    for shard in range(8):
        positives = np.unique(labels[labels // per_shard == shard])
        in_shard = sampled[sampled // per_shard == shard]
        # int(0.25 * 8) = 2 per shard, more where the shard holds more positives.
        assert len(in_shard) == max(2, len(positives)), shard
        assert set(positives) <= set(in_shard)
    assert results["sampled_logits_shape"] == [BATCH, 8 * max(2, min(BATCH, per_shard))]
    # shard_map on the mesh and the shards one after the other: the same sample and step.
    assert results["shard_map"] == [False, True]
    assert results["sampled_equal_looped"]
    assert math.isclose(results["sampled_loss"], results["looped_loss"], rel_tol=1e-6)
    assert results["gradient_difference"] < 1e-6
    assert results["unsampled_gradient_max"] == 0.0
    assert results["sampled_gradient_max"] > 1e-3
    expected = arcface_loss(results["sampled_x"], results["sampled_kernel"], labels, sampled)
    assert math.isclose(results["sampled_loss"], expected, rel_tol=1e-5)


# --------------------------------------------------------------------------------------
# Without a mesh: every backend.
def test_shards_sampled_one_after_the_other():
    rng = np.random.default_rng(2)
    num_classes, shards = 40, 4
    x = rng.normal(size=(6, 12)).astype("float32")
    y = np.array([0, 1, 2, 13, 25, 39], np.int32)
    head = ClassShardedClassifier(
        keras_face.heads.CosFace(num_classes), sample_rate=0.3, num_shards=shards, seed=7
    )
    logits = ops.convert_to_numpy(head([x, y], training=True))
    # int(0.3 * 10) = 3 per shard; shard 0 holds three positives, shard 1 one, ...
    assert logits.shape == (6, shards * 6)
    sampled = head.sampled_classes
    counts = [int(np.sum(sampled // 10 == shard)) for shard in range(shards)]
    assert counts == [3, 3, 3, 3]
    assert set(y) <= set(sampled)
    # The sampled columns are the plain head's logits at those classes.
    full = ops.convert_to_numpy(head.head([x, y], training=True))
    columns = ops.convert_to_numpy(head.remap_labels(np.asarray(sampled, np.int32)))
    np.testing.assert_allclose(logits[:, columns], full[:, sampled], rtol=1e-5, atol=1e-4)
    padding = np.setdiff1d(np.arange(logits.shape[1]), columns)
    assert np.all(logits[:, padding] == -1e9)
    # A new step draws other negatives, the same positives.
    head([x, y], training=True)
    assert set(y) <= set(head.sampled_classes)
    assert not np.array_equal(head.sampled_classes, sampled)


def test_rate_one_is_the_head():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 8)).astype("float32")
    y = np.array([0, 3, 5, 7], np.int32)
    inner = keras_face.heads.ArcFace(8)
    head = ClassShardedClassifier(inner, num_shards=2)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(head([x, y], training=True)),
        ops.convert_to_numpy(inner([x, y], training=True)),
    )
    assert ops.convert_to_numpy(head.remap_labels(y)).tolist() == y.tolist()


def test_config_and_keras_round_trip(tmp_path):
    head = ClassShardedClassifier(
        keras_face.heads.CosFace(16, margin=0.3), sample_rate=0.5, num_shards=4, seed=11
    )
    inputs = keras.Input((8,))
    model = keras.Model(inputs, head(inputs))
    path = str(tmp_path / "sharded.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.layers[-1]
    assert isinstance(restored, ClassShardedClassifier)
    assert (restored.sample_rate, restored.num_shards, restored.seed) == (0.5, 4, 11)
    assert restored.head.margin == 0.3
    x = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_shards": 8}, "num_classes=60 with num_shards=8"),
        ({"num_shards": 0}, "num_shards=0"),
        ({"sample_rate": 1.5}, "sample_rate=1.5"),
        ({"sample_rate": float("nan")}, "sample_rate=nan"),
        ({"sample_rate": 0.01, "num_shards": 2}, "sample_rate=0.01"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ClassShardedClassifier(keras_face.heads.ArcFace(60), **kwargs)


def test_mesh_must_divide_the_classes():
    # Checked before any mesh is made (so on every backend).
    with pytest.raises(ValueError, match="num_classes=7 with 2 devices"):
        ClassShardedClassifier.model_parallel(7, devices=["cpu:0", "cpu:1"])


def test_sampling_needs_a_stateless_head():
    head = ClassShardedClassifier(keras_face.heads.CurricularFace(8), sample_rate=0.5, num_shards=2)
    with pytest.raises(ValueError, match="CurricularFace with sample_rate=0.5"):
        head.build([(None, 4), (None,)])


def test_not_a_head_is_rejected():
    with pytest.raises(ValueError, match="Dense"):
        ClassShardedClassifier(keras.layers.Dense(3))
