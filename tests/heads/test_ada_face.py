import keras
import numpy as np
import pytest

from keras_face.heads import AdaFace
from tests.heads import stateful_reference as ref
from tests.heads.edge_cases import edge_cases
from tests.heads.edge_cases import set_kernel
from tests.heads.gradients import head_gradients
from tests.heads.gradients import loss_weights
from tests.heads.numpy_reference import assert_matches_reference
from tests.heads.numpy_reference import cosine_matrix
from tests.heads.numpy_reference import numerical_gradients
from tests.layer_testing import run_layer_test

# Norms of the ordinary edge-case rows: around the initial mean 20, and beyond the clip.
NORMS = (5.0, 15.0, 20.0, 30.0, 60.0, 150.0)
# (constructor arguments, (batch_mean, batch_std) before the training call)
OPTIONS = {
    "defaults_initial_state": ({}, (20.0, 100.0)),
    # A converged-looking state: z-hat saturates at +-1 for the extreme norms.
    "defaults_tight_state": ({}, (25.0, 8.0)),
    "head_py_class_defaults": ({"t_alpha": 1.0}, (20.0, 100.0)),
    "m05_h1_s32": ({"margin": 0.5, "h": 1.0, "scale": 32.0}, (30.0, 10.0)),
}


def _reference_kwargs(kwargs):
    return {k: v for k, v in kwargs.items() if k in ("margin", "h", "scale")}


def _edge_batch():
    edge = edge_cases()
    return (
        ref.with_norms(edge.embeddings, NORMS, edge.kernel, edge.labels),
        edge.labels,
        edge.kernel,
    )


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = (10 * rng.normal(size=(8, 16))).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    kwargs = {"num_classes": 5, "margin": 0.5, "h": 0.5, "t_alpha": 0.1}
    run_layer_test(
        AdaFace,
        kwargs,
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=False,  # stateful: compared calls must not move the EMA,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=2,
    )
    ref.assert_mixed_precision_training_close(AdaFace, kwargs, embeddings, labels, atol=1e-4)


def _set_state(head, mean, std):
    head.batch_mean.assign(mean)
    head.batch_std.assign(std)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_edge_cases_match_reference_with_finite_gradients(option):
    kwargs, (mean, std) = OPTIONS[option]
    x, y, kernel = _edge_batch()
    head = set_kernel(AdaFace(kernel.shape[1], **kwargs), kernel)
    _set_state(head, mean, std)
    logits, d_embeddings, d_kernel = head_gradients(
        head, x, y, loss_weights(len(y), head.num_classes)
    )[:3]
    norms = ref.embedding_norms(x)
    mean, std = ref.ada_face_state(norms, mean, std, kwargs.get("t_alpha", 0.01))
    state = ref.state_values(head)
    np.testing.assert_allclose([state["batch_mean"], state["batch_std"]], [mean, std], rtol=1e-6)
    assert_matches_reference(
        logits,
        lambda c: ref.ada_face(c, y, norms, mean, std, **_reference_kwargs(kwargs)),
        cosine_matrix(x, kernel),
        kwargs.get("scale", 64.0),
    )
    assert np.all(np.isfinite(d_embeddings)) and np.all(np.isfinite(d_kernel))


def test_gradients_match_central_differences():
    # The norm is detached: the gradient flows through the cosines only, so the
    # reference differentiates with the norms (and the state) held fixed.
    x, y, kernel = _edge_batch()
    norms = ref.embedding_norms(x)
    ordinary = np.nonzero((norms > 1e-3) & (norms < 1e3))[0]
    weights = loss_weights(len(norms), kernel.shape[1])
    weights[np.setdiff1d(np.arange(len(norms)), ordinary)] = 0.0
    head = set_kernel(AdaFace(kernel.shape[1]), kernel)
    _set_state(head, 25.0, 8.0)
    _, d_embeddings, d_kernel = head_gradients(head, x, y, weights)[:3]
    state = ref.state_values(head)

    def function(embeddings, kernel_):
        return ref.ada_face(
            cosine_matrix(embeddings, kernel_),
            y[ordinary],
            norms[ordinary],
            state["batch_mean"],
            state["batch_std"],
        )

    expected_embeddings, expected_kernel = numerical_gradients(
        function, x, kernel, weights, rows=ordinary
    )
    for actual, expected in (
        (d_embeddings[ordinary], expected_embeddings),
        (d_kernel, expected_kernel),
    ):
        np.testing.assert_allclose(
            actual, expected, rtol=1e-3, atol=1e-4 * np.max(np.abs(expected))
        )


def test_batch_of_one_gives_a_finite_state():
    x, y = ref.random_batch(1, 4, 6, norm_range=(30.0, 30.0), seed=2)
    kernel = np.random.default_rng(0).normal(0, 0.01, (6, 4)).astype("float32")
    head = set_kernel(AdaFace(4), kernel)
    for step in range(1, 3):
        logits = keras.ops.convert_to_numpy(head([x, y], training=True))
        assert np.all(np.isfinite(logits))
        state = ref.state_values(head)
        # The std of one sample counts as 0 (the reference's torch.std is NaN forever).
        np.testing.assert_allclose(state["batch_std"], 100.0 * 0.99**step, rtol=1e-6)
        np.testing.assert_allclose(
            state["batch_mean"], 20.0 * 0.99**step + 30.0 * (1 - 0.99**step), rtol=1e-6
        )
    # Also in a compiled training step.
    inputs = [keras.Input((6,)), keras.Input((), dtype="int32")]
    model = keras.Model(inputs, head(inputs))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    assert np.isfinite(model.train_on_batch([x, y], y))
    assert all(np.isfinite(v) for v in ref.state_values(head).values())


def test_h_zero_is_cosface_with_clipped_cosines():
    x, y, kernel = _edge_batch()
    head = set_kernel(AdaFace(kernel.shape[1], h=0.0, margin=0.5), kernel)
    logits = keras.ops.convert_to_numpy(head([x, y], training=True))
    cosines = np.clip(cosine_matrix(x, kernel), -1 + 1e-3, 1 - 1e-3)
    expected = 64.0 * cosines
    expected[np.arange(len(y)), y] -= 64.0 * 0.5
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=64.0 * 2e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"t_alpha": 0.0}, "t_alpha"),
        ({"t_alpha": 2.0}, "t_alpha"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": 0.7}, "epsilon"),
        ({"h": -1.0}, "h"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        AdaFace(10, **kwargs)
