"""Degenerate hyper-parameters are rejected: angular margins past pi, a single class."""

import math

import keras
import numpy as np
import pytest

import keras_face
from keras_face import heads
from keras_face import training

ANGULAR = [
    (heads.ArcFace, "margin"),
    (heads.SubCenterArcFace, "margin"),
    (heads.CurricularFace, "margin"),
    (heads.ElasticArcFace, "margin"),
    (heads.CombinedMargin, "m2"),
    (heads.MagFace, "upper_margin"),
]
# MagFace's feasibility bound on lambda_g grows with the margin range.
EXTRA = {heads.MagFace: {"lambda_g": 1e4}}


@pytest.mark.parametrize("value", [math.pi, 4.0, 10.0])
@pytest.mark.parametrize("head_cls, argument", ANGULAR)
def test_angular_margin_past_pi_is_rejected(head_cls, argument, value):
    with pytest.raises(ValueError, match=rf"\[0, pi\).*Received: {argument}={value}$"):
        head_cls(10, **{argument: value}, **EXTRA.get(head_cls, {}))


@pytest.mark.parametrize("head_cls, argument", ANGULAR)
def test_angular_margin_just_below_pi_is_accepted(head_cls, argument):
    head = head_cls(10, **{argument: 3.1}, **EXTRA.get(head_cls, {}))
    assert getattr(head, argument) == 3.1


def test_margin_4_was_a_bonus():
    # Why: with m = 4 > pi, the "cosface" fallback c - m sin m adds 4 sin(4) ~ -3.03 to
    # the target cosine's penalty, i.e. a bonus of 3.03: the loss went to 0.
    assert 4.0 * math.sin(4.0) < -3.0


def test_cosine_margins_keep_their_range():
    # Margins that are not angles are not limited to pi (MagFace's Mag-CosFace too).
    assert heads.CosFace(10, margin=4.0).margin == 4.0
    assert heads.ElasticCosFace(10, margin=4.0).margin == 4.0
    assert heads.MagFace(10, upper_margin=4.0, variant="cosface", lambda_g=1e4).upper_margin == 4.0


@pytest.mark.parametrize("name", keras_face.heads.names())
def test_one_class_is_rejected_for_training_and_kept_as_a_probe(name):
    head = keras_face.heads.get(name, 1)
    embeddings = np.ones((2, 4), "float32")
    labels = np.zeros((2,), "int32")
    # A one-class head draws the target logit of a margin (the tutorials' curves)...
    logits = keras.ops.convert_to_numpy(head([embeddings, labels], training=True))
    assert logits.shape == (2, 1) and np.all(np.isfinite(logits))
    # ... but a training model over one class is refused: its loss is identically 0.
    if keras.backend.backend() == "tensorflow":
        image = keras.Input((4,))
        backbone = keras.Model(image, keras.layers.Dense(4)(image))
        with pytest.raises(ValueError, match=r"at least 2 classes.*Received: num_classes=1$"):
            training.FaceTrainingModel(backbone, keras_face.heads.get(name, 1))
