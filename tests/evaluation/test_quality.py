"""Error-versus-discard and Spearman's rho against straightforward NumPy / SciPy references."""

import math

import numpy as np
import pytest
import scipy.stats

from keras_face.evaluation.quality import ErrorVersusDiscard
from keras_face.evaluation.quality import error_versus_discard
from keras_face.evaluation.quality import fixed_fmr_threshold
from keras_face.evaluation.quality import pair_quality
from keras_face.evaluation.quality import plot_error_versus_discard
from keras_face.evaluation.quality import spearman_correlation


def _reference_edc(scores, issame, quality, fmr, discard_limit):
    """Loop over every distinct pair quality; threshold by brute force over candidates."""
    impostors = scores[~issame]
    # Smallest candidate threshold (match: score > t) whose FMR is within the target.
    candidates = np.concatenate([[-np.inf], np.unique(impostors)])
    threshold = next(t for t in candidates if np.mean(impostors > t) <= fmr + 1e-12)
    fractions, fnmrs = [], []
    for value in np.unique(quality):
        kept = quality >= value
        genuine = kept & issame
        fractions.append(1.0 - kept.mean())
        fnmrs.append(np.mean(scores[genuine] <= threshold) if genuine.any() else np.nan)
    fractions = np.array(fractions)
    fnmrs = np.array(fnmrs)
    # Area of the step function on [0, limit], by fine sampling of x (midpoints).
    grid = (np.arange(200_000) + 0.5) / 200_000 * discard_limit
    step = np.searchsorted(fractions, grid, side="right") - 1
    values = np.nan_to_num(fnmrs[step], nan=0.0)
    return fractions, fnmrs, threshold, float(values.mean() * discard_limit)


