"""Quality-score evaluation: the error-versus-discard characteristic and rank correlation.

A quality score (the feature norm of MagFace, SCF's `kappa`, a ground-truth degradation)
is useful for recognition when discarding the lowest-quality samples removes the errors.
The error-versus-discard characteristic (EDC, ISO/IEC 29794-1; "error-versus-reject" or
"ERC" in MagFace and SCF) measures exactly that:

1. a comparison threshold is fixed on all comparisons, at a target false match rate
   (FMR): a pair is a match when its score is above the `(k+1)`-th largest impostor score,
   `k = floor(FMR * number of impostor pairs)`;
2. every comparison gets the pair quality `min(q_a, q_b)` (a comparison is as good as its
   worse image);
3. the comparisons with the lowest pair quality are discarded, a growing fraction at a
   time, and the false non-match rate (FNMR) of the genuine comparisons that remain is
   read at the fixed threshold.

A good quality score makes the FNMR fall fast; its partial area under the curve up to a
discard limit (20 % by default, as Schlett et al.) summarises it (lower is better). Ties
in quality are discarded together, so the curve is a step function with one step per
distinct pair quality and its area is the integral of that step function; a random
quality score is the floor to beat (its curve stays near the starting FNMR).
"""

import math
import typing

import numpy as np

from keras_face.evaluation.plots import figure_and_axes


class ErrorVersusDiscard(typing.NamedTuple):
    """Result of `error_versus_discard`.

    Attributes:
        discard_fraction: float64 array `(S,)`, increasing from 0: fraction of all
            comparisons discarded at each step.
        fnmr: float64 array `(S,)`: FNMR of the genuine comparisons kept.
        quality_threshold: float64 array `(S,)`: comparisons with a pair quality below it
            are discarded.
        score_threshold: float. The fixed comparison threshold (a match is `score >`
            it).
        fmr: float. The FMR reached at that threshold (at most the target).
        partial_area: float. Integral of the step curve from 0 to `discard_limit`.
        discard_limit: float. Upper end of the partial area.
        partial_area_folds: float64 array `(n_folds,)` of the partial area of each fold
            (every comparison `i` with `i % n_folds == f` in fold `f`, each with its own
            threshold); empty when `n_folds == 1`.
    """

    discard_fraction: np.ndarray
    fnmr: np.ndarray
    quality_threshold: np.ndarray
    score_threshold: float
    fmr: float
    partial_area: float
    discard_limit: float
    partial_area_folds: np.ndarray


def _finite_array(name, values, length=None):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D. Received: {name}.shape={values.shape}")
    if length is not None and values.shape[0] != length:
        raise ValueError(
            f"{name} must hold one value per comparison ({length}). "
            f"Received: {name}.shape={values.shape}"
        )
    bad = ~np.isfinite(values)
    if np.any(bad):
        raise ValueError(
            f"{name} must be finite. Received: {name} with {int(bad.sum())} non-finite "
            f"values, e.g. {values[bad][0]}"
        )
    return values


def pair_quality(quality_a, quality_b):
    """Quality of a comparison: the lower of its two images' qualities.

    Args:
        quality_a: float array `(P,)`, quality of the first images (higher is better).
        quality_b: float array `(P,)`, quality of the second images.

    Returns:
        float64 array `(P,)`.

    Example:
        ```python
        q = keras_face.evaluation.pair_quality(kappa[0::2], kappa[1::2])
        ```
    """
    quality_a = _finite_array("quality_a", quality_a)
    quality_b = _finite_array("quality_b", quality_b, quality_a.shape[0])
    return np.minimum(quality_a, quality_b)


def fixed_fmr_threshold(impostor_scores, fmr):
    """Score threshold with a false match rate of at most `fmr` (a match is `score >` it).

    Args:
        impostor_scores: float array of the impostor comparisons' scores.
        fmr: float in (0, 1]. Target false match rate.

    Returns:
        float. The `(k+1)`-th largest impostor score, `k = floor(fmr * n)` (`-inf` when
        `k >= n`).

    Example:
        ```python
        threshold = keras_face.evaluation.fixed_fmr_threshold(scores[~issame], 1e-3)
        ```
    """
    impostor_scores = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    allowed = int(math.floor(fmr * impostor_scores.size + 1e-9))
    if allowed >= impostor_scores.size:
        return -math.inf
    return float(impostor_scores[allowed])


def _step_area(discard_fraction, fnmr, discard_limit):
    right = np.append(discard_fraction[1:], 1.0)
    widths = np.clip(right, None, discard_limit) - np.clip(discard_fraction, None, discard_limit)
    # A step past the last genuine comparison has no false non-match to count.
    return float(np.sum(np.where(np.isnan(fnmr), 0.0, fnmr) * np.maximum(widths, 0.0)))


