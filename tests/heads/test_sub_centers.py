"""`sub_centers=K` on every head: logits, gradients, config, `.keras` and mixed precision.

Each head, given K sub-centres per class, must compute exactly its own formula on the
class cosines `c_ij = max_k cos(x_i, w_(j,k))` (Sub-center ArcFace's rule, for every
head), with its state updated from those cosines. The references are the per-sample NumPy
re-implementations of `numpy_reference.py` / `stateful_reference.py`, fed with
`numpy_reference.sub_center_cosine_matrix`.
"""

import keras
import numpy as np
import pytest

from keras_face import heads
from tests.heads import edge_cases
from tests.heads import numpy_reference as ref
from tests.heads import stateful_reference as stateful
from tests.heads.gradients import head_gradients
from tests.heads.gradients import loss_weights
from tests.layer_testing import run_layer_test

K = 3
NUM_CLASSES = edge_cases.NUM_CLASSES
# Norms of the ordinary edge-case rows (MagFace's and AdaFace's margins depend on them).
NORMS = (5.0, 12.0, 20.0, 35.0, 60.0, 110.0, 150.0)


def _target(cosines, labels):
    return cosines[np.arange(len(labels)), labels]


# name: (class, constructor arguments, reference(cosines, labels, norms) -> logits,
#        per-row logit scale for the tolerance (None: the constant `scale`)).
def _sphere(c, y, norms):
    return stateful.sphere_face(c, y, norms, iteration=1)


def _curricular(c, y, norms):
    return stateful.curricular_face(c, y, stateful.curricular_face_t(_target(c, y), 0.0))


def _ada(c, y, norms):
    mean, std = stateful.ada_face_state(norms, 20.0, 100.0)
    return stateful.ada_face(c, y, norms, mean, std)


HEADS = {
    "normface": (heads.NormFace, {}, lambda c, y, n: ref.plain(c, y, 10.0), 10.0),
    "cosface": (heads.CosFace, {}, lambda c, y, n: ref.cos_face(c, y, 64.0, 0.35), 64.0),
    "arcface": (
        heads.ArcFace,
        {"fallback": "reflect"},
        lambda c, y, n: ref.arc_face(c, y, 64.0, 0.5, "reflect"),
        64.0,
    ),
    "combinedmargin": (
        heads.CombinedMargin,
        {},
        lambda c, y, n: ref.combined_margin(c, y, 64.0, 1.0, 0.3, 0.2, "none"),
        64.0,
    ),
    "elasticarcface": (
        heads.ElasticArcFace,
        {"margin_std": 0.0},
        lambda c, y, n: ref.arc_face(c, y, 64.0, 0.5, "none"),
        64.0,
    ),
    "elasticcosface": (
        heads.ElasticCosFace,
        {"margin_std": 0.0},
        lambda c, y, n: ref.cos_face(c, y, 64.0, 0.35),
        64.0,
    ),
    "sphereface": (heads.SphereFace, {}, _sphere, None),
    "curricularface": (heads.CurricularFace, {}, _curricular, 64.0),
    "magface": (heads.MagFace, {}, lambda c, y, n: stateful.mag_face(c, y, n), 64.0),
    "adaface": (heads.AdaFace, {}, _ada, 64.0),
}
# Constructor arguments of the battery (small batches, the defaults' checks hold).
BATTERY = {"magface": {"scale": 32.0, "lambda_g": 20.0, "easy_margin": False}}
STATE = {"sphereface": 1, "curricularface": 1, "adaface": 2}


def _batch():
    """Edge cases with sub-centre kernels; ordinary rows rescaled to `NORMS`."""
    # MagFace's easy margin switches at c = 0 (90 degrees): keep away from it.
    cases = edge_cases.edge_cases(exclude_near_degrees=(90.0,))
    kernel = edge_cases.sub_center_kernel(cases.kernel, K)
    embeddings = stateful.with_norms(cases.embeddings, NORMS, cases.kernel, cases.labels)
    return embeddings, cases.labels, kernel


