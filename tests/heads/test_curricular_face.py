import math

import keras
import numpy as np
import pytest

from keras_face.heads import CurricularFace
from tests.heads import stateful_reference as ref
from tests.heads.edge_cases import edge_cases
from tests.heads.edge_cases import set_kernel
from tests.heads.gradients import head_gradients
from tests.heads.gradients import loss_weights
from tests.heads.numpy_reference import assert_matches_reference
from tests.heads.numpy_reference import cosine_matrix
from tests.heads.numpy_reference import numerical_gradients
from tests.layer_testing import run_layer_test

# (constructor arguments, t before the training call)
OPTIONS = {
    "defaults_t0": ({}, 0.0),
    "defaults_t_half": ({}, 0.5),
    "m04_s30_alpha_half": ({"margin": 0.4, "scale": 30.0, "t_alpha": 0.5}, 0.2),
}


def _reference_kwargs(kwargs):
    return {k: v for k, v in kwargs.items() if k in ("margin", "scale")}


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    kwargs = {"num_classes": 5, "margin": 0.4, "scale": 32.0, "t_alpha": 0.05}
    run_layer_test(
        CurricularFace,
        kwargs,
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=False,  # stateful: compared calls must not move `t`,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=1,
    )
    ref.assert_mixed_precision_training_close(CurricularFace, kwargs, embeddings, labels, atol=1e-4)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_edge_cases_match_reference_with_finite_gradients(option):
    kwargs, t = OPTIONS[option]
    # 180 - 0.5 rad (and 0.4 rad) is the `cosface` fallback's threshold: keep away.
    margin = kwargs.get("margin", 0.5)
    edge = edge_cases(exclude_near_degrees=(180.0 - math.degrees(margin),))
    head = set_kernel(CurricularFace(edge.kernel.shape[1], **kwargs), edge.kernel)
    head.t.assign(t)
    logits, d_embeddings, d_kernel = head_gradients(
        head, edge.embeddings, edge.labels, loss_weights(len(edge.labels), head.num_classes)
    )[:3]
    cosines = cosine_matrix(edge.embeddings, edge.kernel)
    new_t = ref.curricular_face_t(
        ref.target_cosines(cosines, edge.labels), t, kwargs.get("t_alpha", 0.01)
    )
    np.testing.assert_allclose(float(head.t.value), new_t, rtol=1e-6, atol=1e-9)
    scale = kwargs.get("scale", 64.0)
    assert_matches_reference(
        logits,
        lambda c: ref.curricular_face(c, edge.labels, new_t, **_reference_kwargs(kwargs)),
        cosines,
        scale,
    )
    assert np.all(np.isfinite(d_embeddings)) and np.all(np.isfinite(d_kernel))


def test_gradients_match_central_differences():
    edge = edge_cases()
    cosines = cosine_matrix(edge.embeddings, edge.kernel)
    targets = ref.target_cosines(cosines, edge.labels)
    norms = ref.embedding_norms(edge.embeddings)
    # Ordinary rows: away from |c| = 1 (the clip's kink) and from extreme norms. The
    # other rows get zero weight, so the head sees the whole edge-case batch.
    rows = np.nonzero((np.abs(targets) < 0.999) & (norms > 1e-3) & (norms < 1e3))[0]
    weights = loss_weights(*cosines.shape)
    weights[np.setdiff1d(np.arange(len(norms)), rows)] = 0.0
    head = set_kernel(CurricularFace(edge.kernel.shape[1]), edge.kernel)
    head.t.assign(0.4)
    _, d_embeddings, d_kernel = head_gradients(head, edge.embeddings, edge.labels, weights)[:3]
    d_embeddings = d_embeddings[rows]
    t = float(head.t.value)  # t is a constant of the step (no gradient)

    def function(embeddings, kernel):
        return ref.curricular_face(cosine_matrix(embeddings, kernel), edge.labels[rows], t)

    expected_embeddings, expected_kernel = numerical_gradients(
        function, edge.embeddings, edge.kernel, weights, rows=rows
    )
    for actual, expected in ((d_embeddings, expected_embeddings), (d_kernel, expected_kernel)):
        np.testing.assert_allclose(
            actual, expected, rtol=1e-3, atol=1e-4 * np.max(np.abs(expected))
        )


def test_hardness_uses_the_raw_target_and_the_updated_t():
    # theta_y = 170 degrees > pi - m: raw cos(theta_y + m) = -0.9476 while the target
    # logit uses the fallback c_y - m sin m = -1.2245. A negative at c = -0.96 lies
    # between the two: easy for CurricularFace (raw), hard for a monotone target.
    def at(degrees):
        return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]

    theta_y = 170.0
    negatives = {1: math.degrees(math.acos(-0.96)), 2: math.degrees(math.acos(-0.9))}
    kernel = np.array([at(0.0), at(theta_y - negatives[1]), at(theta_y - negatives[2])]).T
    x = np.array([at(theta_y)], "float32")
    y = np.array([0], "int32")
    head = set_kernel(CurricularFace(3), kernel.astype("float32"))
    logits = keras.ops.convert_to_numpy(head([x, y], training=True))[0]
    c_y = math.cos(math.radians(theta_y))
    t = 0.01 * c_y  # t_0 = 0, updated before use
    np.testing.assert_allclose(float(head.t.value), t, rtol=1e-5)
    expected = [
        64 * (c_y - 0.5 * math.sin(0.5)),
        64 * -0.96,
        64 * -0.9 * (t - 0.9),
    ]
    np.testing.assert_allclose(logits, expected, rtol=2e-5)


@pytest.mark.parametrize("t_alpha", [0.0, 1.5, -0.1])
def test_t_alpha_must_be_in_unit_interval(t_alpha):
    with pytest.raises(ValueError, match="Received: t_alpha="):
        CurricularFace(3, t_alpha=t_alpha)
