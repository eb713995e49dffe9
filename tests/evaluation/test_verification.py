"""The LFW-style protocol against hand-computed cases and a literal re-implementation.

`reference_evaluate` below is written from the description of insightface's
`verification.evaluate` (per-threshold loops, scikit-learn's KFold, scipy's degree-1
B-spline for the FAR interpolation, which is what `interp1d(kind="slinear")` evaluated
in scipy <= 1.8, the versions on which insightface's code runs).
"""

import numpy as np
import pytest

from keras_face.evaluation import ACCURACY_THRESHOLDS
from keras_face.evaluation import kfold_splits
from keras_face.evaluation import verify
from keras_face.evaluation.verification import _interp1d_slinear
from keras_face.evaluation.verification_summary import VerificationSummary

KFold = pytest.importorskip("sklearn.model_selection").KFold
interpolate = pytest.importorskip("scipy.interpolate")


def reference_rates(threshold, distances, issame):
    predicted = np.less(distances, threshold)
    tp = np.sum(np.logical_and(predicted, issame))
    fp = np.sum(np.logical_and(predicted, np.logical_not(issame)))
    tn = np.sum(np.logical_and(np.logical_not(predicted), np.logical_not(issame)))
    fn = np.sum(np.logical_and(np.logical_not(predicted), issame))
    tpr = 0 if tp + fn == 0 else float(tp) / float(tp + fn)
    fpr = 0 if fp + tn == 0 else float(fp) / float(fp + tn)
    return tpr, fpr, float(tp + tn) / distances.size


def reference_folds(num_pairs, n_folds):
    indices = np.arange(num_pairs)
    if n_folds == 1:
        return [(indices, indices)]
    return list(KFold(n_splits=n_folds, shuffle=False).split(indices))


def reference_slinear(x, y, x_new):
    knots = np.r_[x[0], x, x[-1]]
    return float(interpolate.BSpline.construct_fast(knots, np.asarray(y, dtype=float), 1)(x_new))


def reference_evaluate(embeddings, issame, n_folds=10):
    issame = np.asarray(issame)
    first, second = embeddings[0::2], embeddings[1::2]
    distances = np.sum(np.square(np.subtract(first, second)), 1)
    folds = reference_folds(len(issame), n_folds)

    thresholds = np.arange(0, 4, 0.01)
    accuracy = np.zeros(len(folds))
    tprs = np.zeros((len(folds), len(thresholds)))
    fprs = np.zeros((len(folds), len(thresholds)))
    best_thresholds = np.zeros(len(folds))
    for fold, (train, test) in enumerate(folds):
        train_accuracy = np.zeros(len(thresholds))
        for index, threshold in enumerate(thresholds):
            train_accuracy[index] = reference_rates(threshold, distances[train], issame[train])[2]
        best = np.argmax(train_accuracy)
        best_thresholds[fold] = thresholds[best]
        for index, threshold in enumerate(thresholds):
            tprs[fold, index], fprs[fold, index], _ = reference_rates(
                threshold, distances[test], issame[test]
            )
        accuracy[fold] = reference_rates(thresholds[best], distances[test], issame[test])[2]

    thresholds = np.arange(0, 4, 0.001)
    val = np.zeros(len(folds))
    far = np.zeros(len(folds))
    for fold, (train, test) in enumerate(folds):
        far_train = np.zeros(len(thresholds))
        for index, threshold in enumerate(thresholds):
            predicted = np.less(distances[train], threshold)
            false_accept = np.sum(np.logical_and(predicted, np.logical_not(issame[train])))
            far_train[index] = float(false_accept) / float(np.sum(np.logical_not(issame[train])))
        if np.max(far_train) >= 1e-3:
            threshold = reference_slinear(far_train, thresholds, 1e-3)
        else:
            threshold = 0.0
        predicted = np.less(distances[test], threshold)
        val[fold] = float(np.sum(predicted & issame[test])) / float(np.sum(issame[test]))
        far[fold] = float(np.sum(predicted & ~issame[test])) / float(np.sum(~issame[test]))
    return {
        "accuracy": accuracy,
        "tpr": np.mean(tprs, 0),
        "fpr": np.mean(fprs, 0),
        "best_thresholds": best_thresholds,
        "val": np.mean(val),
        "val_std": np.std(val),
        "far": np.mean(far),
    }


def unit_pairs_with_distances(distances):
    """2-D unit vectors whose pairs have the given squared L2 distances."""
    angles = np.arccos(1.0 - np.asarray(distances) / 2.0)
    embeddings = np.zeros((2 * len(distances), 2))
    embeddings[0::2] = [1.0, 0.0]
    embeddings[1::2, 0] = np.cos(angles)
    embeddings[1::2, 1] = np.sin(angles)
    return embeddings


