"""Every head trains: `model.fit` on separable clusters lowers the loss.

Parametrised over `keras_face.heads.names()`, so every registered head is included. The
same compiled model then checks that a label out of range inside the compiled training
step is an error naming it (the eager checks are in `test_bad_input.py`).
"""

import keras
import numpy as np
import pytest

import keras_face

NUM_CLASSES, INPUT_DIM, PER_CLASS = 4, 8, 32
# Per-head constructor arguments for this small problem (none needed so far).
FIT_KWARGS = {}


def clusters(seed=0):
    """Gaussian clusters around well-separated centres: a separable problem."""
    rng = np.random.default_rng(seed)
    centres = 4.0 * rng.normal(size=(NUM_CLASSES, INPUT_DIM))
    labels = np.repeat(np.arange(NUM_CLASSES), PER_CLASS)
    inputs = centres[labels] + rng.normal(size=(len(labels), INPUT_DIM))
    order = rng.permutation(len(labels))
    return inputs[order].astype("float32"), labels[order].astype("int32")


def training_cross_entropy(model, inputs, labels):
    """Mean cross-entropy of the training-mode logits (margins applied)."""
    logits = model([inputs, labels], training=True)
    loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return float(keras.ops.convert_to_numpy(keras.ops.mean(loss)))


@pytest.mark.parametrize("name", keras_face.heads.names())
def test_fit_lowers_the_loss_and_rejects_bad_labels(name):
    keras.utils.set_random_seed(0)
    inputs, labels = clusters()
    features = keras.Input((INPUT_DIM,), name="features")
    label_input = keras.Input((), dtype="int32", name="labels")
    embeddings = keras.layers.Dense(16, name="backbone")(features)
    head = keras_face.heads.get(name, NUM_CLASSES, **FIT_KWARGS.get(name, {}))
    model = keras.Model([features, label_input], head([embeddings, label_input]))
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = training_cross_entropy(model, inputs, labels)
    history = model.fit([inputs, labels], labels, epochs=4, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"])), history.history
    after = training_cross_entropy(model, inputs, labels)
    assert after < 0.5 * before, (before, after)
    # The trained model classifies the training set (inference: plain scaled cosine).
    logits = keras.ops.convert_to_numpy(model([inputs, labels], training=False))
    assert np.mean(np.argmax(logits, axis=1) == labels) > 0.9

    # A label out of range inside the compiled training step. TensorFlow: the graph's
    # Assert (InvalidArgumentError); JAX: the ValueError of a host callback, wrapped in
    # a JaxRuntimeError; PyTorch: the ValueError.
    bad = labels.copy()
    bad[5] = 9
    with pytest.raises(Exception, match=rf"num_classes={NUM_CLASSES}\b(.|\n)*9"):
        model.fit([inputs, bad], labels, epochs=1, batch_size=32, verbose=0)
