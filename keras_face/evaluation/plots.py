"""ROC and score-distribution figures (matplotlib, without pyplot's global state)."""

import numpy as np

from keras_face.evaluation.roc import DEFAULT_FARS
from keras_face.evaluation.roc import roc_curve


def figure_and_axes(ax, figsize):
    """`(figure, ax)`: the given Axes and its figure, or a new one-Axes figure of `figsize`.

    A `matplotlib.figure.Figure` rather than `pyplot.figure`: no global state, nothing
    shown or kept alive by pyplot. Matplotlib is imported on first use.
    """
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.add_subplot(1, 1, 1)


def _as_curve(result):
    """`(fpr, tpr)` from a verify / evaluate_ijb result, a `{"fpr", "tpr"}` dict or a pair."""
    if isinstance(result, dict):
        if "roc" in result:
            return np.asarray(result["roc"]["fpr"]), np.asarray(result["roc"]["tpr"])
        if "fpr" in result and "tpr" in result:
            return np.asarray(result["fpr"]), np.asarray(result["tpr"])
        if "scores" in result and ("issame" in result or "labels" in result):
            labels = result["issame"] if "issame" in result else result["labels"]
            fpr, tpr, _ = roc_curve(labels, result["scores"])
            return fpr, tpr
        raise ValueError(
            "A curve must be a result of `verify`/`evaluate_ijb` or hold `fpr` and `tpr`. "
            f"Received: keys={sorted(result)}"
        )
    if isinstance(result, (tuple, list)) and len(result) >= 2:
        return np.asarray(result[0]), np.asarray(result[1])
    raise ValueError(
        f"Cannot read a ROC curve from the input. Received: type={type(result).__name__}"
    )


def _is_single_curve(results):
    if isinstance(results, dict):
        return any(key in results for key in ("roc", "fpr", "scores"))
    return isinstance(results, (tuple, list))


def plot_roc(results, log_scale=True, fars=DEFAULT_FARS, title="ROC", ax=None, figsize=(6.0, 4.5)):
    """Plot one or several ROC curves (TAR against FAR).

    Args:
        results: a result of `verify` or `evaluate_ijb`, an `(fpr, tpr)` pair, a dict with
            `fpr` and `tpr`, or a dict `{name: any of these}` for several curves.
        log_scale: bool. Logarithmic FAR axis, ticked at `fars`. Defaults to `True`.
        fars: sequence of float. FAR ticks (and the axis range) on the log scale.
            Defaults to `(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)`.
        title: str. Axes title. Defaults to `"ROC"`.
        ax: matplotlib Axes to draw on. Defaults to a new figure.
        figsize: tuple. Size of a new figure in inches. Defaults to `(6.0, 4.5)`.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:
        ```python
        figure = keras_face.evaluation.plot_roc({"lfw": result_a, "cfp_fp": result_b})
        figure.savefig("roc.png")
        ```
    """
    curves = {"": results} if _is_single_curve(results) else dict(results)
    if not curves:
        raise ValueError("`results` must hold at least one curve. Received: results={}")
    figure, ax = figure_and_axes(ax, figsize)
    for name, result in curves.items():
        fpr, tpr = _as_curve(result)
        ax.plot(fpr, tpr, linewidth=1.5, label=name or None)
    if log_scale:
        ticks = sorted(float(far) for far in fars)
        ax.set_xscale("log")
        ax.set_xlim(ticks[0], 1.0)
        ax.set_xticks(ticks)
    else:
        ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.grid(linestyle="--", linewidth=0.5)
    ax.set_xlabel("False accept rate (FAR)")
    ax.set_ylabel("True accept rate (TAR)")
    ax.set_title(title)
    if any(curves):
        ax.legend(loc="lower right")
    return figure


def plot_score_distribution(
    scores,
    issame,
    threshold=None,
    bins=100,
    title="Score distribution",
    ax=None,
    figsize=(6.0, 4.0),
):
    """Histograms of genuine and impostor pair scores.

    Args:
        scores: float array `(P,)` (e.g. `verify(...)["scores"]`, cosine similarities).
        issame: bool array `(P,)`, whether each pair is genuine.
        threshold: float. Draw a vertical line at this score. Defaults to `None`.
        bins: int. Number of histogram bins over the score range. Defaults to `100`.
        title: str. Axes title. Defaults to `"Score distribution"`.
        ax: matplotlib Axes to draw on. Defaults to a new figure.
        figsize: tuple. Size of a new figure in inches. Defaults to `(6.0, 4.0)`.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:
        ```python
        result = keras_face.evaluation.verify(embeddings, issame)
        figure = keras_face.evaluation.plot_score_distribution(result["scores"], issame)
        ```
    """
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame).astype(bool)
    if scores.shape != issame.shape or scores.ndim != 1:
        raise ValueError(
            "`scores` and `issame` must be 1-D of the same length. "
            f"Received: scores.shape={scores.shape}, issame.shape={issame.shape}"
        )
    figure, ax = figure_and_axes(ax, figsize)
    low, high = float(np.min(scores)), float(np.max(scores))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, int(bins) + 1)
    ax.hist(
        scores[issame], bins=edges, density=True, alpha=0.55, label=f"genuine ({int(issame.sum())})"
    )
    ax.hist(
        scores[~issame],
        bins=edges,
        density=True,
        alpha=0.55,
        label=f"impostor ({int((~issame).sum())})",
    )
    if threshold is not None:
        ax.axvline(
            float(threshold),
            color="black",
            linestyle="--",
            linewidth=1.0,
            label=f"threshold {float(threshold):.3f}",
        )
    ax.set_xlabel("Score")
    ax.set_ylabel("Density")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return figure
