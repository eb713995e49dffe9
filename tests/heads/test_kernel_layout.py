"""`kernel_layout="rows"`: the class centres stored `(C * K, D)`, the same head otherwise.

A head (or a `CosineClassifier`) with a class per row computes the same cosines, logits
and gradients as with a class per column, saves the `(D, C * K)` kernel so that either
layout loads the other's weights, and `PartialFC` trains it to the same kernel (on
TensorFlow through a row-sparse gradient).
"""

import keras
import numpy as np
import pytest

from keras_face import heads
from keras_face.training import L2SGD
from tests.heads.gradients import head_gradients
from tests.layer_testing import run_layer_test

NUM_CLASSES, DIM, BATCH = 12, 8, 6


def _data(columns=NUM_CLASSES):
    rng = np.random.default_rng(0)
    kernel = rng.normal(scale=0.3, size=(DIM, columns)).astype(np.float32)
    embeddings = rng.normal(size=(BATCH, DIM)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, BATCH).astype(np.int32)
    return kernel, embeddings, labels


def _pair(make):
    """The same head built twice, a class per column and a class per row, equal kernels."""
    columns, rows = make("columns"), make("rows")
    kernel, embeddings, labels = _data(NUM_CLASSES * columns.columns_per_class)
    columns.build([(None, DIM), (None,)])
    rows.build([(None, DIM), (None,)])
    columns.kernel.assign(kernel)
    rows.kernel.assign(kernel.T)
    return columns, rows, embeddings, labels


HEADS = {
    "arcface": lambda layout: heads.ArcFace(NUM_CLASSES, scale=16.0, kernel_layout=layout),
    "cosface": lambda layout: heads.CosFace(NUM_CLASSES, kernel_layout=layout),
    "sphereface": lambda layout: heads.SphereFace(NUM_CLASSES, kernel_layout=layout),
    "subcenter": lambda layout: heads.SubCenterArcFace(
        NUM_CLASSES, sub_centers=3, kernel_layout=layout
    ),
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_rows_layout_gives_the_same_logits_and_gradients(name):
    columns, rows, embeddings, labels = _pair(HEADS[name])
    assert tuple(rows.kernel.shape) == tuple(columns.kernel.shape)[::-1]
    expected = head_gradients(columns, embeddings, labels)
    got = head_gradients(rows, embeddings, labels)
    np.testing.assert_allclose(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.embeddings, expected.embeddings, rtol=1e-4, atol=1e-6)
    # The kernel gradient of a class per row is the transposed one.
    np.testing.assert_allclose(got.kernel.T, expected.kernel, rtol=1e-4, atol=1e-6)
    inference = [keras.ops.convert_to_tensor(embeddings), keras.ops.convert_to_tensor(labels)]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(rows(inference)),
        keras.ops.convert_to_numpy(columns(inference)),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_array_equal(rows.centre_rows(), columns.centre_rows())


def _model(head):
    inputs = keras.Input((DIM,))
    return keras.Model(inputs, head(inputs))


def test_weight_files_hold_the_columns_kernel_in_either_layout(tmp_path):
    columns, rows, embeddings, _ = _pair(HEADS["subcenter"])
    path = str(tmp_path / "rows.weights.h5")
    _model(rows).save_weights(path)
    # A fresh head of the other layout loads it, and the file holds (D, C * K).
    loaded = HEADS["subcenter"]("columns")
    _model(loaded).load_weights(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.kernel), columns.centre_rows().T
    )
    path = str(tmp_path / "columns.weights.h5")
    _model(columns).save_weights(path)
    loaded = HEADS["subcenter"]("rows")
    _model(loaded).load_weights(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.kernel), rows.centre_rows())
    x = keras.ops.convert_to_tensor(embeddings)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(rows(x)), rtol=1e-6
    )


def test_layer_battery_with_rows():
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=(8,)).astype("int32")
    layer = run_layer_test(
        heads.ArcFace,
        {"num_classes": NUM_CLASSES, "sub_centers": 2, "kernel_layout": "rows"},
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, NUM_CLASSES),
    )
    assert tuple(layer.kernel.shape) == (2 * NUM_CLASSES, 16)
    assert layer.get_config()["kernel_layout"] == "rows"


