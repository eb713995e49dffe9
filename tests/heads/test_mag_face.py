import math

import keras
import numpy as np
import pytest

from keras_face.heads import MagFace
from keras_face.heads.mag_face import magface_min_lambda_g
from tests.heads import stateful_reference as ref
from tests.heads.edge_cases import edge_cases
from tests.heads.edge_cases import set_kernel
from tests.heads.gradients import head_gradients
from tests.heads.gradients import loss_weights
from tests.heads.numpy_reference import assert_matches_reference
from tests.heads.numpy_reference import cosine_matrix
from tests.heads.numpy_reference import numerical_gradients
from tests.layer_testing import run_layer_test

# Norms of the ordinary edge-case rows: below l_a, at both bounds, inside, above u_a.
NORMS = (5.0, 10.0, 30.0, 60.0, 110.0, 200.0, 45.0)
MAG_COSFACE = {"variant": "cosface", "lower_margin": 0.35, "lambda_g": 150.0}
OPTIONS = {
    "authors_easy": {},
    "not_easy": {"easy_margin": False},
    "mag_cosface": MAG_COSFACE,
    "finetune_set": {
        "lower_norm": 1.0,
        "upper_norm": 51.0,
        "upper_margin": 1.0,
        "lambda_g": 5.0,
        "scale": 4.0,
    },
}


def _edge_batch():
    # Keep away from the easy margin's c = 0 switch (90 degrees): a discontinuity.
    edge = edge_cases(exclude_near_degrees=(90.0,))
    keep = (
        np.abs(
            cosine_matrix(edge.embeddings, edge.kernel)[np.arange(len(edge.labels)), edge.labels]
        )
        > 1e-6
    )
    keep |= ref.embedding_norms(edge.embeddings) == 0  # zero rows: c = 0 exactly
    labels = edge.labels[keep]
    return ref.with_norms(edge.embeddings[keep], NORMS, edge.kernel, labels), labels, edge.kernel


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = (15 * rng.normal(size=(8, 16))).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    run_layer_test(
        MagFace,
        {"num_classes": 5, "scale": 32.0, "lambda_g": 20.0, "easy_margin": False},
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=True,  # no state: training calls are repeatable,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_edge_cases_match_reference_with_finite_gradients(option):
    kwargs = OPTIONS[option]
    x, y, kernel = _edge_batch()
    cosines = cosine_matrix(x, kernel)
    norms = ref.embedding_norms(x)
    head = set_kernel(MagFace(kernel.shape[1], **kwargs), kernel)
    logits, d_embeddings, d_kernel = head_gradients(
        head, x, y, loss_weights(len(y), head.num_classes)
    )[:3]
    scale = kwargs.get("scale", 64.0)
    assert_matches_reference(logits, lambda c: ref.mag_face(c, y, norms, **kwargs), cosines, scale)
    assert np.all(np.isfinite(d_embeddings)) and np.all(np.isfinite(d_kernel))
    # The regulariser is added to the layer's losses on training calls with labels.
    head([x, y], training=True)
    assert len(head.losses) == 1
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(head.losses[0])),
        ref.mag_face_loss(norms, **kwargs),
        rtol=1e-5,
    )
    head([x, y], training=False)
    assert head.losses == []


@pytest.mark.parametrize("option", ["authors_easy", "not_easy"])
def test_gradients_match_central_differences(option):
    kwargs = OPTIONS[option]
    x, y, kernel = _edge_batch()
    cosines = cosine_matrix(x, kernel)
    targets = ref.target_cosines(cosines, y)
    norms = ref.embedding_norms(x)
    # Ordinary rows strictly inside a clip interval of the norm (the clip has a kink).
    rows = np.nonzero(
        (np.abs(targets) < 0.999)
        & (norms > 1e-3)
        & (norms < 1e3)
        & (np.abs(norms - 10.0) > 1e-3)
        & (np.abs(norms - 110.0) > 1e-3)
    )[0]
    weights = loss_weights(*cosines.shape)
    weights[np.setdiff1d(np.arange(len(norms)), rows)] = 0.0
    head = set_kernel(MagFace(kernel.shape[1], **kwargs), kernel)
    _, d_embeddings, d_kernel = head_gradients(head, x, y, weights)[:3]
    d_embeddings = d_embeddings[rows]

    def function(embeddings, kernel_):
        return ref.mag_face(
            cosine_matrix(embeddings, kernel_), y[rows], ref.embedding_norms(embeddings), **kwargs
        )

    expected_embeddings, expected_kernel = numerical_gradients(
        function, x, kernel, weights, rows=rows
    )
    # The regulariser: lambda_g / B * g'(a) x / ||x|| inside (l_a, u_a), else 0.
    a = norms[rows]
    inside = (a > 10.0) & (a < 110.0)
    g_prime = np.where(inside, 1.0 / 110.0**2 - 1.0 / a**2, 0.0)
    expected_embeddings += (35.0 / len(norms) * g_prime / a)[:, None] * x[rows]
    for actual, expected in ((d_embeddings, expected_embeddings), (d_kernel, expected_kernel)):
        np.testing.assert_allclose(
            actual, expected, rtol=1e-3, atol=1e-4 * np.max(np.abs(expected))
        )


