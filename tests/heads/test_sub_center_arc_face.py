import math

import keras
import numpy as np
import pytest

import keras_face
from keras_face.heads import ArcFace
from keras_face.heads import SubCenterArcFace
from keras_face.heads.base import ARC_FALLBACKS
from keras_face.heads.base import GRADIENT_MODES
from tests.heads import checks
from tests.heads import edge_cases
from tests.heads import numpy_reference as ref
from tests.heads.gradients import head_gradients
from tests.layer_testing import run_layer_test

SCALE, MARGIN, K = 64.0, 0.5, 3


def sub_center_cosines(x, w):
    return ref.sub_center_cosine_matrix(x, w, K)


def sub_center_reference(fallback, gradient="exact"):
    if gradient == "detached":
        return lambda c, labels: ref.plain(c, labels, SCALE)
    return lambda c, labels: ref.arc_face(c, labels, SCALE, MARGIN, fallback)


def make(fallback, gradient, cases, sub_centers=K):
    kernel = edge_cases.sub_center_kernel(cases.kernel, sub_centers)
    layer = SubCenterArcFace(5, sub_centers=sub_centers, fallback=fallback, gradient=gradient)
    return edge_cases.set_kernel(layer, kernel), kernel


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", ARC_FALLBACKS)
def test_matches_numpy_reference_on_edge_cases(fallback, gradient):
    cases = edge_cases.edge_cases()
    layer, kernel = make(fallback, gradient, cases)
    assert tuple(layer.kernel.shape) == (8, 5 * K)
    cosines = sub_center_cosines(cases.embeddings, kernel)
    checks.check_outputs(layer, cases, sub_center_reference(fallback), SCALE, cosines)
    checks.check_outputs(
        layer, cases, sub_center_reference(fallback, "detached"), SCALE, cosines, training=False
    )


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("fallback", ARC_FALLBACKS)
def test_gradients_finite_and_match_central_differences(fallback, gradient):
    cases = edge_cases.edge_cases()
    layer, kernel = make(fallback, gradient, cases)
    checks.check_gradients(
        layer,
        cases,
        sub_center_reference(fallback, gradient),
        cosine_function=sub_center_cosines,
        cache_key=("subcenter", "plain" if gradient == "detached" else fallback),
    )


def test_only_the_closest_sub_center_gets_a_gradient():
    cases = edge_cases.edge_cases()
    layer, kernel = make("cosface", "exact", cases)
    weights = np.random.default_rng(1).normal(size=(len(cases.labels), 5))
    grad_kernel = head_gradients(layer, cases.embeddings, cases.labels, weights).kernel
    all_cosines = ref.cosine_matrix(cases.embeddings, kernel).reshape(-1, 5, K)
    nonzero_rows = np.linalg.norm(cases.embeddings.astype(np.float64), axis=1) > 0
    closest = np.argmax(all_cosines[nonzero_rows], axis=2)  # (rows, classes)
    used = np.zeros((5, K), bool)
    for j in range(5):
        used[j, closest[:, j]] = True
    column_norms = np.linalg.norm(grad_kernel, axis=0).reshape(5, K)
    assert np.all(column_norms[~used] == 0.0)
    assert np.all(column_norms[used] > 0.0)


def test_one_sub_center_is_arc_face():
    cases = edge_cases.edge_cases()
    layer, _ = make("cosface", "exact", cases, sub_centers=1)
    arc = edge_cases.set_kernel(ArcFace(5), cases.kernel)
    np.testing.assert_array_equal(
        checks.outputs(layer, cases.embeddings, cases.labels, True),
        checks.outputs(arc, cases.embeddings, cases.labels, True),
    )


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    layer = run_layer_test(
        SubCenterArcFace,
        {"num_classes": 5, "sub_centers": 2, "fallback": "easy"},
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=True,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )
    assert tuple(layer.kernel.shape) == (16, 10)


# Dataset cleaning.