def test_partial_fc_trains_the_same_kernel_in_either_layout():
    # Three L2SGD steps of PartialFC (r = 0.4, 2 sub-centres): same losses, same kernel.
    rng = np.random.default_rng(5)
    kernel = rng.normal(scale=0.1, size=(DIM, 2 * 30)).astype(np.float32)
    x = rng.normal(size=(BATCH, DIM)).astype(np.float32)
    y = rng.integers(0, 30, BATCH).astype(np.int32)
    results = {}
    for layout in ("columns", "rows"):
        head = heads.PartialFC(
            heads.SubCenterArcFace(30, sub_centers=2), sample_rate=0.4, seed=2, kernel_layout=layout
        )
        inputs = [keras.Input((DIM,)), keras.Input((), dtype="int32")]
        model = keras.Model(inputs, head(inputs))
        head.head.kernel.assign(kernel if layout == "columns" else kernel.T)
        optimizer = L2SGD(0.1, momentum=0.9, l2=5e-4)
        optimizer.build(model.trainable_variables)
        losses = []
        for _ in range(3):
            losses.append(_train_step(model, head, optimizer, x, y))
        results[layout] = (np.array(losses), head.head.centre_rows(), head.sampled_classes)
    np.testing.assert_allclose(results["rows"][0], results["columns"][0], rtol=1e-5)
    # Rounding differs (a transposed product): within 1e-6 of the kernel's scale.
    scale = np.max(np.abs(results["columns"][1]))
    np.testing.assert_allclose(results["rows"][1], results["columns"][1], rtol=0, atol=1e-6 * scale)
    np.testing.assert_array_equal(results["rows"][2], results["columns"][2])
    assert not np.allclose(results["rows"][1], kernel.T, atol=1e-4)


def _train_step(model, head, optimizer, x, y):
    """One step: the sampled logits' cross-entropy, gradients, `optimizer.apply`."""
    backend = keras.backend.backend()
    inputs = [keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)]
    variables = model.trainable_variables

    def loss_of(logits, targets=None):
        targets = head.remap_labels(inputs[1]) if targets is None else targets
        return keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        )

    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(model(inputs, training=True))
        gradients = tape.gradient(loss, variables)
        if head.head.kernel_layout == "rows":
            # The gather of the sampled rows: a row-sparse gradient.
            assert isinstance(gradients[0], tf.IndexedSlices)
    elif backend == "jax":
        import jax

        table = next(
            i for i, v in enumerate(model.non_trainable_variables) if v is head.class_columns
        )

        def objective(values, non_trainable):
            logits, updated = model.stateless_call(values, non_trainable, inputs, training=True)
            # The columns of this call's sample (`remap_labels` reads the variable).
            targets = keras.ops.take(updated[table], inputs[1])
            return loss_of(logits, targets), updated

        values = [v.value for v in variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        (loss, updated), gradients = jax.value_and_grad(objective, has_aux=True)(
            values, non_trainable
        )
        for variable, value in zip(model.non_trainable_variables, updated):
            variable.assign(value)
    else:
        import torch

        model.zero_grad()
        loss = loss_of(model(inputs, training=True))
        loss.backward()
        gradients = [v.value.grad for v in variables]
        with torch.no_grad():
            optimizer.apply(gradients, variables)
        return float(keras.ops.convert_to_numpy(loss))
    optimizer.apply(gradients, variables)
    return float(keras.ops.convert_to_numpy(loss))


def test_bad_layout_and_sharded_classifier_refusal():
    with pytest.raises(ValueError, match="kernel_layout='diagonal'"):
        heads.ArcFace(10, kernel_layout="diagonal")
    with pytest.raises(ValueError, match="kernel_layout='row'"):
        heads.PartialFC(heads.ArcFace(10), kernel_layout="row")
    # A built head keeps its layout.
    head = heads.ArcFace(10)
    head.build([(None, DIM), (None,)])
    wrapped = heads.PartialFC(head, sample_rate=0.5)
    assert wrapped.head.kernel_layout == "columns" and wrapped.kernel_layout == "rows"
    assert heads.PartialFC(heads.ArcFace(10), sample_rate=0.5).head.kernel_layout == "rows"
    with pytest.raises(ValueError, match="kernel_layout='rows'"):
        heads.ClassShardedClassifier(heads.ArcFace(10, kernel_layout="rows"))
