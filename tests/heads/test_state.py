"""State of the stateful heads: update-then-use, training only, saved and restored.

SphereFace's iteration counter, CurricularFace's `t` and AdaFace's `batch_mean` /
`batch_std` are checked after 1, 2 and 3 training steps against the float64 references
(eagerly and through the compiled `train_on_batch`), left alone by inference, and
restored exactly by `.keras` save/load, `save_weights`/`load_weights` and
`keras.callbacks.BackupAndRestore`.
"""

import os

import keras
import numpy as np
import pytest

from keras_face.heads import AdaFace
from keras_face.heads import CurricularFace
from keras_face.heads import SphereFace
from tests.heads import stateful_reference as ref
from tests.heads.numpy_reference import assert_matches_reference
from tests.heads.numpy_reference import cosine_matrix
from tests.heads.stateful_reference import build_head
from tests.heads.stateful_reference import random_batch
from tests.heads.stateful_reference import state_values

NUM_CLASSES, DIM, BATCH = 5, 8, 8


# Each step: (embeddings, labels, kernel, state) -> (reference as a function of the
# cosine matrix, logit scale per row, new state). The state is updated before use.
def _sphere_step(x, y, kernel, state):
    iteration = state["iteration"] + 1
    norms = ref.embedding_norms(x)
    return (
        lambda c: ref.sphere_face(c, y, norms, iteration),
        norms[:, None],
        {"iteration": iteration},
    )


def _curricular_step(x, y, kernel, state):
    t = ref.curricular_face_t(ref.target_cosines(cosine_matrix(x, kernel), y), state["t"])
    return lambda c: ref.curricular_face(c, y, t), 64.0, {"t": t}


def _ada_step(x, y, kernel, state):
    norms = ref.embedding_norms(x)
    mean, std = ref.ada_face_state(norms, state["batch_mean"], state["batch_std"])
    return (
        lambda c: ref.ada_face(c, y, norms, mean, std),
        64.0,
        {"batch_mean": mean, "batch_std": std},
    )


# head class, initial state, reference step.
CASES = {
    "sphereface": (SphereFace, {"iteration": 0}, _sphere_step),
    "curricularface": (CurricularFace, {"t": 0.0}, _curricular_step),
    "adaface": (AdaFace, {"batch_mean": 20.0, "batch_std": 100.0}, _ada_step),
}


def _batches(steps=3):
    return [
        random_batch(BATCH, NUM_CLASSES, DIM, norm_range=(5.0, 60.0), seed=seed)
        for seed in range(steps)
    ]


def _kernel():
    return np.random.default_rng(42).normal(0, 0.01, (DIM, NUM_CLASSES)).astype("float32")


def _assert_state(head, expected, rtol=1e-5):
    actual = state_values(head)
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=rtol, atol=1e-8, err_msg=name)


def _model(head, learning_rate=0.0):
    embeddings = keras.Input((DIM,), name="embeddings")
    labels = keras.Input((), dtype="int32", name="labels")
    model = keras.Model([embeddings, labels], head([embeddings, labels]))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _cross_entropy(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_eager_steps_match_reference(name):
    head_cls, state, step = CASES[name]
    kernel = _kernel()
    head = build_head(head_cls, kernel)
    _assert_state(head, state)
    for x, y in _batches():
        reference, row_scale, state = step(x, y, kernel, state)
        logits = keras.ops.convert_to_numpy(head([x, y], training=True))
        cosines = cosine_matrix(x, kernel)
        assert_matches_reference(logits, reference, cosines, 64.0, atol=1e-6 * row_scale)
        _assert_state(head, state)
        # Inference leaves the state alone and applies no margin.
        before = state_values(head)
        plain = keras.ops.convert_to_numpy(head([x, y], training=False))
        keras.ops.convert_to_numpy(head(x, training=True))  # no labels: no margin
        assert state_values(head) == before
        np.testing.assert_allclose(plain, row_scale * cosines, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_steps_match_reference_and_restore(name, tmp_path):
    head_cls, state, step = CASES[name]
    kernel = _kernel()
    head = build_head(head_cls, kernel)
    model = _model(head)  # learning rate 0: the kernel stays, the state moves.
    batches = _batches()
    for x, y in batches[:2]:
        reference, _, state = step(x, y, kernel, state)
        loss = model.train_on_batch([x, y], y)
        expected = reference(cosine_matrix(x, kernel))
        np.testing.assert_allclose(loss, _cross_entropy(expected, y), rtol=1e-5)
        _assert_state(head, state)

    # Inference (predict, evaluate, a plain call) does not touch the state.
    before = state_values(head)
    model.predict([x, y], verbose=0)
    model.evaluate([x, y], y, verbose=0)
    model([x, y], training=False)
    assert state_values(head) == before

    # .keras round trip: state restored exactly; the next step is the same.
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    loaded_head = loaded.layers[-1]
    assert isinstance(loaded_head, head_cls)
    assert state_values(loaded_head) == state_values(head)
    x, y = batches[2]
    _, _, state = step(x, y, kernel, state)
    for m, h in ((model, head), (loaded, loaded_head)):
        m.train_on_batch([x, y], y)
        _assert_state(h, state)
    assert state_values(loaded_head) == state_values(head)

    # Checkpoint: save_weights / load_weights into a fresh model (initial state).
    weights_path = os.path.join(tmp_path, "checkpoint.weights.h5")
    model.save_weights(weights_path)
    fresh_head = build_head(head_cls, np.zeros_like(kernel))
    fresh = _model(fresh_head)
    assert state_values(fresh_head) != state_values(head)
    fresh.load_weights(weights_path)
    assert state_values(fresh_head) == state_values(head)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh_head.kernel.value), kernel)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted on purpose")


@pytest.mark.parametrize("name", sorted(CASES))
def test_backup_and_restore_resumes_state(name, tmp_path):
    head_cls = CASES[name][0]
    kernel = _kernel()
    x, y = random_batch(2 * BATCH, NUM_CLASSES, DIM, norm_range=(5.0, 60.0), seed=7)

    def fit(callbacks, perturbed=False):
        head = build_head(head_cls, kernel * 3.0 + 0.01 if perturbed else kernel)
        if perturbed:  # what the backup must overwrite
            for variable in head.non_trainable_variables:
                variable.assign(variable.value + 7)
        model = _model(head, learning_rate=0.1)
        history = model.fit(
            [x, y], y, batch_size=BATCH, epochs=4, shuffle=False, verbose=0, callbacks=callbacks
        )
        return model, head, len(history.epoch)

    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted on purpose"):
        fit([keras.callbacks.BackupAndRestore(backup), _Interrupt()])
    resumed, resumed_head, epochs_run = fit(
        [keras.callbacks.BackupAndRestore(backup)], perturbed=True
    )
    assert epochs_run == 2  # epochs 2 and 3, from the backup of epoch 1
    straight, straight_head, _ = fit([])
    expected = state_values(straight_head)
    if name == "sphereface":
        assert expected == {"iteration": 8}
    _assert_state(resumed_head, expected, rtol=1e-6)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
