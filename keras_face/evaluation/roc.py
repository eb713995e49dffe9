"""ROC curve and TAR@FAR, computed as scikit-learn and insightface's IJB script do.

`roc_curve` reproduces `sklearn.metrics.roc_curve(labels, scores)` (default
`drop_intermediate=True`) in NumPy, so that `tar_at_far` picks exactly the operating
point insightface's `eval_ijbc.py` picks: the ROC is flipped so that the highest
threshold comes last, and the TAR is read at the first index of the flipped curve
whose FPR is nearest to the target (ties go to the larger TPR).
"""

import numpy as np

# The operating points reported by insightface's IJB-B/C table.
DEFAULT_FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def _validate_labels_and_scores(labels, scores):
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.ndim != 1 or scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            "`labels` and `scores` must be 1-D arrays of the same length. "
            f"Received: labels.shape={labels.shape}, scores.shape={scores.shape}"
        )
    if labels.size == 0:
        raise ValueError(f"`labels` must not be empty. Received: labels.size={labels.size}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            "`scores` must be finite. "
            f"Received: scores with {int(np.sum(~np.isfinite(scores)))} non-finite values"
        )
    return labels.astype(bool), scores


def roc_curve(labels, scores, drop_intermediate=True):
    """Receiver operating characteristic of a similarity score.

    The same points, in the same order, as `sklearn.metrics.roc_curve`: thresholds
    decrease from `inf`, a pair is accepted when `score >= threshold`, and with
    `drop_intermediate` the points collinear with their neighbours are dropped.

    Args:
        labels: array of shape `(P,)`, truthy for genuine (same-identity) pairs.
        scores: float array of shape `(P,)`, higher meaning more similar.
        drop_intermediate: bool. Drop the suboptimal collinear points, as scikit-learn
            does by default (this changes which point `tar_at_far` reads).
            Defaults to `True`.

    Returns:
        `(fpr, tpr, thresholds)`, float64 arrays of the same length; `fpr` (or `tpr`) is
        all NaN when there is no impostor (or no genuine) pair.

    Example:
        ```python
        fpr, tpr, thresholds = keras_face.evaluation.roc_curve(labels, scores)
        ```
    """
    labels, scores = _validate_labels_and_scores(labels, scores)
    # Stable descending order; the order inside a run of tied scores does not matter,
    # only the cumulative counts at the end of each run are read.
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order].astype(np.float64)
    distinct = np.nonzero(np.diff(sorted_scores))[0]
    threshold_indices = np.concatenate([distinct, [labels.size - 1]])
    true_positives = np.cumsum(sorted_labels, dtype=np.float64)[threshold_indices]
    false_positives = 1 + threshold_indices.astype(np.float64) - true_positives
    thresholds = sorted_scores[threshold_indices].astype(np.float64)

    if drop_intermediate and false_positives.shape[0] > 2:
        corner = np.logical_or(np.diff(false_positives, 2), np.diff(true_positives, 2))
        keep = np.nonzero(np.concatenate([[True], corner, [True]]))[0]
        false_positives = false_positives[keep]
        true_positives = true_positives[keep]
        thresholds = thresholds[keep]

    true_positives = np.concatenate([[0.0], true_positives])
    false_positives = np.concatenate([[0.0], false_positives])
    thresholds = np.concatenate([[np.inf], thresholds])
    if false_positives[-1] <= 0:
        fpr = np.full(false_positives.shape, np.nan)
    else:
        fpr = false_positives / false_positives[-1]
    if true_positives[-1] <= 0:
        tpr = np.full(true_positives.shape, np.nan)
    else:
        tpr = true_positives / true_positives[-1]
    return fpr, tpr, thresholds


def tar_at_far(labels, scores, fars=DEFAULT_FARS, return_far=False):
    """True accept rate at target false accept rates, read off the ROC as insightface does.

    For every target FAR the ROC from `roc_curve` is flipped (highest threshold last)
    and the TAR is taken at the first index of the flipped curve whose FPR is nearest
    to the target, i.e. the largest TPR among the equally near points. This is
    insightface's `eval_ijbc.py` rule. It never returns NaN: a FAR below `1 / num_impostors`
    cannot be reached and then reads the point at FPR 0 (the best TAR with no false
    accept), so small sets report optimistic numbers at tiny FARs. Pass
    `return_far=True` to see the FPR of the point actually read.

    Args:
        labels: array of shape `(P,)`, truthy for genuine pairs.
        scores: float array of shape `(P,)`, higher meaning more similar.
        fars: sequence of float. Target false accept rates.
            Defaults to `(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)`.
        return_far: bool. Also return `{far: fpr of the point read}`. Defaults to `False`.

    Returns:
        `{far: tar}` (floats), or `({far: tar}, {far: actual_fpr})` with `return_far`.

    Example:
        ```python
        tar = keras_face.evaluation.tar_at_far(labels, scores)
        print(tar[1e-4])
        ```
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    fpr = np.flipud(fpr)
    tpr = np.flipud(tpr)
    tars = {}
    actual = {}
    for far in fars:
        far = float(far)
        index = int(np.argmin(np.abs(fpr - far)))
        tars[far] = float(tpr[index])
        actual[far] = float(fpr[index])
    if return_far:
        return tars, actual
    return tars


def area_under_curve(fpr, tpr):
    """Area under a ROC given as increasing `fpr` (trapezoidal rule).

    Args:
        fpr: float array, non-decreasing false positive rates.
        tpr: float array of the same length, true positive rates.

    Returns:
        float. The area (NaN when either array holds NaN).

    Example:
        ```python
        fpr, tpr, _ = keras_face.evaluation.roc_curve(labels, scores)
        auc = keras_face.evaluation.area_under_curve(fpr, tpr)
        ```
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