def noisy_pair_embeddings(num_pairs, dim, noise, seed, dtype=np.float64, quantize=None):
    rng = np.random.default_rng(seed)
    issame = rng.random(num_pairs) < 0.5
    anchors = rng.normal(size=(num_pairs, dim))
    others = np.where(issame[:, None], anchors, rng.normal(size=(num_pairs, dim)))
    others = others + noise * rng.normal(size=(num_pairs, dim))
    embeddings = np.empty((2 * num_pairs, dim))
    embeddings[0::2] = anchors
    embeddings[1::2] = others
    if quantize:
        embeddings = np.round(embeddings * quantize) / quantize
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings.astype(dtype), issame


def test_hand_computed_two_folds():
    # Fold 0 trains on pairs 2-3 (impostor 2.5005, genuine 0.9995): first best threshold
    # 1.00, applied to pairs 0-1 -> both right. Fold 1 trains on pairs 0-1 -> threshold
    # 0.50, applied to pairs 2-3 -> genuine 0.9995 rejected: 1 of 2 right.
    embeddings = unit_pairs_with_distances([0.4995, 1.5005, 2.5005, 0.9995])
    issame = np.array([True, False, False, True])
    result = verify(embeddings, issame, n_folds=2)
    np.testing.assert_allclose(result["accuracy_per_fold"], [1.0, 0.5])
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["accuracy_std"] == pytest.approx(0.25)
    np.testing.assert_allclose(result["best_thresholds"], [1.0, 0.5])
    assert result["threshold"] == pytest.approx(0.75)
    # VAL: fold 0's training FAR jumps 0 -> 1 between thresholds 2.500 and 2.501, so
    # FAR 1e-3 interpolates to 2.500001: pair 0 accepted (VAL 1) and pair 1 too (FAR 1).
    # Fold 1: threshold 1.500001 accepts the genuine 0.9995 (VAL 1), rejects 2.5005.
    assert result["val_at_far_1e-3"] == pytest.approx(1.0)
    assert result["val_std"] == pytest.approx(0.0)
    assert result["far"] == pytest.approx(0.5)


def test_hand_computed_tar_at_far_and_perfect_separation():
    # 10 folds of 4 pairs, each with 2 genuine and 2 impostor pairs.
    embeddings = unit_pairs_with_distances([0.1, 3.0, 0.2, 3.5] * 10)
    issame = np.array([True, False, True, False] * 10)
    result = verify(embeddings, issame, n_folds=10)
    assert result["accuracy"] == 1.0 and result["accuracy_std"] == 0.0
    assert result["val_at_far_1e-3"] == 1.0
    assert all(value == 1.0 for value in result["tar_at_far"].values())
    assert result["auc"] == pytest.approx(1.0)
    np.testing.assert_allclose(result["scores"][:4], [0.95, -0.5, 0.9, -0.75], atol=1e-12)


def test_kfold_matches_sklearn_sizes():
    for num_pairs, n_folds in [(6000, 10), (607, 10), (11, 3), (5, 5)]:
        ours = kfold_splits(num_pairs, n_folds)
        theirs = list(KFold(n_splits=n_folds, shuffle=False).split(np.arange(num_pairs)))
        for (train, test), (ref_train, ref_test) in zip(ours, theirs):
            np.testing.assert_array_equal(train, ref_train)
            np.testing.assert_array_equal(test, ref_test)
    with pytest.raises(ValueError, match="n_folds=10"):
        kfold_splits(9, 10)


@pytest.mark.parametrize(
    "num_pairs, noise, n_folds, dtype, quantize",
    [
        (607, 1.2, 10, np.float64, None),  # uneven folds
        (600, 0.8, 10, np.float32, None),  # float32 embeddings
        (400, 1.5, 4, np.float64, 4),  # many tied distances
        (120, 1.0, 1, np.float64, None),  # single fold (LFold(1))
    ],
)
def test_matches_reference_implementation(num_pairs, noise, n_folds, dtype, quantize):
    embeddings, issame = noisy_pair_embeddings(
        num_pairs, 16, noise, seed=num_pairs, dtype=dtype, quantize=quantize
    )
    result = verify(embeddings, issame, n_folds=n_folds)
    reference = reference_evaluate(embeddings, issame, n_folds=n_folds)
    np.testing.assert_array_equal(result["accuracy_per_fold"], reference["accuracy"])
    np.testing.assert_array_equal(result["best_thresholds"], reference["best_thresholds"])
    np.testing.assert_array_equal(result["tpr"], reference["tpr"])
    np.testing.assert_array_equal(result["fpr"], reference["fpr"])
    assert result["accuracy"] == np.mean(reference["accuracy"])
    assert result["accuracy_std"] == np.std(reference["accuracy"])
    assert result["val_at_far_1e-3"] == reference["val"]
    assert result["val_std"] == reference["val_std"]
    assert result["far"] == reference["far"]
    # The numbers are not degenerate.
    assert 0.55 < result["accuracy"] < 0.999
    np.testing.assert_array_equal(result["thresholds"], ACCURACY_THRESHOLDS)


