import math

import numpy as np
import pytest

from keras_face.heads import CombinedMargin
from keras_face.heads.base import GRADIENT_MODES
from keras_face.heads.combined_margin import COMBINED_FALLBACKS
from tests.heads import checks
from tests.heads import edge_cases
from tests.heads import numpy_reference as ref
from tests.layer_testing import run_layer_test

SCALE = 64.0
# The authors' combined setting (insightface sample_config, the paper's CM1) and CM2,
# whose m1 * theta + m2 passes pi at 174.5 degrees (CM1: 162.8 degrees).
MARGINS = {"cm1": (1.0, 0.3, 0.2), "cm2": (0.9, 0.4, 0.15)}


def combined_reference(margins, fallback, gradient="exact"):
    if gradient == "detached":
        return lambda c, labels: ref.plain(c, labels, SCALE)
    m1, m2, m3 = margins
    return lambda c, labels: ref.combined_margin(c, labels, SCALE, m1, m2, m3, fallback)


def make(margins, fallback, gradient, kernel):
    m1, m2, m3 = margins
    layer = CombinedMargin(5, m1=m1, m2=m2, m3=m3, fallback=fallback, gradient=gradient)
    return edge_cases.set_kernel(layer, kernel)


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", COMBINED_FALLBACKS)
@pytest.mark.parametrize("setting", sorted(MARGINS))
def test_matches_numpy_reference_on_edge_cases(setting, fallback, gradient):
    cases = edge_cases.edge_cases()
    layer = make(MARGINS[setting], fallback, gradient, cases.kernel)
    checks.check_outputs(layer, cases, combined_reference(MARGINS[setting], fallback), SCALE)
    checks.check_outputs(
        layer, cases, combined_reference(None, None, "detached"), SCALE, training=False
    )


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", COMBINED_FALLBACKS)
def test_gradients_finite_and_match_central_differences(fallback, gradient):
    cases = edge_cases.edge_cases()
    layer = make(MARGINS["cm2"], fallback, gradient, cases.kernel)
    key = ("plain", SCALE) if gradient == "detached" else ("combined", fallback)
    checks.check_gradients(
        layer, cases, combined_reference(MARGINS["cm2"], fallback, gradient), cache_key=key
    )


def test_special_cases_are_cos_face_and_arc_face():
    cases = edge_cases.edge_cases()
    cos_face = make((1.0, 0.0, 0.35), "none", "exact", cases.kernel)
    checks.check_outputs(
        cos_face, cases, lambda c, labels: ref.cos_face(c, labels, SCALE, 0.35), SCALE
    )
    arc_face = make((1.0, 0.5, 0.0), "none", "exact", cases.kernel)
    checks.check_outputs(
        arc_face, cases, lambda c, labels: ref.arc_face(c, labels, SCALE, 0.5, "none"), SCALE
    )


def test_true_combination_not_insightface_shortcut():
    # insightface arcface_torch computes CosFace(m3) whenever m3 > 0; here the
    # default (1, 0.3, 0.2) at theta_y = 60 degrees is cos(60 deg + 0.3) - 0.2.
    cases = edge_cases.edge_cases()
    row = cases.descriptions.index("class 0 at 60.0 deg")
    layer = make(MARGINS["cm1"], "none", "exact", cases.kernel)
    out = checks.outputs(layer, cases.embeddings, cases.labels, True)[row, 0]
    np.testing.assert_allclose(out, SCALE * (math.cos(math.pi / 3 + 0.3) - 0.2), rtol=1e-6)
    assert abs(out - SCALE * (0.5 - 0.2)) > 5.0


def test_reflect_is_continuous_and_monotone_past_pi():
    cases = edge_cases.edge_cases()
    rows = [i for i, d in enumerate(cases.descriptions) if d.startswith("class 0 at")]
    angles = cases.target_angles[rows]
    targets = {}
    for fallback in COMBINED_FALLBACKS:
        layer = make(MARGINS["cm2"], fallback, "exact", cases.kernel)
        targets[fallback] = checks.outputs(layer, cases.embeddings, cases.labels, True)[rows, 0]
    assert np.all(np.diff(targets["reflect"]) < 0)  # strictly decreasing in theta
    assert np.all(np.diff(targets["clip"]) <= 1e-5)  # non-increasing (flat past pi)
    past = angles > math.degrees((math.pi - 0.4) / 0.9)
    assert past.sum() >= 3
    assert np.all(np.diff(targets["none"][past]) > 0)  # the reference turns back up


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    run_layer_test(
        CombinedMargin,
        {"num_classes": 5, "m1": 0.9, "m2": 0.4, "m3": 0.15, "fallback": "reflect"},
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=True,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="m1=0.0"):
        CombinedMargin(5, m1=0.0)
    with pytest.raises(ValueError, match="fallback='cosface'"):
        CombinedMargin(5, fallback="cosface")
