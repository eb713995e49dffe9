"""Heads saved before the classifier/margin split load into today's code unchanged.

`tests/heads/data/*.keras` were written by the heads at commit 82b8a65 (see
`data/make_saved_heads.py`), with their state moved off its initial value.
`saved_heads_logits_<backend>.npz` hold the logits of one inference and one training call
of the loaded heads, computed by the code of 82b8a65 on each backend. Loading the files
(as a model, and as weights into a model built now) must give the same weights at the
same paths and bit-identical logits (NormFace, whose learned scale is not a power of two:
within 1 ulp, see `_assert_same_logits`).
"""

import os

import keras
import numpy as np
import pytest

import keras_face
from keras_face import heads

DATA = os.path.join(os.path.dirname(__file__), "data")
SAVED = {
    "arc_face": (heads.ArcFace, {"margin": 0.4}, ["kernel"]),
    "sub_center_arc_face": (heads.SubCenterArcFace, {"sub_centers": 3}, ["kernel"]),
    "curricular_face": (heads.CurricularFace, {}, ["kernel", "t"]),
    "ada_face": (heads.AdaFace, {}, ["kernel", "batch_mean", "batch_std"]),
    "norm_face": (heads.NormFace, {}, ["kernel", "scale"]),
}
NUM_CLASSES, DIM = 7, 4


def _expected():
    backend = keras.backend.backend()
    return np.load(os.path.join(DATA, f"saved_heads_logits_{backend}.npz"))


def _logits(head, embeddings, labels, training):
    return keras.ops.convert_to_numpy(head([embeddings, labels], training=training))


def _assert_same_logits(actual, desired, name):
    if name == "norm_face":
        # Since the logit scale is folded into the column norms (`s * (c / ||w||)` became
        # `c * (s / ||w||)`), a scale that is not a power of two (NormFace's learned one)
        # may round a logit differently: by 1 ulp.
        np.testing.assert_array_max_ulp(actual, desired, maxulp=1)
    else:
        # s = 64: the folded scale rounds exactly as before.
        np.testing.assert_array_equal(actual, desired)


def _check(head, name, expected):
    embeddings, labels = expected["embeddings"], expected["labels"]
    # Inference first: the training call updates the state of stateful heads.
    _assert_same_logits(
        _logits(head, embeddings, labels, False), expected[f"{name}_inference"], name
    )
    _assert_same_logits(_logits(head, embeddings, labels, True), expected[f"{name}_training"], name)


@pytest.mark.parametrize("name", sorted(SAVED))
def test_old_keras_file_loads_with_identical_logits(name):
    head_cls, _, weight_names = SAVED[name]
    expected = _expected()
    model = keras.saving.load_model(os.path.join(DATA, f"{name}.keras"))
    head = model.layers[-1]
    assert type(head) is head_cls
    assert [w.path for w in head.weights] == [f"{name}/{w}" for w in weight_names]
    assert head.kernel.path == f"{name}/kernel"
    columns = NUM_CLASSES * head.sub_centers
    assert tuple(head.kernel.shape) == (DIM, columns)
    _check(head, name, expected)


@pytest.mark.parametrize("name", sorted(SAVED))
def test_old_weights_load_into_a_head_built_now(name):
    head_cls, kwargs, _ = SAVED[name]
    expected = _expected()
    embeddings = keras.Input((DIM,), name="embeddings")
    labels = keras.Input((), dtype="int32", name="labels")
    head = head_cls(NUM_CLASSES, name=name, **kwargs)
    model = keras.Model([embeddings, labels], head([embeddings, labels]))
    before = keras.ops.convert_to_numpy(head.kernel)
    model.load_weights(os.path.join(DATA, f"{name}.keras"))
    assert not np.array_equal(keras.ops.convert_to_numpy(head.kernel), before)
    _check(head, name, expected)


def test_saved_config_without_sub_centers_means_one():
    model = keras.saving.load_model(os.path.join(DATA, "arc_face.keras"))
    head = model.layers[-1]
    assert head.sub_centers == 1 and head.columns_per_class == 1
    assert head.get_config()["sub_centers"] == 1
    assert isinstance(head, keras_face.heads.CosineClassifier)
