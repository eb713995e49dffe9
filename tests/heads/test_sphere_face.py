import math

import keras
import numpy as np
import pytest

from keras_face.heads import SphereFace
from tests.heads import stateful_reference as ref
from tests.heads.edge_cases import edge_cases
from tests.heads.edge_cases import set_kernel
from tests.heads.gradients import head_gradients
from tests.heads.gradients import loss_weights
from tests.heads.numpy_reference import assert_matches_reference
from tests.heads.numpy_reference import cosine_matrix
from tests.heads.numpy_reference import numerical_gradients
from tests.layer_testing import run_layer_test

CLC_SCHEDULE = {"lambda_base": 1500.0, "lambda_gamma": 0.1}
# (constructor arguments, iteration counter before the training call)
OPTIONS = {
    "authors": ({}, 0),
    "clc_m2_annealed": ({"margin": 2, **CLC_SCHEDULE}, 5000),
    "normalized_m3": ({"margin": 3, "normalize_features": True, "scale": 30.0}, 10),
}


def _reference_kwargs(kwargs):
    names = {
        "lambda_base": "base",
        "lambda_gamma": "gamma",
        "lambda_power": "power",
        "lambda_min": "minimum",
    }
    return {names.get(k, k): v for k, v in kwargs.items()}


def _row_scale(kwargs, norms):
    return np.full_like(norms, kwargs["scale"]) if kwargs.get("normalize_features") else norms


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = (5 * rng.normal(size=(8, 16))).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    kwargs = {"num_classes": 5, "margin": 3, **CLC_SCHEDULE, "lambda_min": 2.0}
    run_layer_test(
        SphereFace,
        kwargs,
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=False,  # stateful: compared calls must not move the counter,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=1,
    )
    ref.assert_mixed_precision_training_close(SphereFace, kwargs, embeddings, labels, atol=1e-5)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_edge_cases_match_reference_with_finite_gradients(option):
    kwargs, iteration = OPTIONS[option]
    edge = edge_cases()
    head = set_kernel(SphereFace(edge.kernel.shape[1], **kwargs), edge.kernel)
    head.iteration = iteration
    logits, d_embeddings, d_kernel = head_gradients(
        head, edge.embeddings, edge.labels, loss_weights(len(edge.labels), head.num_classes)
    )[:3]
    assert head.iteration == iteration + 1
    norms = ref.embedding_norms(edge.embeddings)
    row_scale = _row_scale(kwargs, norms)[:, None]
    assert_matches_reference(
        logits,
        lambda c: ref.sphere_face(
            c, edge.labels, norms, iteration + 1, **_reference_kwargs(kwargs)
        ),
        cosine_matrix(edge.embeddings, edge.kernel),
        scale=1.0,
        atol=1e-6 * row_scale,
    )
    assert np.all(np.isfinite(d_embeddings)) and np.all(np.isfinite(d_kernel))


@pytest.mark.parametrize("option", ["authors", "normalized_m3"])
def test_gradients_match_central_differences(option):
    kwargs, iteration = OPTIONS[option]
    edge = edge_cases()
    cosines = cosine_matrix(edge.embeddings, edge.kernel)
    targets = ref.target_cosines(cosines, edge.labels)
    norms = ref.embedding_norms(edge.embeddings)
    # Ordinary rows: away from |c| = 1 (the clip's kink) and from extreme norms.
    # The other rows get zero weight, so the head sees the whole edge-case batch.
    rows = np.nonzero((np.abs(targets) < 0.999) & (norms > 1e-3) & (norms < 1e3))[0]
    weights = loss_weights(*cosines.shape)
    weights[np.setdiff1d(np.arange(len(norms)), rows)] = 0.0
    head = set_kernel(SphereFace(edge.kernel.shape[1], **kwargs), edge.kernel)
    head.iteration = iteration
    _, d_embeddings, d_kernel = head_gradients(head, edge.embeddings, edge.labels, weights)[:3]
    d_embeddings = d_embeddings[rows]

    def function(embeddings, kernel):
        return ref.sphere_face(
            cosine_matrix(embeddings, kernel),
            edge.labels[rows],
            ref.embedding_norms(embeddings),
            iteration + 1,
            **_reference_kwargs(kwargs),
        )

    expected_embeddings, expected_kernel = numerical_gradients(
        function, edge.embeddings, edge.kernel, weights, rows=rows
    )
    for actual, expected in ((d_embeddings, expected_embeddings), (d_kernel, expected_kernel)):
        np.testing.assert_allclose(
            actual, expected, rtol=1e-3, atol=1e-4 * np.max(np.abs(expected))
        )