def drop_py_reference(embeddings, labels, kernel, num_classes, sub_centers, threshold):
    """insightface subcenter_arcface/drop.py, one class at a time (float64)."""
    centres = kernel.T.reshape(num_classes, sub_centers, -1).astype(np.float64)
    centres = centres / np.linalg.norm(centres, axis=2, keepdims=True)
    dominant = np.full(num_classes, -1)
    outlier = np.zeros(len(labels), bool)
    cos_thresh = math.cos(math.pi * threshold / 180.0)
    for class_id in range(num_classes):
        members = np.nonzero(labels == class_id)[0]
        if members.size == 0:
            continue
        x = embeddings[members].astype(np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        stat = np.zeros(sub_centers, int)
        for row in x:
            stat[np.argmax(centres[class_id] @ row)] += 1
        dominant[class_id] = np.argmax(stat)
        sim = x @ centres[class_id, dominant[class_id]]
        outlier[members] = ~(sim > cos_thresh)
    return dominant, outlier


def cleaning_problem():
    """4 classes x 3 sub-centres in 6-D; class 3 has no samples."""
    rng = np.random.default_rng(5)
    num_classes, dim = 4, 6
    kernel = rng.normal(size=(dim, num_classes * K)).astype("float32")
    embeddings, labels = [], []
    for class_id in range(3):
        dominant = (class_id + 1) % K
        for count, sub_center in ((12, dominant), (3, (dominant + 1) % K)):
            centre = kernel[:, class_id * K + sub_center]
            for _ in range(count):
                embeddings.append(centre / np.linalg.norm(centre) + 0.3 * rng.normal(size=dim))
                labels.append(class_id)
        embeddings.append(np.zeros(dim))  # cosine 0: 90 degrees, an outlier at 75
        labels.append(class_id)
    return np.asarray(embeddings, "float32"), np.asarray(labels, "int32"), kernel


def test_find_outliers_matches_drop_py():
    embeddings, labels, kernel = cleaning_problem()
    head = edge_cases.set_kernel(SubCenterArcFace(4), kernel)
    expected_dominant, expected_outliers = drop_py_reference(embeddings, labels, kernel, 4, K, 75.0)
    found = head.find_outliers(embeddings, labels, threshold_degrees=75.0)
    np.testing.assert_array_equal(found.dominant_sub_centers, expected_dominant)
    np.testing.assert_array_equal(found.dominant_sub_centers, [1, 2, 0, -1])
    np.testing.assert_array_equal(found.outlier_mask, expected_outliers)
    assert 3 <= found.outlier_mask.sum() < len(labels) // 2
    assert np.all(found.outlier_mask[np.linalg.norm(embeddings, axis=1) == 0])
    np.testing.assert_allclose(found.angles[np.linalg.norm(embeddings, axis=1) == 0], 90.0)
    np.testing.assert_array_equal(found.outlier_mask, found.angles >= 75.0)
    # Chunking does not change the result; a stricter threshold drops more.
    chunked = head.find_outliers(embeddings, labels[:, None], batch_size=4)
    np.testing.assert_array_equal(chunked.outlier_mask, found.outlier_mask)
    np.testing.assert_array_equal(chunked.dominant_sub_centers, found.dominant_sub_centers)
    strict = head.find_outliers(embeddings, labels, threshold_degrees=20.0)
    assert strict.outlier_mask.sum() > found.outlier_mask.sum()
    np.testing.assert_array_equal(
        strict.outlier_mask,
        drop_py_reference(embeddings, labels, kernel, 4, K, 20.0)[1],
    )


def test_find_outliers_bad_input():
    embeddings, labels, kernel = cleaning_problem()
    with pytest.raises(ValueError, match="not built"):
        SubCenterArcFace(4).find_outliers(embeddings, labels)
    head = edge_cases.set_kernel(SubCenterArcFace(4), kernel)
    with pytest.raises(ValueError, match="labels containing 4"):
        head.find_outliers(embeddings, np.where(labels == 2, 4, labels))
    with pytest.raises(ValueError, match=r"embeddings shape=\(48, 5\)"):
        head.find_outliers(embeddings[:, :5], labels)
    with pytest.raises(ValueError, match="threshold_degrees=200.0"):
        head.find_outliers(embeddings, labels, threshold_degrees=200)
    with pytest.raises(ValueError, match="dtype=float32"):
        head.find_outliers(embeddings, labels.astype("float32"))


def test_get_and_bad_arguments():
    head = keras_face.heads.get("sub_center_arc_face", 10, sub_centers=4)
    assert isinstance(head, SubCenterArcFace) and head.columns_per_class == 4
    config = head.get_config()
    assert config["sub_centers"] == 4 and config["fallback"] == "cosface"
    with pytest.raises(ValueError, match="sub_centers=0"):
        SubCenterArcFace(5, sub_centers=0)
    with pytest.raises(ValueError, match="sub_centers=2.5"):
        SubCenterArcFace(5, sub_centers=2.5)
    assert keras.saving.get_registered_object("keras_face>SubCenterArcFace") is SubCenterArcFace
