"""Every head rejects bad input with a clear error, and handles batches of 1 and 0.

Parametrised over `keras_face.heads.names()`, so every registered head is included.
The out-of-range label inside a compiled `model.fit` step is checked by `test_fit.py`,
for every head, on the model it has just trained; every execution mode (graph, XLA, JAX
`jit`, unknown batch dimension) by `test_label_checks.py`.
"""

import keras
import numpy as np
import pytest

import keras_face

NUM_CLASSES, DIM = 5, 8
NAMES = keras_face.heads.names()


def head_for(name):
    return keras_face.heads.get(name, NUM_CLASSES)


def batch(size=4, seed=0):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(size, DIM)).astype("float32")
    labels = (np.arange(size) % NUM_CLASSES).astype("int32")
    return embeddings, labels


def assert_finite_state(head):
    for variable in head.non_trainable_variables + head.trainable_variables:
        value = keras.ops.convert_to_numpy(variable)
        if np.issubdtype(value.dtype, np.floating):
            assert np.all(np.isfinite(value)), variable.path


@pytest.mark.parametrize("bad", [NUM_CLASSES, 7, -1])
@pytest.mark.parametrize("name", NAMES)
def test_out_of_range_label_eager(name, bad):
    embeddings, labels = batch()
    labels[2] = bad
    with pytest.raises(ValueError, match=rf"num_classes={NUM_CLASSES}\b.*{bad}"):
        head_for(name)([embeddings, labels], training=True)


def fit_model(name, jit_compile="auto"):
    features = keras.Input((DIM,))
    label_input = keras.Input((), dtype="int32")
    model = keras.Model([features, label_input], head_for(name)([features, label_input]))
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


@pytest.mark.tf_only
def test_out_of_range_label_under_xla_is_counted_and_trains_nothing():
    # XLA drops the Assert; the head counts the label and stops the gradient of its row
    # (the loss is still NaN: TensorFlow's XLA cross-entropy; see test_label_checks.py).
    embeddings, labels = batch(8)
    bad = labels.copy()
    bad[5] = 9
    model = fit_model("arcface", jit_compile=True)
    good = model.fit([embeddings, labels], labels, batch_size=8, verbose=0).history["loss"][0]
    assert np.isfinite(good)
    loss = model.fit([embeddings, bad], labels, batch_size=8, verbose=0).history["loss"][0]
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(keras.ops.convert_to_numpy(w))) for w in model.weights)
    assert model.layers[-1].invalid_labels()[:2] == (1, 9)


@pytest.mark.parametrize("name", NAMES)
def test_float_labels(name):
    embeddings, labels = batch()
    with pytest.raises(ValueError, match="labels dtype=float32"):
        head_for(name)([embeddings, labels.astype("float32")], training=True)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_ranks_and_batch_sizes(name):
    embeddings, labels = batch()
    with pytest.raises(ValueError, match=r"rank 2.*shape=\(4, 2, 8\)"):
        head_for(name)([embeddings.reshape(4, 2, 4).repeat(2, axis=2), labels], training=True)
    head = head_for(name)
    with pytest.raises(ValueError, match=r"labels shape=\(4, 2\)"):
        head([embeddings, np.stack([labels, labels], axis=1)], training=True)
    with pytest.raises(ValueError, match=r"embeddings batch=4, labels batch=3"):
        head([embeddings, labels[:3]], training=True)


@pytest.mark.parametrize("name", NAMES)
def test_labels_of_shape_batch_by_one(name):
    embeddings, labels = batch()
    head = head_for(name)
    flat = keras.ops.convert_to_numpy(head([embeddings, labels], training=False))
    column = keras.ops.convert_to_numpy(head([embeddings, labels[:, None]], training=False))
    np.testing.assert_array_equal(flat, column)
    out = head([embeddings, labels[:, None]], training=True)
    assert tuple(out.shape) == (4, NUM_CLASSES)


@pytest.mark.parametrize("name", NAMES)
def test_batch_of_one(name):
    embeddings, labels = batch(1)
    head = head_for(name)
    for training in (True, False):
        out = keras.ops.convert_to_numpy(head([embeddings, labels], training=training))
        assert out.shape == (1, NUM_CLASSES)
        assert np.all(np.isfinite(out))
    assert_finite_state(head)


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name):
    embeddings, labels = batch(0)
    head = head_for(name)
    for training in (True, False):
        out = keras.ops.convert_to_numpy(head([embeddings, labels], training=training))
        assert out.shape == (0, NUM_CLASSES)
    assert_finite_state(head)
    # The head still works afterwards (no NaN left in its state).
    embeddings, labels = batch(4)
    out = head([embeddings, labels], training=True)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(out)))