def test_lambda_schedule_and_counter():
    head = SphereFace(4)
    assert head.iteration == 0  # unbuilt
    head.build([(None, 3), (None,)])
    expected_dtype = "int64"
    if keras.backend.backend() == "jax":
        import jax

        expected_dtype = "int64" if jax.config.jax_enable_x64 else "int32"
    assert keras.backend.standardize_dtype(head._iteration.dtype) == expected_dtype
    assert [v.name for v in head.non_trainable_weights] == ["iteration"]
    for iteration, expected in (
        (1, 1000 / 1.12),
        (1658, 1000 / (1 + 0.12 * 1658)),
        (1659, 5.0),
        (10**6, 5.0),
    ):
        head.iteration = iteration
        assert head.iteration == iteration
        np.testing.assert_allclose(float(head.current_lambda()), expected, rtol=1e-6)
    assert 1000 / (1 + 0.12 * 1658) > 5.0
    clc = SphereFace(4, **CLC_SCHEDULE)
    clc.build([(None, 3), (None,)])
    for iteration, expected in ((1, 1500 / 1.1), (2989, 1500 / (1 + 0.1 * 2989)), (2990, 5.0)):
        clc.iteration = iteration
        np.testing.assert_allclose(float(clc.current_lambda()), expected, rtol=1e-6)

    # Incremented before use, only when training with labels.
    head.iteration = 0
    x = np.ones((2, 3), "float32")
    y = np.array([0, 3], "int32")
    head([x, y], training=False)
    head(x, training=True)
    assert head.iteration == 0
    head([x, y], training=True)
    head([x, y], training=True)
    assert head.iteration == 2


@pytest.mark.parametrize("value", [-1, 2.5, True, "3"])
def test_iteration_setter_rejects(value):
    head = SphereFace(4)
    head.build([(None, 3), (None,)])
    with pytest.raises(ValueError, match="Received: iteration="):
        head.iteration = value


def test_iteration_setter_needs_built_head():
    with pytest.raises(ValueError, match="Build the head"):
        SphereFace(4).iteration = 3


def test_psi_is_monotone_from_1_to_minus_7():
    head = SphereFace(4)
    angles = np.linspace(0.0, math.pi, 721)
    cosines = np.cos(angles).astype("float32")
    cosines[0], cosines[-1] = 1.0, -1.0
    psi = keras.ops.convert_to_numpy(head.psi(keras.ops.convert_to_tensor(cosines)))
    assert psi[0] == 1.0 and psi[-1] == -7.0
    assert np.all(np.diff(psi) <= 1e-5)
    expected = [ref.sphere_face_psi(float(c), 4) for c in cosines.astype(np.float64)]
    np.testing.assert_allclose(psi, expected, atol=2e-5)


@pytest.mark.parametrize("margin", [4.5, 0, -2, True, "4"])
def test_margin_must_be_a_positive_integer(margin):
    with pytest.raises(ValueError, match="Received: margin="):
        SphereFace(3, margin=margin)


def test_integral_float_margin_is_accepted():
    head = SphereFace(3, margin=4.0)
    assert head.margin == 4 and isinstance(head.get_config()["margin"], int)