def _curve(scores, issame, quality, fmr):
    genuine_count = int(issame.sum())
    if genuine_count == 0 or genuine_count == issame.size:
        raise ValueError(
            "The EDC needs genuine and impostor comparisons. Received: "
            f"{genuine_count} genuine and {issame.size - genuine_count} impostor comparisons"
        )
    threshold = fixed_fmr_threshold(scores[~issame], fmr)
    actual_fmr = float(np.mean(scores[~issame] > threshold))
    false_non_match = issame & (scores <= threshold)
    order = np.argsort(quality, kind="stable")
    sorted_quality = quality[order]
    genuine_before = np.concatenate([[0], np.cumsum(issame[order])])
    errors_before = np.concatenate([[0], np.cumsum(false_non_match[order])])
    # Step j discards every comparison with a quality below the j-th distinct value.
    starts = np.concatenate([[0], np.nonzero(np.diff(sorted_quality))[0] + 1])
    genuine_kept = genuine_count - genuine_before[starts]
    errors_kept = errors_before[-1] - errors_before[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        fnmr = np.where(genuine_kept > 0, errors_kept / np.maximum(genuine_kept, 1), np.nan)
    return (
        starts / quality.size,
        fnmr.astype(np.float64),
        sorted_quality[starts],
        threshold,
        actual_fmr,
    )


def error_versus_discard(
    scores,
    issame,
    quality_a,
    quality_b=None,
    fmr=1e-3,
    discard_limit=0.2,
    n_folds=1,
):
    """Error-versus-discard characteristic (EDC) of a quality score, and its partial area.

    FNMR at a threshold fixed at the target FMR on all comparisons, as the comparisons
    with the lowest pair quality `min(q_a, q_b)` are discarded (ISO/IEC 29794-1; see the
    module docstring). Higher quality must mean a better image: pass `-q` for a
    degradation.

    Args:
        scores: float array `(P,)`, comparison scores (higher is more similar).
        issame: bool array `(P,)`, whether each comparison is genuine.
        quality_a: float array `(P,)`, quality of the first images; or the pair quality
            itself when `quality_b` is `None`.
        quality_b: float array `(P,)`, quality of the second images. Defaults to `None`.
        fmr: float in (0, 1]. False match rate of the fixed threshold. Defaults to `1e-3`
            (MagFace's ERC; ISO suggests the operating point of the application).
        discard_limit: float in (0, 1]. Upper end of the partial area. Defaults to `0.2`
            (Schlett et al.).
        n_folds: int. With more than one, the partial area is also computed on each of
            `n_folds` interleaved folds (`partial_area_folds`, for an error bar).
            Defaults to `1`.

    Returns:
        An `ErrorVersusDiscard`.

    Example:
        ```python
        edc = keras_face.evaluation.error_versus_discard(
            scores, issame, kappa[0::2], kappa[1::2], fmr=1e-3)
        print(edc.partial_area)
        ```

    References:
        - [ISO/IEC 29794-1:2024, Biometric sample quality](https://www.iso.org/standard/79519.html)
        - [Grother and Tabassi, Performance of Biometric Quality Measures, TPAMI 2007](https://doi.org/10.1109/TPAMI.2007.1019)
        - [Schlett et al., Considerations on the Evaluation of Biometric Quality
          Assessment Algorithms, 2023](https://arxiv.org/abs/2303.13294)
        - [Meng et al., MagFace, CVPR 2021](https://arxiv.org/abs/2103.06627)
    """
    scores = _finite_array("scores", scores)
    issame = np.asarray(issame)
    if issame.shape != scores.shape:
        raise ValueError(
            "issame must hold one flag per comparison. "
            f"Received: issame.shape={issame.shape}, scores.shape={scores.shape}"
        )
    issame = issame.astype(bool)
    if quality_b is None:
        quality = _finite_array("quality_a", quality_a, scores.size)
    else:
        quality = pair_quality(
            _finite_array("quality_a", quality_a, scores.size),
            _finite_array("quality_b", quality_b, scores.size),
        )
    fmr = float(fmr)
    if not 0.0 < fmr <= 1.0:
        raise ValueError(f"fmr must be in (0, 1]. Received: fmr={fmr}")
    discard_limit = float(discard_limit)
    if not 0.0 < discard_limit <= 1.0:
        raise ValueError(
            f"discard_limit must be in (0, 1]. Received: discard_limit={discard_limit}"
        )
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 1:
        raise ValueError(f"n_folds must be a positive integer. Received: n_folds={n_folds!r}")
    n_folds = int(n_folds)
    if scores.size < n_folds:
        raise ValueError(
            "The EDC needs at least one comparison per fold. "
            f"Received: {scores.size} comparisons for n_folds={n_folds}"
        )
    fractions, fnmr, thresholds, score_threshold, actual_fmr = _curve(scores, issame, quality, fmr)
    fold_areas = []
    if n_folds > 1:
        fold_of = np.arange(scores.size) % n_folds
        for fold in range(n_folds):
            keep = fold_of == fold
            fold_fractions, fold_fnmr, *_ = _curve(scores[keep], issame[keep], quality[keep], fmr)
            fold_areas.append(_step_area(fold_fractions, fold_fnmr, discard_limit))
    return ErrorVersusDiscard(
        discard_fraction=fractions,
        fnmr=fnmr,
        quality_threshold=thresholds,
        score_threshold=float(score_threshold),
        fmr=actual_fmr,
        partial_area=_step_area(fractions, fnmr, discard_limit),
        discard_limit=discard_limit,
        partial_area_folds=np.asarray(fold_areas, dtype=np.float64),
    )


def _ranks(values):
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.concatenate([[0], np.nonzero(np.diff(sorted_values))[0] + 1])
    ends = np.append(starts[1:], values.size)
    average = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman_correlation(values, reference):
    """Spearman's rank correlation `rho` between a quality score and a reference.

    The Pearson correlation of the ranks, ties given their average rank (as
    `scipy.stats.spearmanr`). For a quality score against a ground-truth degradation a
    strongly negative `rho` is good.

    Args:
        values: float array `(N,)`, e.g. the embedding norm or `kappa` of each image.
        reference: float array `(N,)`, e.g. the ground-truth quality.

    Returns:
        float in [-1, 1]; NaN when either array is constant.

    Example:
        ```python
        rho = keras_face.evaluation.spearman_correlation(kappa, degradation)
        ```
    """
    values = _finite_array("values", values)
    reference = _finite_array("reference", reference, values.size)
    if values.size < 2:
        raise ValueError(f"Spearman's rho needs at least 2 values. Received: {values.size} values")
    ranks_a = _ranks(values) - (values.size + 1) / 2.0
    ranks_b = _ranks(reference) - (values.size + 1) / 2.0
    denominator = math.sqrt(float(np.sum(ranks_a**2) * np.sum(ranks_b**2)))
    if denominator == 0.0:
        return math.nan
    return float(np.sum(ranks_a * ranks_b) / denominator)


def plot_error_versus_discard(
    curves,
    discard_limit=None,
    title="Error versus discard",
    ax=None,
    figsize=(6.0, 4.5),
):
    """Plot EDCs (FNMR against the fraction of comparisons discarded) of quality scores.

    Args:
        curves: an `ErrorVersusDiscard`, or a dict `{name: ErrorVersusDiscard}`; each
            name is shown with its partial area.
        discard_limit: float. Right end of the x axis, marked with a dotted line when
            below 1. Defaults to `None`: the curves' `discard_limit`.
        title: str. Axes title. Defaults to `"Error versus discard"`.
        ax: matplotlib Axes to draw on. Defaults to a new figure.
        figsize: tuple. Size of a new figure in inches. Defaults to `(6.0, 4.5)`.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:
        ```python
        figure = keras_face.evaluation.plot_error_versus_discard(
            {"kappa": edc_kappa, "norm": edc_norm, "random": edc_random})
        ```
    """
    if isinstance(curves, ErrorVersusDiscard):
        curves = {"": curves}
    curves = dict(curves)
    if not curves or not all(isinstance(c, ErrorVersusDiscard) for c in curves.values()):
        raise ValueError(
            "curves must be an ErrorVersusDiscard or a non-empty dict of them. "
            f"Received: curves={curves!r}"
        )
    figure, ax = figure_and_axes(ax, figsize)
    limit = discard_limit
    if limit is None:
        limit = max(curve.discard_limit for curve in curves.values())
    for name, curve in curves.items():
        label = f"{name} (area {curve.partial_area:.4f})" if name else None
        ax.step(curve.discard_fraction, curve.fnmr, where="post", linewidth=1.5, label=label)
    ax.set_xlim(0.0, min(1.0, 1.25 * limit))
    if limit < 1.0:
        ax.axvline(limit, color="gray", linestyle=":", linewidth=1.0)
    ax.set_ylim(bottom=0.0)
    ax.grid(linestyle="--", linewidth=0.5)
    first = next(iter(curves.values()))
    ax.set_xlabel("Fraction of comparisons discarded (lowest pair quality first)")
    ax.set_ylabel(f"FNMR at FMR {first.fmr:.1e} (fixed threshold)")
    ax.set_title(title)
    if any(curves):
        ax.legend(loc="upper right")
    return figure
