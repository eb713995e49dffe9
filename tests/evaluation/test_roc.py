"""ROC and TAR@FAR against scikit-learn and hand-computed cases."""

import numpy as np
import pytest

from keras_face.evaluation import area_under_curve
from keras_face.evaluation import roc_curve
from keras_face.evaluation import tar_at_far

metrics = pytest.importorskip("sklearn.metrics")


def insightface_tar_at_far(labels, scores, fars):
    """insightface eval_ijbc.py: flip the ROC, min over (|fpr - far|, index) tuples."""
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    fpr = np.flipud(fpr)
    tpr = np.flipud(tpr)
    result = {}
    for far in fars:
        _, min_index = min(list(zip(abs(fpr - far), range(len(fpr)))))
        result[far] = tpr[min_index]
    return result


def test_hand_computed_roc():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    fpr, tpr, thresholds = roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    # Flipped: fpr [1, .5, .5, 0, 0], tpr [1, 1, .5, .5, 0]; the first nearest index wins.
    tars = tar_at_far(labels, scores, fars=[0.1, 0.5, 0.9])
    assert tars == {0.1: 0.5, 0.5: 1.0, 0.9: 1.0}
    tars, actual = tar_at_far(labels, scores, fars=[1e-6], return_far=True)
    assert tars == {1e-6: 0.5} and actual == {1e-6: 0.0}
    assert area_under_curve(fpr, tpr) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "seed, size, levels", [(0, 1000, None), (1, 3000, 20), (2, 257, 5), (3, 50, None)]
)
def test_matches_sklearn(seed, size, levels):
    rng = np.random.default_rng(seed)
    labels = rng.random(size) < 0.3
    scores = rng.normal(size=size) + 1.5 * labels
    if levels:  # Many ties.
        scores = np.round(scores * levels / 4) / levels
    for drop in (True, False):
        ours = roc_curve(labels, scores, drop_intermediate=drop)
        theirs = metrics.roc_curve(labels, scores, drop_intermediate=drop)
        for mine, reference in zip(ours, theirs):
            np.testing.assert_array_equal(mine, reference)
    fars = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    assert tar_at_far(labels, scores, fars) == pytest.approx(
        insightface_tar_at_far(labels, scores, fars), abs=0
    )
    fpr, tpr, _ = roc_curve(labels, scores)
    assert area_under_curve(fpr, tpr) == pytest.approx(
        metrics.roc_auc_score(labels, scores), rel=1e-12
    )


def test_degenerate_and_invalid_inputs():
    with pytest.raises(ValueError, match="scores.shape=\\(3,\\)"):
        roc_curve([1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="non-finite"):
        roc_curve([1, 0], [0.1, np.nan])
    fpr, tpr, _ = roc_curve([1, 1, 1], [0.1, 0.2, 0.3])
    assert np.all(np.isnan(fpr)) and tpr[-1] == 1.0
