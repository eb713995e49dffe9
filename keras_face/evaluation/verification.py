"""LFW-style 1:1 verification: the 10-fold protocol of insightface's `verification.py`.

The numbers are identical to insightface's `evaluate(embeddings, issame, nrof_folds)`
(`recognition/arcface_torch/eval/verification.py`, itself from FaceNet's `lfw.py`) on the
same embeddings, computed without loops over thresholds and without scikit-learn:

- pairs are rows `(0, 1), (2, 3), ...`; the distance is `sum((e1 - e2) ** 2)`, i.e. the
  squared L2 distance (in `[0, 4]` for unit-norm embeddings);
- folds are contiguous and not shuffled, as `sklearn.model_selection.KFold(n_folds)`
  (the first `num_pairs % n_folds` folds hold one pair more);
- accuracy: for each fold, the threshold of `arange(0, 4, 0.01)` with the best accuracy
  on the other folds (first one on ties; a pair is accepted when `distance < threshold`)
  is applied to the held-out fold; mean and (population) std over folds;
- VAL@FAR=1e-3: for each fold, the threshold of `arange(0, 4, 0.001)` reaching FAR 1e-3
  on the other folds is found by linear interpolation of (FAR, threshold) (0.0 when the
  FAR is never reached) and the VAL (true accept rate) is measured on the held-out fold.
  One departure: when that threshold accepts more than the target FAR plus one impostor
  pair on the training folds (the FAR jumps over the target: many impostor pairs tie at
  one distance) and the largest threshold that meets the target on the training folds
  accepts fewer held-out genuine pairs, the target cannot be met: the fold's VAL is NaN
  instead of the TAR of a far larger FAR (a collapsed model, all distances equal, gets
  NaN where insightface reports 1.0). The achieved held-out FAR is always reported
  beside the VAL (`far`).
"""

import warnings

import numpy as np

from keras_face.evaluation.roc import DEFAULT_FARS
from keras_face.evaluation.roc import area_under_curve
from keras_face.evaluation.roc import roc_curve
from keras_face.evaluation.roc import tar_at_far

# insightface `evaluate`: thresholds of the accuracy / ROC part and of the VAL part.
ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)
VAL_FAR_TARGET = 1e-3