def _synthetic(num_pairs=3000, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    issame = rng.random(num_pairs) < 0.3
    quality_a = rng.random(num_pairs)
    quality_b = rng.random(num_pairs)
    if ties:
        quality_a = np.round(quality_a * 8) / 8
        quality_b = np.round(quality_b * 8) / 8
    pair = np.minimum(quality_a, quality_b)
    # Genuine scores worse for low-quality pairs: a useful quality score.
    scores = np.where(issame, 0.5 + 0.4 * pair, 0.0) + rng.normal(0, 0.15, num_pairs)
    return scores, issame, quality_a, quality_b


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("fmr", [1e-3, 1e-2, 0.1])
def test_edc_matches_reference(ties, fmr):
    scores, issame, quality_a, quality_b = _synthetic(ties=ties)
    edc = error_versus_discard(scores, issame, quality_a, quality_b, fmr=fmr, discard_limit=0.3)
    fractions, fnmr, threshold, area = _reference_edc(
        scores, issame, np.minimum(quality_a, quality_b), fmr, 0.3
    )
    assert edc.score_threshold == threshold
    assert edc.fmr <= fmr
    np.testing.assert_allclose(edc.discard_fraction, fractions, rtol=0, atol=1e-12)
    np.testing.assert_allclose(edc.fnmr, fnmr, rtol=0, atol=1e-12)
    assert edc.partial_area == pytest.approx(area, abs=1e-5)
    # A useful quality score: FNMR falls as low-quality comparisons go.
    assert edc.fnmr[0] > edc.fnmr[np.searchsorted(edc.discard_fraction, 0.3)]


def test_edc_known_small_case():
    # 4 genuine (scores 0.1 .. 0.4), 10 impostors; FMR 0.1 allows 1 false match:
    # threshold = 2nd largest impostor = 0.3, a match is score > 0.3: genuine 0.1, 0.2 and
    # 0.3 are non-matches.
    impostors = np.linspace(-0.5, 0.35, 10)
    impostors[-2] = 0.3
    scores = np.concatenate([[0.1, 0.2, 0.3, 0.4], impostors])
    issame = np.array([True] * 4 + [False] * 10)
    # Quality: genuine 0.1 is the worst comparison, then the impostors, then the rest.
    quality = np.concatenate([[0.0, 0.9, 0.8, 0.7], np.full(10, 0.5)])
    edc = error_versus_discard(scores, issame, quality, fmr=0.1, discard_limit=1.0)
    assert edc.score_threshold == pytest.approx(0.3)
    assert edc.fmr == pytest.approx(0.1)
    np.testing.assert_allclose(edc.discard_fraction, [0, 1, 11, 12, 13] / np.float64(14))
    np.testing.assert_allclose(edc.fnmr, [3 / 4, 2 / 3, 2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(edc.quality_threshold, [0.0, 0.5, 0.7, 0.8, 0.9])
    expected = 0.75 / 14 + (2 / 3) * 11 / 14 + 1.0 * 2 / 14
    assert edc.partial_area == pytest.approx(expected)


def test_random_quality_is_the_floor():
    scores, issame, quality_a, quality_b = _synthetic(num_pairs=6000, seed=1)
    good = error_versus_discard(scores, issame, quality_a, quality_b, fmr=1e-2)
    rng = np.random.default_rng(2)
    random = error_versus_discard(
        scores, issame, rng.random(scores.size), rng.random(scores.size), fmr=1e-2
    )
    assert good.partial_area < 0.85 * random.partial_area


def test_edc_folds():
    scores, issame, quality_a, quality_b = _synthetic(num_pairs=2000)
    edc = error_versus_discard(scores, issame, quality_a, quality_b, fmr=1e-2, n_folds=5)
    assert edc.partial_area_folds.shape == (5,)
    for fold in range(5):
        keep = np.arange(scores.size) % 5 == fold
        alone = error_versus_discard(
            scores[keep], issame[keep], quality_a[keep], quality_b[keep], fmr=1e-2
        )
        assert edc.partial_area_folds[fold] == alone.partial_area
    single = error_versus_discard(scores, issame, quality_a, quality_b, fmr=1e-2)
    assert single.partial_area_folds.shape == (0,)
    assert single.partial_area == edc.partial_area


def test_fixed_fmr_threshold():
    impostors = np.arange(1000, dtype=np.float64)
    assert fixed_fmr_threshold(impostors, 1e-3) == 998.0
    assert fixed_fmr_threshold(impostors, 1e-2) == 989.0
    assert fixed_fmr_threshold(impostors, 1.0) == -math.inf


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_matches_scipy(ties):
    rng = np.random.default_rng(3)
    x = rng.normal(size=500)
    y = -0.7 * x + rng.normal(size=500)
    if ties:
        x = np.round(x)
        y = np.round(y * 2) / 2
    expected = scipy.stats.spearmanr(x, y).statistic
    assert spearman_correlation(x, y) == pytest.approx(expected, abs=1e-12)
    assert spearman_correlation(x, x**3) == pytest.approx(1.0)
    assert math.isnan(spearman_correlation(np.ones(5), np.arange(5.0)))


def test_pair_quality_is_min():
    np.testing.assert_array_equal(pair_quality([1.0, 5.0, 2.0], [3.0, 4.0, 2.0]), [1.0, 4.0, 2.0])


def test_bad_input():
    scores, issame, quality_a, quality_b = _synthetic(num_pairs=20)
    with pytest.raises(ValueError, match="n_folds=50"):
        error_versus_discard(scores, issame, quality_a, quality_b, n_folds=50)
    with pytest.raises(ValueError, match="quality_a"):
        error_versus_discard(scores, issame, np.full(20, np.nan), quality_b)
    with pytest.raises(ValueError, match="scores"):
        error_versus_discard(np.full(20, np.inf), issame, quality_a, quality_b)
    with pytest.raises(ValueError, match="fmr=0.0"):
        error_versus_discard(scores, issame, quality_a, quality_b, fmr=0.0)
    with pytest.raises(ValueError, match="discard_limit=1.5"):
        error_versus_discard(scores, issame, quality_a, quality_b, discard_limit=1.5)
    with pytest.raises(ValueError, match="0 genuine"):
        error_versus_discard(scores, np.zeros(20, bool), quality_a, quality_b)
    with pytest.raises(ValueError, match="quality_b.shape"):
        error_versus_discard(scores, issame, quality_a, quality_b[:5])
    with pytest.raises(ValueError, match="values"):
        spearman_correlation([np.nan, 1.0], [1.0, 2.0])


def test_plot():
    scores, issame, quality_a, quality_b = _synthetic(num_pairs=500)
    edc = error_versus_discard(scores, issame, quality_a, quality_b, fmr=1e-2)
    figure = plot_error_versus_discard({"true quality": edc, "same": edc})
    ax = figure.axes[0]
    assert len(ax.lines) == 3  # two curves and the limit line
    assert "area" in ax.get_legend().get_texts()[0].get_text()
    assert isinstance(edc, ErrorVersusDiscard)
    with pytest.raises(ValueError, match="curves"):
        plot_error_versus_discard({})
