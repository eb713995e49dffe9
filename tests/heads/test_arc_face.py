import math

import keras
import numpy as np
import pytest

from keras_face.heads import ArcFace
from keras_face.heads.base import ARC_FALLBACKS
from keras_face.heads.base import GRADIENT_MODES
from tests.heads import checks
from tests.heads import edge_cases
from tests.heads import numpy_reference as ref
from tests.heads.gradients import head_gradients
from tests.layer_testing import run_layer_test

SCALE, MARGIN = 64.0, 0.5


def arc_reference(fallback, gradient="exact"):
    if gradient == "detached":
        # Straight-through: the gradient of s * c for every column.
        return lambda c, labels: ref.plain(c, labels, SCALE)
    return lambda c, labels: ref.arc_face(c, labels, SCALE, MARGIN, fallback)


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", ARC_FALLBACKS)
def test_matches_numpy_reference_on_edge_cases(fallback, gradient):
    cases = edge_cases.edge_cases()
    layer = edge_cases.set_kernel(ArcFace(5, fallback=fallback, gradient=gradient), cases.kernel)
    checks.check_outputs(layer, cases, arc_reference(fallback), SCALE)
    # Inference: plain s * cos, no margin.
    checks.check_outputs(layer, cases, arc_reference(fallback, "detached"), SCALE, training=False)


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", ARC_FALLBACKS)
def test_gradients_finite_and_match_central_differences(fallback, gradient):
    cases = edge_cases.edge_cases()
    layer = edge_cases.set_kernel(ArcFace(5, fallback=fallback, gradient=gradient), cases.kernel)
    key = ("plain", SCALE) if gradient == "detached" else ("arcface", fallback)
    checks.check_gradients(layer, cases, arc_reference(fallback, gradient), cache_key=key)


def test_straight_through_gradient_differs_from_exact():
    # theta_y = 160 deg > pi - m: the exact `none` target has the opposite slope of the
    # plain cosine; the detached gradient is that of s * c.
    cases = edge_cases.edge_cases()
    row = cases.descriptions.index("class 0 at 160.0 deg")
    weights = np.zeros((len(cases.labels), 5))
    weights[row, 0] = 1.0  # the loss is z_y of that row
    grads = {}
    for gradient in GRADIENT_MODES:
        layer = edge_cases.set_kernel(ArcFace(5, fallback="none", gradient=gradient), cases.kernel)
        grads[gradient] = head_gradients(layer, cases.embeddings, cases.labels, weights).embeddings[
            row
        ]
    assert np.dot(grads["detached"], grads["exact"]) < 0
    c = math.cos(math.radians(160.0))
    # d cos(theta + m) / dc = cos m + c sin m / sin theta (negative here).
    slope = math.cos(MARGIN) + c * math.sin(MARGIN) / math.sin(math.radians(160.0))
    np.testing.assert_allclose(grads["exact"], slope * grads["detached"], rtol=1e-4, atol=1e-6)


def targets_at(angles_degrees, fallback, margin=MARGIN):
    """ArcFace target logits (s = 1) of unit embeddings at the given angles to class 0.

    Uses the edge-case batch's shapes (JAX compiles each new shape in eager mode).
    """
    cases = edge_cases.edge_cases()
    embeddings = cases.embeddings.copy()
    labels = cases.labels.copy()
    for row, degrees in enumerate(angles_degrees):
        angle = math.radians(degrees)
        embeddings[row] = 0.0
        embeddings[row, :2] = [math.cos(angle), math.sin(angle)]
        labels[row] = 0
    layer = ArcFace(5, scale=1.0, margin=margin, fallback=fallback)
    layer = edge_cases.set_kernel(layer, cases.kernel)
    out = keras.ops.convert_to_numpy(layer([embeddings, labels], training=True))
    return out[: len(angles_degrees), 0].astype(np.float64)


def test_fallback_values_from_the_spec():
    # Section 4.1: at theta = pi - m the `cosface` target drops by 0.117295 (m = 0.5);
    # at theta = pi it is -1 - m sin m = -1.2397128.
    threshold = 180.0 - math.degrees(MARGIN)
    angles = [threshold - 1e-3, threshold + 1e-3, 180.0, 120.0, 0.0]
    cosface = targets_at(angles, "cosface")
    assert abs((cosface[0] - cosface[1]) - 0.117295) < 1e-4
    np.testing.assert_allclose(cosface[2], -1.2397128, atol=1e-6)
    np.testing.assert_allclose(cosface[4], math.cos(MARGIN), atol=1e-7)
    np.testing.assert_allclose(targets_at(angles, "none")[2], -math.cos(MARGIN), atol=1e-6)
    np.testing.assert_allclose(targets_at(angles, "reflect")[2], -2.0 + math.cos(MARGIN), atol=1e-6)
    np.testing.assert_allclose(targets_at(angles, "clip")[2], -1.0, atol=1e-6)
    np.testing.assert_allclose(targets_at(angles, "easy")[3], -0.5, atol=1e-6)
    # The drop for m = 0.4 and 0.3 (spec: 0.076828, 0.043993).
    for margin, drop in ((0.4, 0.076828), (0.3, 0.043993)):
        threshold = 180.0 - math.degrees(margin)
        values = targets_at([threshold - 1e-3, threshold + 1e-3], "cosface", margin)
        assert abs((values[0] - values[1]) - drop) < 1e-4


def test_reference_comparison_detects_the_epsilon_clamp_shift():
    # The tolerance is tight enough to see the spec's c_safe = 1 - 1e-7 clamp, which the
    # atan2 form of arccos avoids: at c = 1 it moves s cos(theta + m) by ~0.014.
    cases = edge_cases.edge_cases()
    cosines = ref.cosine_matrix(cases.embeddings, cases.kernel)
    reference = lambda c: ref.arc_face(c, cases.labels, SCALE, MARGIN, "cosface")  # noqa: E731
    clamped = reference(np.clip(cosines, -1 + 1e-7, 1 - 1e-7))
    with pytest.raises(AssertionError):
        ref.assert_matches_reference(clamped, reference, cosines, SCALE)


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    layer = run_layer_test(
        ArcFace,
        {
            "num_classes": 5,
            "scale": 32.0,
            "margin": 0.4,
            "fallback": "reflect",
            "gradient": "detached",
        },
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=True,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )
    assert layer.get_config()["fallback"] == "reflect"
    assert tuple(layer.kernel.shape) == (16, 5)


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="fallback='arc'"):
        ArcFace(5, fallback="arc")
    with pytest.raises(ValueError, match="gradient='stop'"):
        ArcFace(5, gradient="stop")
    with pytest.raises(ValueError, match="scale=-1.0"):
        ArcFace(5, scale=-1.0)
