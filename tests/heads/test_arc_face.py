import math

import keras
import numpy as np
import pytest

from keras_face.heads import ArcFace
from keras_face.heads.base import ARC_FALLBACKS, GRADIENT_MODES
from tests.heads import edge_cases
from tests.heads import numpy_reference as ref
from tests.heads.gradients import layer_gradients
from tests.layer_testing import run_layer_test

SCALE, MARGIN = 64.0, 0.5
# Rows whose gradient is compared with central differences: away from |c| = 1 and from
# the fallback threshold, where the target is smooth (the others are checked for
# finiteness only).
SMOOTH_ROWS = ("at 10.0 deg", "at 60.0 deg", "at 120.0 deg", "at 160.0 deg", "random")


def smooth_rows(cases):
    return [i for i, d in enumerate(cases.descriptions) if any(k in d for k in SMOOTH_ROWS)]


def numpy_logits(cases, fallback):
    cosines = ref.cosine_matrix(cases.embeddings, cases.kernel)
    return cosines, lambda c: ref.arc_face(c, cases.labels, SCALE, MARGIN, fallback)


def layer_outputs(layer, cases, training):
    out = layer([cases.embeddings, cases.labels], training=training)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    return keras.ops.convert_to_numpy(out)


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", ARC_FALLBACKS)
def test_matches_numpy_reference_on_edge_cases(fallback, gradient):
    cases = edge_cases.edge_cases()
    layer = edge_cases.set_kernel(ArcFace(5, fallback=fallback, gradient=gradient), cases.kernel)
    cosines, reference = numpy_logits(cases, fallback)
    ref.assert_matches_reference(layer_outputs(layer, cases, True), reference, cosines, SCALE)
    # Inference: plain s * cos, no margin.
    ref.assert_matches_reference(
        layer_outputs(layer, cases, False),
        lambda c: ref.plain(c, cases.labels, SCALE),
        cosines,
        SCALE,
    )


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", ARC_FALLBACKS)
def test_gradients_finite_and_match_central_differences(fallback, gradient):
    cases = edge_cases.edge_cases()
    layer = edge_cases.set_kernel(ArcFace(5, fallback=fallback, gradient=gradient), cases.kernel)
    weights = np.random.default_rng(0).normal(size=(len(cases.labels), 5))
    # Finite everywhere: |c| = 1, cosines rounding past +-1, zero, tiny and huge norms.
    grad_x, grad_vars = layer_gradients(layer, cases.embeddings, cases.labels, weights)
    assert np.all(np.isfinite(grad_x))
    assert np.all(np.isfinite(grad_vars[layer.kernel.path]))
    grad_x, grad_vars = layer_gradients(layer, cases.embeddings, cases.labels)  # CE loss
    assert np.all(np.isfinite(grad_x))
    assert np.all(np.isfinite(grad_vars[layer.kernel.path]))

    rows = smooth_rows(cases)
    labels = cases.labels[rows]
    if gradient == "detached":
        # Straight-through: the gradient of s * c for every column.
        function = lambda x, w: ref.plain(ref.cosine_matrix(x, w), labels, SCALE)  # noqa: E731
    else:
        function = lambda x, w: ref.arc_face(  # noqa: E731
            ref.cosine_matrix(x, w), labels, SCALE, MARGIN, fallback
        )
    expected_x, expected_kernel = ref.numerical_gradients(
        function, cases.embeddings, cases.kernel, weights, rows=rows
    )
    grad_x, grad_vars = layer_gradients(layer, cases.embeddings[rows], labels, weights[rows])
    ref.assert_gradients_close(grad_x, expected_x)
    ref.assert_gradients_close(grad_vars[layer.kernel.path], expected_kernel, axis=0)


def test_straight_through_gradient_differs_from_exact():
    # theta_y = 160 deg > pi - m: the exact `none` target gradient has the opposite
    # sign of the plain cosine's; the detached one is s * dc/dx.
    cases = edge_cases.edge_cases()
    row = [cases.descriptions.index("class 0 at 160.0 deg")]
    x, y = cases.embeddings[row], cases.labels[row]
    weights = np.zeros((1, 5))
    weights[0, 0] = 1.0  # d z_y / dx
    grads = {}
    for gradient in GRADIENT_MODES:
        layer = edge_cases.set_kernel(ArcFace(5, fallback="none", gradient=gradient), cases.kernel)
        grads[gradient] = layer_gradients(layer, x, y, weights)[0][0]
    # x = (cos 160, sin 160, 0...); dc/dx along e1 is -sin(160) * cos(160) < 0 ...
    plane = grads["detached"][:2]
    assert np.dot(plane, grads["exact"][:2]) < 0
    c = math.cos(math.radians(160.0))
    # |d phi / dc| = |cos m + c sin m / sin theta| for `none`.
    ratio = abs(math.cos(MARGIN) + c * math.sin(MARGIN) / math.sin(math.radians(160.0)))
    np.testing.assert_allclose(
        np.linalg.norm(grads["exact"]), ratio * np.linalg.norm(grads["detached"]), rtol=1e-4
    )


def test_fallback_values_from_the_spec():
    # Section 4.1: at theta = pi - m the `cosface` branch drops by 0.117295 (m = 0.5);
    # at theta = pi it is -1 - m sin m = -1.2397128 (times s).
    def target_at(degrees, fallback):
        layer = ArcFace(2, fallback=fallback, scale=1.0)
        layer.build([(None, 2), (None,)])
        layer.kernel.assign(np.array([[1.0, 0.0], [0.0, 1.0]], "float32"))
        angle = math.radians(degrees)
        x = np.array([[math.cos(angle), math.sin(angle)]], "float32")
        return float(keras.ops.convert_to_numpy(layer([x, np.array([0], "int32")], training=True))[0, 0])

    threshold = 180.0 - math.degrees(MARGIN)
    above = target_at(threshold - 1e-3, "cosface")
    below = target_at(threshold + 1e-3, "cosface")
    assert abs((above - below) - 0.117295) < 1e-3
    np.testing.assert_allclose(target_at(180.0, "cosface"), -1.2397128, atol=1e-6)
    np.testing.assert_allclose(target_at(180.0, "none"), -math.cos(MARGIN), atol=1e-6)
    np.testing.assert_allclose(target_at(180.0, "reflect"), -2.0 + math.cos(MARGIN), atol=1e-6)
    np.testing.assert_allclose(target_at(180.0, "clip"), -1.0, atol=1e-6)
    np.testing.assert_allclose(target_at(120.0, "easy"), -0.5, atol=1e-6)
    np.testing.assert_allclose(target_at(0.0, "cosface"), math.cos(MARGIN), atol=1e-7)


def test_reference_comparison_detects_the_epsilon_clamp_shift():
    # The tolerance is tight enough to see the spec's c_safe = 1 - 1e-7 clamp, which the
    # atan2 form of arccos avoids: at c = 1 it moves s cos(theta + m) by ~0.014.
    cases = edge_cases.edge_cases()
    cosines, reference = numpy_logits(cases, "cosface")
    clamped = reference(np.clip(cosines, -1 + 1e-7, 1 - 1e-7))
    with pytest.raises(AssertionError):
        ref.assert_matches_reference(clamped, reference, cosines, SCALE)


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    layer = run_layer_test(
        ArcFace,
        {"num_classes": 5, "scale": 32.0, "margin": 0.4, "fallback": "reflect", "gradient": "detached"},
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=True,
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
