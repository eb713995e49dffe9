import math

import keras
import numpy as np
import pytest

import keras_face
from keras_face.heads import ElasticArcFace
from keras_face.heads import ElasticCosFace
from keras_face.heads.base import ARC_FALLBACKS
from keras_face.heads.base import GRADIENT_MODES
from tests.heads import checks
from tests.heads import edge_cases
from tests.heads import numpy_reference as ref
from tests.layer_testing import run_layer_test

SCALE = 64.0


def fix_draws(layer, draws):
    """Replace the layer's N(m, sigma^2) draws by known values (the rest is unchanged)."""
    layer.draw_margins = lambda shape: keras.ops.convert_to_tensor(np.asarray(draws, "float32"))
    return layer


def draws_for(cases, mean, seed=0):
    return np.random.default_rng(seed).normal(mean, 0.05, size=len(cases.labels)).astype("float32")


def arc_reference(margins, fallback, gradient="exact"):
    if gradient == "detached":
        return lambda c, labels: ref.plain(c, labels, SCALE)
    return lambda c, labels: ref.elastic_arc_face(c, labels, SCALE, margins, fallback)


def cos_reference(margins):
    return lambda c, labels: ref.elastic_cos_face(c, labels, SCALE, margins)


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", ARC_FALLBACKS)
def test_arc_matches_numpy_reference_on_edge_cases(fallback, gradient):
    cases = edge_cases.edge_cases()
    draws = draws_for(cases, 0.5)
    layer = ElasticArcFace(5, fallback=fallback, gradient=gradient, seed=1)
    layer = fix_draws(edge_cases.set_kernel(layer, cases.kernel), draws)
    checks.check_outputs(layer, cases, arc_reference(draws.astype(np.float64), fallback), SCALE)
    checks.check_outputs(layer, cases, arc_reference(None, None, "detached"), SCALE, training=False)


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", ARC_FALLBACKS)
def test_arc_gradients_finite_and_match_central_differences(fallback, gradient):
    cases = edge_cases.edge_cases()
    draws = draws_for(cases, 0.5)
    layer = ElasticArcFace(5, fallback=fallback, gradient=gradient, seed=1)
    layer = fix_draws(edge_cases.set_kernel(layer, cases.kernel), draws)
    margins = draws.astype(np.float64)

    def reference(c, labels, rows):
        if gradient == "detached":
            return ref.plain(c, labels, SCALE)
        return ref.elastic_arc_face(c, labels, SCALE, margins[rows], fallback)

    checks.check_gradients(layer, cases, reference, pass_rows=True)


@pytest.mark.parametrize("plus", [False, True])
def test_cos_matches_numpy_reference_with_finite_gradients(plus):
    cases = edge_cases.edge_cases()
    # With plus, equal draws: the edge cases have cosines that tie in float32 but not
    # in float64, so the rank order is checked on separated cosines below.
    draws = np.full(len(cases.labels), 0.35, "float32") if plus else draws_for(cases, 0.35)
    layer = edge_cases.set_kernel(ElasticCosFace(5, plus=plus, seed=2), cases.kernel)
    layer = fix_draws(layer, draws)
    checks.check_outputs(layer, cases, cos_reference(draws.astype(np.float64)), SCALE)
    if plus:
        checks.check_gradients(layer, cases, cos_reference(np.full(100, 0.35)))


def test_arc_plus_on_edge_cases_has_finite_outputs_and_gradients():
    cases = edge_cases.edge_cases()
    draws = np.full(len(cases.labels), 0.5, "float32")
    layer = ElasticArcFace(5, plus=True, plus_reference_order=True, seed=2)
    layer = fix_draws(edge_cases.set_kernel(layer, cases.kernel), draws)
    checks.check_outputs(layer, cases, arc_reference(draws.astype(np.float64), "none"), SCALE)
    checks.check_gradients(
        layer, cases, arc_reference(np.full(100, 0.5), "none"), cache_key=("elastic-arc", 0.5)
    )


def separated_batch(seed=0, batch=12):
    """Shuffled embeddings with well-separated target cosines (no near ties)."""
    rng = np.random.default_rng(seed)
    angles = rng.permutation(np.linspace(5.0, 170.0, batch))
    embeddings = np.zeros((batch, 8), "float32")
    embeddings[:, 0] = np.cos(np.radians(angles))
    embeddings[:, 1] = np.sin(np.radians(angles))
    kernel = edge_cases.edge_cases().kernel
    return embeddings, np.zeros(batch, "int32"), kernel, np.cos(np.radians(angles))


@pytest.mark.parametrize("reference_order", [False, True])
def test_plus_assignment_matches_reference(reference_order):
    embeddings, labels, kernel, target_cosines = separated_batch()
    draws = np.random.default_rng(3).normal(0.35, 0.02, size=len(labels)).astype("float32")
    layer = ElasticCosFace(5, plus=True, plus_reference_order=reference_order, seed=0)
    layer = fix_draws(edge_cases.set_kernel(layer, kernel), draws)
    # The assignment itself, bit for bit (same float32 draws, only permuted).
    assigned = keras.ops.convert_to_numpy(
        layer.sample_margins(keras.ops.convert_to_tensor(target_cosines.astype("float32")))
    )
    expected = ref.elastic_plus_margins(draws, target_cosines, reference_order)
    np.testing.assert_array_equal(assigned, expected.astype("float32"))
    if reference_order:
        # ElasticFace's permutation bug: in a shuffled batch the least similar sample
        # does not get the largest margin.
        assert not np.all(np.diff(assigned[np.argsort(-target_cosines)]) >= 0)
    else:
        assert np.all(np.diff(assigned[np.argsort(-target_cosines)]) > 0)
    # And the logits.
    cosines = ref.cosine_matrix(embeddings, kernel)
    ref.assert_matches_reference(
        checks.outputs(layer, embeddings, labels, True),
        lambda c: ref.elastic_cos_face(c, labels, SCALE, expected),
        cosines,
        SCALE,
    )