def _head(name, **kwargs):
    head_cls, init_kwargs, _, _ = HEADS[name]
    return head_cls(NUM_CLASSES, sub_centers=K, **init_kwargs, **kwargs)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_training_logits_match_per_sample_reference(name):
    _, _, reference, scale = HEADS[name]
    embeddings, labels, kernel = _batch()
    head = edge_cases.set_kernel(_head(name), kernel)
    assert tuple(head.kernel.shape) == (edge_cases.EMBEDDING_DIM, NUM_CLASSES * K)
    norms = stateful.embedding_norms(embeddings)
    cosines = ref.sub_center_cosine_matrix(embeddings, kernel, K)
    logits = keras.ops.convert_to_numpy(head([embeddings, labels], training=True))
    row_scale = norms[:, None] if scale is None else scale
    ref.assert_matches_reference(
        logits,
        lambda c: reference(c, labels, norms),
        cosines,
        64.0 if scale is None else scale,
        atol=1e-6 * row_scale,
    )
    # Inference: the plain scaled class cosines, the same maximum over sub-centres.
    plain = keras.ops.convert_to_numpy(head([embeddings, labels], training=False))
    np.testing.assert_allclose(plain, row_scale * cosines, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_only_the_closest_sub_centres_get_gradients(name):
    embeddings, labels, kernel = _batch()
    head = edge_cases.set_kernel(_head(name), kernel)
    grads = head_gradients(head, embeddings, labels, loss_weights(len(labels), NUM_CLASSES, seed=3))
    assert np.all(np.isfinite(grads.embeddings))
    for path, value in grads.variables.items():
        assert np.all(np.isfinite(value)), path
    nonzero = stateful.embedding_norms(embeddings) > 0
    closest = ref.closest_sub_centers(embeddings[nonzero], kernel, K)
    used = np.zeros((NUM_CLASSES, K), bool)
    for j in range(NUM_CLASSES):
        used[j, closest[:, j]] = True
    column_norms = np.linalg.norm(grads.kernel.astype(np.float64), axis=0).reshape(NUM_CLASSES, K)
    assert np.all(column_norms[~used] == 0.0), column_norms
    assert np.count_nonzero(column_norms[used]) >= used.sum() - 1


@pytest.mark.parametrize("name", sorted(HEADS))
def test_layer_battery_with_sub_centers(name):
    head_cls, init_kwargs, _, _ = HEADS[name]
    rng = np.random.default_rng(0)
    embeddings = (15 * rng.normal(size=(8, 16))).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=(8,)).astype("int32")
    kwargs = {"num_classes": NUM_CLASSES, "sub_centers": 2, **init_kwargs}
    kwargs.update(BATTERY.get(name, {}))
    layer = run_layer_test(
        head_cls,
        kwargs,
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, NUM_CLASSES),
        # Stateful and random heads: compared calls must not move the state.
        training_for_outputs=name not in STATE and "elastic" not in name,
        mixed_precision_atol=1e-4 * 64,
        expected_num_trainable_weights=2 if name == "normface" else 1,
        expected_num_non_trainable_weights=STATE.get(name, 0),
    )
    assert tuple(layer.kernel.shape) == (16, NUM_CLASSES * 2)
    assert layer.get_config()["sub_centers"] == 2
    assert head_cls.from_config(layer.get_config()).sub_centers == 2


def test_sub_center_arc_face_is_arc_face_with_sub_centers():
    embeddings, labels, kernel = _batch()
    familiar = edge_cases.set_kernel(heads.SubCenterArcFace(NUM_CLASSES, sub_centers=K), kernel)
    general = edge_cases.set_kernel(heads.ArcFace(NUM_CLASSES, sub_centers=K), kernel)
    for training in (True, False):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(familiar([embeddings, labels], training=training)),
            keras.ops.convert_to_numpy(general([embeddings, labels], training=training)),
        )
    assert heads.SubCenterArcFace(NUM_CLASSES).sub_centers == 3  # the familiar default
    outliers = general.find_outliers(embeddings, labels)
    expected = familiar.find_outliers(embeddings, labels)
    np.testing.assert_array_equal(outliers.outlier_mask, expected.outlier_mask)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_bad_sub_centers_name_the_value(bad):
    with pytest.raises(ValueError, match=f"sub_centers={bad!r}"):
        heads.CosFace(NUM_CLASSES, sub_centers=bad)