def kfold_splits(num_pairs, n_folds=10):
    """Contiguous, unshuffled folds as `sklearn.model_selection.KFold(n_folds)`.

    Args:
        num_pairs: int. Number of pairs.
        n_folds: int. Number of folds; `1` uses every pair for both choosing and testing
            the threshold (insightface's `LFold(n_splits=1)`). Defaults to `10`.

    Returns:
        A list of `(train_indices, test_indices)` integer arrays.

    Example:
        ```python
        splits = keras_face.evaluation.kfold_splits(6000, n_folds=10)
        ```
    """
    num_pairs = int(num_pairs)
    n_folds = int(n_folds)
    if n_folds < 1:
        raise ValueError(f"`n_folds` must be at least 1. Received: n_folds={n_folds}")
    if num_pairs < max(n_folds, 1):
        raise ValueError(
            "The number of pairs must be at least `n_folds`. "
            f"Received: num_pairs={num_pairs}, n_folds={n_folds}"
        )
    indices = np.arange(num_pairs)
    if n_folds == 1:
        return [(indices, indices)]
    fold_sizes = np.full(n_folds, num_pairs // n_folds, dtype=np.int64)
    fold_sizes[: num_pairs % n_folds] += 1
    splits = []
    start = 0
    for size in fold_sizes:
        stop = start + int(size)
        test = indices[start:stop]
        train = np.concatenate([indices[:start], indices[stop:]])
        splits.append((train, test))
        start = stop
    return splits


def pair_distances(embeddings):
    """Squared L2 distances between rows `2i` and `2i + 1`.

    Computed as insightface does (`np.sum(np.square(e1 - e2), 1)` in the input dtype).

    Args:
        embeddings: float array of shape `(2P, D)` in pair order.

    Returns:
        Array of shape `(P,)`.

    Example:
        ```python
        distances = keras_face.evaluation.pair_distances(embeddings)
        ```
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] % 2:
        raise ValueError(
            "`embeddings` must have shape (2 * num_pairs, dim). "
            f"Received: embeddings.shape={embeddings.shape}"
        )
    difference = np.subtract(embeddings[0::2], embeddings[1::2])
    return np.sum(np.square(difference), 1)


def _count_below(sorted_values, thresholds):
    """Number of `sorted_values` strictly below each threshold (`np.less` semantics)."""
    return np.searchsorted(sorted_values, thresholds, side="left").astype(np.int64)


def _safe_ratio(numerator, denominator):
    """`numerator / denominator`, 0 where the denominator is 0 (insightface's tpr/fpr)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.where(denominator == 0, 0.0, numerator / np.where(denominator == 0, 1.0, denominator))


def _fold_counts(distances, issame, indices, thresholds):
    """Accept counts of genuine and impostor pairs at every threshold, for a subset."""
    subset_distances = distances[indices]
    subset_issame = issame[indices]
    genuine = np.sort(subset_distances[subset_issame])
    impostor = np.sort(subset_distances[~subset_issame])
    return (
        _count_below(genuine, thresholds),
        _count_below(impostor, thresholds),
        genuine.size,
        impostor.size,
    )


def calculate_roc(distances, issame, thresholds=ACCURACY_THRESHOLDS, n_folds=10):
    """Fold accuracies and mean ROC of insightface's `calculate_roc` (no PCA).

    Args:
        distances: float array of shape `(P,)`, squared L2 distance of each pair.
        issame: bool array of shape `(P,)`.
        thresholds: increasing float array; a pair is accepted when
            `distance < threshold`. Defaults to `arange(0, 4, 0.01)`.
        n_folds: int. Number of contiguous folds. Defaults to `10`.

    Returns:
        dict with `tpr`, `fpr` (mean over folds of the held-out rates at every
        threshold), `accuracy` (per fold, at the threshold chosen on the other folds)
        and `best_thresholds` (per fold).

    Example:
        ```python
        roc = keras_face.evaluation.calculate_roc(distances, issame)
        ```
    """
    distances = np.asarray(distances)
    issame = np.asarray(issame, dtype=bool)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    # np.less on float32 distances and float64 thresholds compares in float64.
    distances64 = distances.astype(np.float64)
    all_indices = np.arange(distances.shape[0])
    total_genuine, total_impostor, num_genuine, num_impostor = _fold_counts(
        distances64, issame, all_indices, thresholds
    )
    splits = kfold_splits(distances.shape[0], n_folds)
    tprs = np.zeros((len(splits), thresholds.size))
    fprs = np.zeros((len(splits), thresholds.size))
    accuracy = np.zeros(len(splits))
    best_thresholds = np.zeros(len(splits))
    for fold, (train, test) in enumerate(splits):
        test_genuine, test_impostor, test_num_genuine, test_num_impostor = _fold_counts(
            distances64, issame, test, thresholds
        )
        if len(splits) == 1:  # n_folds == 1: the threshold is chosen on the test set.
            train_genuine, train_impostor = test_genuine, test_impostor
            train_num_impostor = test_num_impostor
        else:
            train_genuine = total_genuine - test_genuine
            train_impostor = total_impostor - test_impostor
            train_num_impostor = num_impostor - test_num_impostor
        train_correct = train_genuine + (train_num_impostor - train_impostor)
        train_accuracy = train_correct / float(train.size)
        best = int(np.argmax(train_accuracy))
        best_thresholds[fold] = thresholds[best]
        tprs[fold] = _safe_ratio(test_genuine, test_num_genuine)
        fprs[fold] = _safe_ratio(test_impostor, test_num_impostor)
        test_correct = test_genuine[best] + (test_num_impostor - test_impostor[best])
        accuracy[fold] = float(test_correct) / float(test.size)
    return {
        "tpr": np.mean(tprs, 0),
        "fpr": np.mean(fprs, 0),
        "accuracy": accuracy,
        "best_thresholds": best_thresholds,
    }


def _interp1d_slinear(x, y, x_new):
    """`scipy.interpolate.interp1d(x, y, kind="slinear")(x_new)` as scipy <= 1.8 computed it.

    insightface's `calculate_val` interpolates (FAR, threshold) whose FARs repeat (the
    FAR is flat between impostor distances). scipy <= 1.8 built a degree-1 B-spline
    with knots `[x0, x..., x_last]` and evaluated it with de Boor's recursion; scipy >= 1.9
    refuses repeated `x` ("Expect x to not have duplicates"), so insightface's
    `verification.py` only runs on the old versions. This is that evaluation,
    operation by operation: inside a run of equal FARs the last threshold of the run is
    used, and a zero-length knot span evaluates to 0.
    """
    order = np.argsort(x, kind="mergesort")
    x = np.asarray(x, dtype=np.float64)[order]
    y = np.asarray(y, dtype=np.float64)[order]
    if x.size < 2:
        raise ValueError(f"Interpolation needs at least 2 points. Received: x.size={x.size}")
    if x_new < x[0] or x_new > x[-1]:
        raise ValueError(
            f"A value is outside the interpolation range [{x[0]}, {x[-1]}]. Received: x_new={x_new}"
        )
    # B-spline interval: the last knot span [t_m, t_m+1) containing x_new, clipped to the
    # interior spans (scipy's `find_interval`); knot t_m is x[m - 1].
    span = int(np.searchsorted(x, x_new, side="right"))
    span = min(max(span, 1), x.size - 1)
    left = float(x[span - 1])
    right = float(x[span])
    if right == left:
        return 0.0
    weight = 1.0 / (right - left)
    left_basis = 0.0 + weight * (right - x_new)
    right_basis = weight * (x_new - left)
    value = 0.0 + float(y[span - 1]) * left_basis
    return value + float(y[span]) * right_basis


def calculate_val(
    distances, issame, far_target=VAL_FAR_TARGET, thresholds=VAL_THRESHOLDS, n_folds=10
):
    """VAL (TAR) at a target FAR, insightface's `calculate_val`.

    Args:
        distances: float array of shape `(P,)`, squared L2 distance of each pair.
        issame: bool array of shape `(P,)`.
        far_target: float. Target false accept rate. Defaults to `1e-3`.
        thresholds: increasing float array searched on the training folds.
            Defaults to `arange(0, 4, 0.001)`.
        n_folds: int. Number of contiguous folds. Defaults to `10`.

    Returns:
        dict with `val` (mean), `val_std`, `far` (mean held-out FAR), and per fold
        `val_per_fold`, `far_per_fold`, `thresholds` (the interpolated thresholds).
        A fold without genuine or impostor pairs gives NaN (insightface raises
        `ZeroDivisionError`), and so does a fold where the target FAR cannot be met
        (see the module docstring: tied distances); its achieved FAR stays in
        `far_per_fold`.

    Example:
        ```python
        val = keras_face.evaluation.calculate_val(distances, issame)["val"]
        ```
    """
    distances = np.asarray(distances)
    issame = np.asarray(issame, dtype=bool)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    distances64 = distances.astype(np.float64)
    splits = kfold_splits(distances.shape[0], n_folds)
    all_indices = np.arange(distances.shape[0])
    _, total_impostor, _, num_impostor = _fold_counts(distances64, issame, all_indices, thresholds)
    val = np.zeros(len(splits))
    far = np.zeros(len(splits))
    fold_thresholds = np.zeros(len(splits))
    for fold, (_, test) in enumerate(splits):
        _, test_impostor, _, test_num_impostor = _fold_counts(distances64, issame, test, thresholds)
        if len(splits) == 1:
            train_impostor, train_num_impostor = test_impostor, test_num_impostor
        else:
            train_impostor = total_impostor - test_impostor
            train_num_impostor = num_impostor - test_num_impostor
        if train_num_impostor == 0:
            val[fold] = far[fold] = fold_thresholds[fold] = np.nan
            continue
        far_train = train_impostor / float(train_num_impostor)
        if np.max(far_train) >= far_target:
            threshold = _interp1d_slinear(far_train, thresholds, float(far_target))
        else:
            threshold = 0.0
        fold_thresholds[fold] = threshold
        train_far = _train_far(distances64, issame, test, threshold, len(splits) == 1)
        accepted = distances64[test] < threshold
        test_issame = issame[test]
        num_same = int(np.sum(test_issame))
        num_diff = int(test_issame.size - num_same)
        true_accept = int(np.sum(accepted & test_issame))
        false_accept = int(np.sum(accepted & ~test_issame))
        val[fold] = true_accept / float(num_same) if num_same else np.nan
        far[fold] = false_accept / float(num_diff) if num_diff else np.nan
        if train_far > far_target + 1.0 / train_num_impostor and num_same:
            # The interpolation jumped over the target: the largest threshold of the
            # grid that meets it on the training folds must accept the same genuine
            # pairs, or the VAL is that of another FAR (tied distances).
            meeting = thresholds[far_train <= far_target]
            meet_threshold = meeting[-1] if meeting.size else 0.0
            if np.sum((distances64[test] < meet_threshold) & test_issame) != true_accept:
                val[fold] = np.nan
    return {
        "val": float(np.mean(val)),
        "val_std": float(np.std(val)),
        "far": float(np.mean(far)),
        "val_per_fold": val,
        "far_per_fold": far,
        "thresholds": fold_thresholds,
    }


def _train_far(distances, issame, test, threshold, single_fold):
    """FAR that `threshold` achieves on the training folds (all pairs with one fold)."""
    train = np.ones(distances.shape[0], dtype=bool)
    if not single_fold:
        train[test] = False
    impostor = distances[train & ~issame]
    return float(np.mean(impostor < threshold)) if impostor.size else 0.0


def _check_normalised(embeddings):
    norms = np.sqrt(np.einsum("ij,ij->i", embeddings, embeddings))
    if norms.size and np.max(np.abs(norms - 1.0)) > 1e-3:
        warnings.warn(
            "`verify` expects L2-normalised embeddings (its thresholds span the [0, 4] "
            "range of squared distances between unit vectors); use "
            "`keras_face.evaluation.l2_normalize` or `extract_embeddings`. "
            f"Received: embeddings with norms in [{norms.min():.4g}, {norms.max():.4g}]",
            stacklevel=3,
        )


def verify(embeddings, issame, n_folds=10, fars=DEFAULT_FARS):
    """LFW-style verification of pairs of embeddings (insightface's 10-fold protocol).

    Reproduces insightface's `verification.evaluate(embeddings, issame, nrof_folds)`
    exactly (see the module docstring), and adds TAR at fixed FARs read from the ROC
    over all pairs with `tar_at_far` (insightface's IJB rule) on the similarity
    `1 - distance / 2` (the cosine for unit-norm embeddings).

    Args:
        embeddings: float array of shape `(2P, D)`: rows `2i` and `2i + 1` form pair `i`.
            Pass L2-normalised embeddings (as `extract_embeddings` returns); they are
            used as given, like insightface does. float64 reproduces insightface's
            pipeline bit for bit.
        issame: bool array of shape `(P,)`, whether pair `i` is genuine.
        n_folds: int. Number of contiguous folds. Defaults to `10`.
        fars: sequence of float. FARs of `tar_at_far`.
            Defaults to `(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)`.

    Returns:
        dict. `accuracy` and `accuracy_std` (mean and std over the folds; per fold in
        `accuracy_per_fold`), `threshold` (mean chosen distance threshold; per fold in
        `best_thresholds`), `val_at_far_1e-3`, `val_std` and `far` (VAL@FAR=1e-3, its
        std and the mean held-out FAR), `tar_at_far` (`{far: tar}`), `tpr`, `fpr` and
        `thresholds` (the fold-averaged ROC at `arange(0, 4, 0.01)`), `roc`
        (`{"fpr", "tpr", "thresholds"}` over all pairs), `auc`, `scores` (similarity
        per pair), `distances` and `issame`.

    Example:
        ```python
        embeddings = keras_face.evaluation.extract_embeddings(backbone, images)
        result = keras_face.evaluation.verify(embeddings, issame)
        print(f"{result['accuracy']:.4f} +- {result['accuracy_std']:.4f}")
        ```

    References:
        - [Huang et al., 2007, LFW](http://vis-www.cs.umass.edu/lfw/lfw.pdf)
        - [insightface verification.py](https://github.com/deepinsight/insightface/blob/master/recognition/arcface_torch/eval/verification.py)
    """
    embeddings = np.asarray(embeddings)
    issame = np.asarray(issame)
    if issame.ndim != 1:
        raise ValueError(f"`issame` must be 1-D. Received: issame.shape={issame.shape}")
    issame = issame.astype(bool)
    if embeddings.ndim != 2 or embeddings.shape[0] != 2 * issame.shape[0]:
        raise ValueError(
            "`embeddings` must have shape (2 * len(issame), dim), rows 2i and 2i + 1 "
            f"forming pair i. Received: embeddings.shape={embeddings.shape}, "
            f"len(issame)={issame.shape[0]}"
        )
    if not np.issubdtype(embeddings.dtype, np.floating):
        embeddings = embeddings.astype(np.float64)
    _check_normalised(embeddings)
    distances = pair_distances(embeddings)
    roc = calculate_roc(distances, issame, ACCURACY_THRESHOLDS, n_folds)
    val = calculate_val(distances, issame, VAL_FAR_TARGET, VAL_THRESHOLDS, n_folds)
    scores = 1.0 - distances.astype(np.float64) / 2.0
    if np.all(issame) or not np.any(issame) or not np.all(np.isfinite(scores)):
        # One kind of pair only, or non-finite embeddings (a diverged model): no ROC.
        tars = {float(far): float("nan") for far in fars}
        full_roc = (np.array([np.nan]), np.array([np.nan]), np.array([np.inf]))
        auc = float("nan")
    else:
        tars = tar_at_far(issame, scores, fars)
        full_roc = roc_curve(issame, scores)
        auc = area_under_curve(full_roc[0], full_roc[1])
    return {
        "accuracy": float(np.mean(roc["accuracy"])),
        "accuracy_std": float(np.std(roc["accuracy"])),
        "accuracy_per_fold": roc["accuracy"],
        "threshold": float(np.mean(roc["best_thresholds"])),
        "best_thresholds": roc["best_thresholds"],
        "val_at_far_1e-3": val["val"],
        "val_std": val["val_std"],
        "far": val["far"],
        "tar_at_far": tars,
        "tpr": roc["tpr"],
        "fpr": roc["fpr"],
        "thresholds": ACCURACY_THRESHOLDS.copy(),
        "roc": {"fpr": full_roc[0], "tpr": full_roc[1], "thresholds": full_roc[2]},
        "auc": auc,
        "scores": scores,
        "distances": distances,
        "issame": issame,
    }
