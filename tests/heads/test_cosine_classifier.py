"""`CosineClassifier` alone: the class cosines, sub-centres, column subsets, the layer battery."""

import keras
import numpy as np
import pytest

import keras_face
from keras_face.heads import CosFace
from keras_face.heads import CosineClassifier
from tests.heads import edge_cases
from tests.heads import numpy_reference as ref
from tests.heads.gradients import head_gradients
from tests.heads.gradients import loss_weights
from tests.layer_testing import run_layer_test

NUM_CLASSES = edge_cases.NUM_CLASSES


def _cosines(layer, embeddings):
    out = layer(keras.ops.convert_to_tensor(embeddings))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    return np.asarray(keras.ops.convert_to_numpy(out), np.float64)


@pytest.mark.parametrize("sub_centers", [1, 3])
def test_cosines_match_per_sample_reference_on_edge_cases(sub_centers):
    cases = edge_cases.edge_cases()
    kernel = cases.kernel
    expected = ref.cosine_matrix(cases.embeddings, kernel)
    if sub_centers > 1:
        kernel = edge_cases.sub_center_kernel(cases.kernel, sub_centers)
        expected = ref.sub_center_cosine_matrix(cases.embeddings, kernel, sub_centers)
    layer = edge_cases.set_kernel(CosineClassifier(NUM_CLASSES, sub_centers=sub_centers), kernel)
    cosines = _cosines(layer, cases.embeddings)
    assert cosines.shape == (len(cases.labels), NUM_CLASSES)
    # Clipped exactly: the `3 w` row's float32 cosine rounds above 1 before the clip.
    assert np.max(np.abs(cosines)) == 1.0
    np.testing.assert_allclose(cosines, expected, rtol=0, atol=ref.COSINE_ROUNDING)
    zero_rows = np.linalg.norm(cases.embeddings.astype(np.float64), axis=1) == 0
    assert np.all(cosines[zero_rows] == 0.0)


def test_a_head_applies_its_margin_to_the_classifier_cosines():
    cases = edge_cases.edge_cases()
    kernel = edge_cases.sub_center_kernel(cases.kernel, 2)
    classifier = edge_cases.set_kernel(CosineClassifier(NUM_CLASSES, sub_centers=2), kernel)
    head = edge_cases.set_kernel(CosFace(NUM_CLASSES, sub_centers=2), kernel)
    cosines = _cosines(classifier, cases.embeddings)
    plain = keras.ops.convert_to_numpy(head([cases.embeddings, cases.labels], training=False))
    np.testing.assert_allclose(plain, 64.0 * cosines, rtol=0, atol=64.0 * 2.0**-23)
    logits = keras.ops.convert_to_numpy(head([cases.embeddings, cases.labels], training=True))
    ref.assert_matches_reference(
        logits, lambda c: ref.cos_face(c, cases.labels, 64.0, 0.35), cosines, 64.0
    )


def test_cosine_matrix_of_a_column_subset():
    cases = edge_cases.edge_cases()
    kernel = edge_cases.sub_center_kernel(cases.kernel, 2)
    layer = edge_cases.set_kernel(CosineClassifier(NUM_CLASSES, sub_centers=2), kernel)
    normalized, norms = layer.normalize(keras.ops.convert_to_tensor(cases.embeddings))
    full = keras.ops.convert_to_numpy(layer.cosine_matrix(normalized))
    classes = np.array([4, 1])  # a sampled subset: the columns of classes 4 and 1
    columns = (classes[:, None] * 2 + np.arange(2)).reshape(-1)
    subset = keras.ops.convert_to_numpy(
        layer.cosine_matrix(normalized, keras.ops.take(layer.kernel, columns, axis=1))
    )
    # Equal up to the matmul's rounding (PyTorch blocks products of other widths differently).
    np.testing.assert_allclose(subset, full[:, classes], rtol=0, atol=2.0**-22)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(norms),
        np.linalg.norm(cases.embeddings.astype(np.float64), axis=1),
        rtol=1e-6,
    )


def test_only_the_closest_sub_centre_gets_a_gradient():
    cases = edge_cases.edge_cases()
    kernel = edge_cases.sub_center_kernel(cases.kernel, 3)
    layer = edge_cases.set_kernel(CosineClassifier(NUM_CLASSES, sub_centers=3), kernel)
    weights = loss_weights(len(cases.labels), NUM_CLASSES, seed=5)
    grads = head_gradients(layer, cases.embeddings, cases.labels, weights)
    assert np.all(np.isfinite(grads.embeddings)) and np.all(np.isfinite(grads.kernel))
    nonzero = np.linalg.norm(cases.embeddings.astype(np.float64), axis=1) > 0
    closest = ref.closest_sub_centers(cases.embeddings[nonzero], kernel, 3)
    used = np.zeros((NUM_CLASSES, 3), bool)
    for j in range(NUM_CLASSES):
        used[j, closest[:, j]] = True
    column_norms = np.linalg.norm(grads.kernel.astype(np.float64), axis=0).reshape(-1, 3)
    assert np.all(column_norms[~used] == 0.0)
    assert np.all(column_norms[used] > 0.0)


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=(8,)).astype("int32")
    layer = run_layer_test(
        CosineClassifier,
        {"num_classes": NUM_CLASSES, "sub_centers": 2},
        [embeddings],
        fit_targets=labels,
        expected_output_shape=(8, NUM_CLASSES),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )
    assert tuple(layer.kernel.shape) == (16, 2 * NUM_CLASSES)
    assert layer.columns_per_class == 2
    assert layer.get_config()["sub_centers"] == 2


def test_find_outliers_with_one_centre_per_class():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(6, 4)).astype("float32")
    layer = edge_cases.set_kernel(CosineClassifier(4), kernel)
    centres = kernel / np.linalg.norm(kernel, axis=0)
    labels = np.repeat(np.arange(4), 3).astype("int32")
    embeddings = centres.T[labels] + 0.05 * rng.normal(size=(12, 6))
    embeddings[5] = -centres[:, 1]  # 180 degrees from its class centre
    found = layer.find_outliers(embeddings, labels, threshold_degrees=60.0)
    np.testing.assert_array_equal(found.dominant_sub_centers, np.zeros(4))
    np.testing.assert_array_equal(np.nonzero(found.outlier_mask)[0], [5])
    np.testing.assert_allclose(found.angles[5], 180.0, atol=1e-3)


def test_public_registered_and_bad_arguments():
    assert keras_face.heads.CosineClassifier is CosineClassifier
    assert keras.saving.get_registered_object("keras_face>CosineClassifier") is CosineClassifier
    assert issubclass(keras_face.heads.MarginHead, CosineClassifier)
    with pytest.raises(ValueError, match="num_classes=0"):
        CosineClassifier(0)
    with pytest.raises(ValueError, match="num_classes=2.5"):
        CosineClassifier(2.5)
    with pytest.raises(ValueError, match="sub_centers=0"):
        CosineClassifier(3, sub_centers=0)
