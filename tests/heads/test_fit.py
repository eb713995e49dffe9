"""Every head trains: `model.fit` on separable clusters lowers the loss.

Parametrised over `keras_face.heads.names()`, so every registered head is included.
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


@pytest.mark.parametrize("name", keras_face.heads.names())
def test_fit_lowers_the_loss(name):
    keras.utils.set_random_seed(0)
    inputs, labels = clusters()
    features = keras.Input((INPUT_DIM,), name="features")
    label_input = keras.Input((), dtype="int32", name="labels")
    embeddings = keras.layers.Dense(16, name="backbone")(features)
    head = keras_face.heads.get(name, NUM_CLASSES, **FIT_KWARGS.get(name, {}))
    model = keras.Model([features, label_input], head([embeddings, label_input]))
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit([inputs, labels], labels, epochs=8, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.5 * losses[0], losses
    # The trained model classifies the training set (inference: plain scaled cosine).
    logits = keras.ops.convert_to_numpy(model([inputs, labels], training=False))
    assert np.mean(np.argmax(logits, axis=1) == labels) > 0.9