def test_far_target_reached_exactly():
    # Two folds of 1500 pairs with 1000 impostors each: the training FARs are k / 1000,
    # so FAR 1e-3 equals a repeated FAR value (the interpolation's tie branch).
    rng = np.random.default_rng(3)
    issame = np.zeros(3000, dtype=bool)
    for start in (0, 1500):
        issame[start + rng.choice(1500, 500, replace=False)] = True
    distances = np.where(issame, rng.uniform(0.2, 2.2, 3000), rng.uniform(1.0, 3.9, 3000))
    embeddings = unit_pairs_with_distances(distances)
    result = verify(embeddings, issame, n_folds=2)
    reference = reference_evaluate(embeddings, issame, n_folds=2)
    assert result["val_at_far_1e-3"] == reference["val"]
    assert result["far"] == reference["far"]
    np.testing.assert_array_equal(result["accuracy_per_fold"], reference["accuracy"])


def test_val_zero_threshold_when_far_never_reached():
    # Impostors all beyond the largest threshold (distance 4 = opposite vectors): the
    # training FAR stays 0 < 1e-3, the threshold is 0.0 and nothing is accepted.
    embeddings = unit_pairs_with_distances([0.5, 4.0] * 10)
    issame = np.array([True, False] * 10)
    result = verify(embeddings, issame, n_folds=10)
    assert result["val_at_far_1e-3"] == 0.0
    assert result["far"] == 0.0
    assert result["accuracy"] == 1.0


def test_interpolation_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(300):
        size = int(rng.integers(2, 40))
        if rng.random() < 0.5:  # repeated x (the FAR plateaus)
            x = np.sort(rng.integers(0, 6, size) / 7.0)
        else:
            x = np.sort(rng.random(size))
        y = np.sort(rng.random(size)) * 4.0
        queries = np.concatenate([x, rng.uniform(x[0], x[-1], 4)])
        for query in queries:
            assert _interp1d_slinear(x, y, float(query)) == reference_slinear(x, y, float(query))
        if np.unique(x).size == x.size:
            function = interpolate.interp1d(x, y, kind="slinear")
            for query in queries:
                assert _interp1d_slinear(x, y, float(query)) == float(function(query))


def test_input_validation_and_warning():
    embeddings, issame = noisy_pair_embeddings(50, 8, 1.0, seed=0)
    with pytest.raises(ValueError, match="len\\(issame\\)=49"):
        verify(embeddings, issame[:49])
    with pytest.warns(UserWarning, match="L2-normalised"):
        verify(embeddings * 3.0, issame)


def test_non_finite_embeddings_do_not_raise():
    embeddings, issame = noisy_pair_embeddings(40, 8, 1.0, seed=1)
    embeddings[5] = np.nan
    result = verify(embeddings, issame, n_folds=4)
    assert np.isnan(result["auc"]) and all(np.isnan(v) for v in result["tar_at_far"].values())
    # The NaN pair is never accepted (np.less semantics), the others still count.
    assert 0.5 < result["accuracy"] <= 1.0


def test_val_is_nan_with_its_achieved_far_when_all_distances_tie():
    # A collapsed model: every embedding the same, every distance 0. insightface
    # interpolates a threshold of 1e-6, which accepts every pair: VAL 1.0 at FAR 1.0.
    embeddings = unit_pairs_with_distances([0.0] * 40)
    issame = np.array([True, False] * 20)
    result = verify(embeddings, issame, n_folds=4)
    assert np.isnan(result["val_at_far_1e-3"])
    assert result["far"] == 1.0  # the achieved FAR, reported beside it
    assert result["accuracy"] == 0.5
    summary = VerificationSummary.from_result("tied", result, 40, n_folds=4)
    assert summary.as_dict()["val_at_far_1e-3"] is None
    assert summary.as_dict()["val_achieved_far"] == 1.0
    assert summary.table_row()[4:6] == ["nan", "1.0e+00"]


def test_val_kept_when_the_jump_over_the_target_accepts_no_other_genuine_pair():
    # Genuine pairs far below the impostors, impostors tied: the interpolated threshold
    # overshoots the target FAR but accepts the same genuine pairs as one meeting it.
    embeddings = unit_pairs_with_distances([0.1, 3.0] * 20)
    issame = np.array([True, False] * 20)
    result = verify(embeddings, issame, n_folds=4)
    assert result["val_at_far_1e-3"] == 1.0  # insightface's number, kept
    assert result["far"] == 1.0  # and the FAR it was measured at, shown beside it