def test_plus_reference_order_is_right_on_a_sorted_batch():
    # The reference's gather is correct when the batch is already sorted by c_y.
    target_cosines = np.linspace(0.9, -0.9, 7).astype("float32")
    draws = np.random.default_rng(4).normal(0.5, 0.05, size=7).astype("float32")
    margins = {}
    for reference_order in (False, True):
        layer = ElasticArcFace(5, plus=True, plus_reference_order=reference_order, seed=0)
        fix_draws(layer, draws)
        margins[reference_order] = keras.ops.convert_to_numpy(
            layer.sample_margins(keras.ops.convert_to_tensor(target_cosines))
        )
    np.testing.assert_array_equal(margins[False], margins[True])
    np.testing.assert_array_equal(margins[False], np.sort(draws))


def recovered_margins(layer, cases, calls):
    """Margins of `calls` training calls, recovered as c_y - z_y / s (ElasticCosFace)."""
    rows = np.arange(len(cases.labels))
    plain = checks.outputs(layer, cases.embeddings, cases.labels, False)[rows, cases.labels]
    margins = []
    for _ in range(calls):
        logits = checks.outputs(layer, cases.embeddings, cases.labels, True)
        margins.append((plain - logits[rows, cases.labels]) / SCALE)
    return np.stack(margins)


def test_margins_are_fresh_normal_draws_reproducible_by_seed():
    cases = edge_cases.edge_cases()
    layer = ElasticCosFace(5, margin=0.35, margin_std=0.05, seed=3)
    layer = edge_cases.set_kernel(layer, cases.kernel)
    margins = recovered_margins(layer, cases, 25)  # 25 x 41 samples
    assert abs(margins.mean() - 0.35) < 4 * 0.05 / math.sqrt(margins.size)
    assert abs(margins.std() - 0.05) < 0.004
    # Not clamped to [m - sigma, m + sigma] (the reference's clamp is commented out).
    assert np.mean(np.abs(margins - 0.35) > 0.05) > 0.25
    # Fresh every call, different across the batch.
    assert np.all(np.abs(np.diff(margins, axis=0)).max(axis=1) > 1e-3)
    assert np.all(margins.std(axis=1) > 0.02)
    # Same seed, same draws; another seed, other draws.
    same = edge_cases.set_kernel(ElasticCosFace(5, seed=3), cases.kernel)
    np.testing.assert_allclose(recovered_margins(same, cases, 2), margins[:2], atol=1e-6)
    other = edge_cases.set_kernel(ElasticCosFace(5, seed=4), cases.kernel)
    assert np.abs(recovered_margins(other, cases, 1) - margins[:1]).max() > 1e-3


def test_arc_and_cos_share_the_draws_and_inference_draws_nothing():
    cases = edge_cases.edge_cases()
    arc = edge_cases.set_kernel(ElasticArcFace(5, margin=0.5, seed=7), cases.kernel)
    cos = edge_cases.set_kernel(ElasticCosFace(5, margin=0.5, seed=7), cases.kernel)
    state = keras.ops.convert_to_numpy(arc.seed_generator.state).copy()
    inference = checks.outputs(arc, cases.embeddings, cases.labels, False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(arc.seed_generator.state), state)
    again = checks.outputs(arc, cases.embeddings, cases.labels, False)
    np.testing.assert_array_equal(inference, again)
    cos_margins = recovered_margins(cos, cases, 1)[0]
    logits = checks.outputs(arc, cases.embeddings, cases.labels, True)
    rows = [
        i
        for i, angle in enumerate(cases.target_angles)
        if 5.0 <= angle <= 120.0 and "norm" not in cases.descriptions[i]
    ]
    theta = np.radians(cases.target_angles[rows])
    arc_margins = np.arccos(logits[rows, cases.labels[rows]] / SCALE) - theta
    np.testing.assert_allclose(arc_margins, cos_margins[rows], atol=1e-4)


def test_empty_batch_with_plus():
    layer = ElasticArcFace(5, plus=True, seed=0)
    out = layer([np.zeros((0, 8), "float32"), np.zeros((0,), "int32")], training=True)
    assert tuple(out.shape) == (0, 5)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (ElasticArcFace, {"plus": True, "margin_std": 0.0175, "fallback": "cosface", "seed": 5}),
        (ElasticCosFace, {"plus": True, "plus_reference_order": True, "seed": 6}),
    ],
)
def test_layer_battery(cls, kwargs):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    layer = run_layer_test(
        cls,
        {"num_classes": 5, **kwargs},
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=False,  # training outputs are random,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )
    assert layer.get_config()["seed"] == kwargs["seed"]


def test_get_and_bad_arguments():
    head = keras_face.heads.get("ElasticArcFace", 10)
    config = head.get_config()
    assert (config["margin"], config["margin_std"], config["fallback"]) == (0.5, 0.05, "none")
    cos = keras_face.heads.get("elastic_cos_face", 10)
    assert (cos.margin, cos.margin_std, cos.plus) == (0.35, 0.05, False)
    with pytest.raises(ValueError, match="plus_reference_order=True"):
        ElasticCosFace(5, plus_reference_order=True)
    with pytest.raises(ValueError, match="margin_std=-0.1"):
        ElasticArcFace(5, margin_std=-0.1)
    with pytest.raises(ValueError, match="fallback='linear'"):
        ElasticArcFace(5, fallback="linear")