def test_fit_adds_the_regularizer_to_the_loss():
    x, y = ref.random_batch(8, 5, 6, norm_range=(5.0, 150.0), seed=3)
    kernel = np.random.default_rng(1).normal(0, 0.01, (6, 5)).astype("float32")
    head = set_kernel(MagFace(5), kernel)
    inputs = [keras.Input((6,)), keras.Input((), dtype="int32")]
    model = keras.Model(inputs, head(inputs))
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    norms = ref.embedding_norms(x)
    logits = ref.mag_face(cosine_matrix(x, kernel), y, norms)
    plain = 64.0 * cosine_matrix(x, kernel)

    def cross_entropy(values):
        values = values - values.max(axis=1, keepdims=True)
        log_probs = values - np.log(np.exp(values).sum(axis=1, keepdims=True))
        return -np.mean(log_probs[np.arange(len(y)), y])

    train_loss = model.train_on_batch([x, y], y)
    np.testing.assert_allclose(
        train_loss, cross_entropy(logits) + ref.mag_face_loss(norms), rtol=1e-5
    )
    test_loss = model.evaluate([x, y], y, verbose=0)
    np.testing.assert_allclose(test_loss, cross_entropy(plain), rtol=1e-5)


def test_feasibility_bound():
    np.testing.assert_allclose(magface_min_lambda_g(64, 10, 110, 0.45, 0.8), 22.5867, rtol=1e-4)
    np.testing.assert_allclose(magface_min_lambda_g(64, 10, 110, 0.35, 0.8), 29.04, rtol=1e-3)
    with pytest.raises(ValueError) as error:
        MagFace(10, lambda_g=20)  # MagFace `run/trainer.py` argparse default
    message = str(error.value)
    assert "22.5867" in message and "feasibility bound" in message
    assert message.endswith("Received: lambda_g=20")
    with pytest.raises(ValueError, match=r"29\.04.*Received: lambda_g=29"):
        MagFace(10, variant="cosface", lower_margin=0.35, lambda_g=29)
    bound = magface_min_lambda_g(64, 10, 110, 0.45, 0.8)
    MagFace(10, lambda_g=bound)  # the bound itself is feasible
    MagFace(10, lambda_g=20, scale=32)  # bound scales with s: 11.29


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"lower_norm": 110.0, "upper_norm": 10.0}, "upper_norm"),
        ({"lower_margin": 0.9}, "upper_margin"),
        ({"variant": "sphere"}, "variant"),
        ({"easy_margin": 1}, "easy_margin"),
        ({"lower_norm": 0.0}, "lower_norm"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: .*{name}="):
        MagFace(10, **kwargs)


def test_margin_is_linear_in_the_clipped_norm():
    head = MagFace(3)
    norms = keras.ops.convert_to_tensor(np.array([1.0, 10.0, 60.0, 110.0, 500.0], "float32"))
    margins = keras.ops.convert_to_numpy(head.norm_margin(head.clipped_norm(norms)))
    np.testing.assert_allclose(margins, [0.45, 0.45, 0.625, 0.8, 0.8], rtol=1e-6)
    g = keras.ops.convert_to_numpy(head.norm_regularizer(head.clipped_norm(norms)))
    assert np.argmin(g) == 3 and math.isclose(g[3], 2 / 110, rel_tol=1e-6)
