"""Straightforward NumPy re-implementations of the margin heads, from the design spec.

Written independently of `keras_face.heads` (no shared code, no keras): float64, one
sample and one class at a time, the formulas as the spec (`margin-heads.md`) states them
with `math.acos` / `math.cos`. Used to check the layers' numbers, and (by central
differences) their gradients.

`cosine_matrix(embeddings, kernel)` gives the clipped cosines `(N, C)` (kernel columns
are the class centres); the head functions (`arc_face(cosines, labels, scale, ...)`,
...) map cosines and labels to float64 logits `(N, C)`. The straight-through gradient
mode ("detached") has the gradient of `plain` (the margin only shifts the value).
`assert_matches_reference` compares float32 outputs with a reference.
"""

import math

import numpy as np

NORM_EPSILON = 1e-12  # F.normalize: x / max(||x||, eps)
CLIP_FALLBACK_EPSILON = 1e-4


def normalize(vector):
    """`v / max(||v||, 1e-12)` in float64 (1e20 squared is fine in float64)."""
    vector = np.asarray(vector, np.float64)
    norm = math.sqrt(float(np.sum(vector * vector)))
    return vector / max(norm, NORM_EPSILON)


def cosine_matrix(embeddings, kernel):
    """`c_ij = clip(x_hat_i . w_hat_j, -1, 1)`, one pair at a time."""
    embeddings = np.asarray(embeddings, np.float64)
    kernel = np.asarray(kernel, np.float64)
    centres = [normalize(kernel[:, j]) for j in range(kernel.shape[1])]
    cosines = np.zeros((embeddings.shape[0], kernel.shape[1]))
    for i in range(embeddings.shape[0]):
        x_hat = normalize(embeddings[i])
        for j, w_hat in enumerate(centres):
            cosines[i, j] = min(1.0, max(-1.0, float(np.dot(x_hat, w_hat))))
    return cosines


def sub_center_cosine_matrix(embeddings, kernel, sub_centers):
    """`c_ij = max_k c_i,(j,k)`, columns `j*K ... j*K + K - 1` belonging to class j."""
    all_cosines = cosine_matrix(embeddings, kernel)
    num_classes = kernel.shape[1] // sub_centers
    cosines = np.zeros((embeddings.shape[0], num_classes))
    for i in range(embeddings.shape[0]):
        for j in range(num_classes):
            cosines[i, j] = max(all_cosines[i, j * sub_centers + k] for k in range(sub_centers))
    return cosines


def closest_sub_centers(embeddings, kernel, sub_centers):
    """`k` of the sub-centre `(j, k)` closest to each sample, per class: `(N, C)` ints.

    Ties (e.g. a zero embedding, cosine 0 with every centre) give the lowest `k`.
    """
    all_cosines = cosine_matrix(embeddings, kernel)
    num_classes = kernel.shape[1] // sub_centers
    closest = np.zeros((embeddings.shape[0], num_classes), np.int64)
    for i in range(embeddings.shape[0]):
        for j in range(num_classes):
            candidates = [all_cosines[i, j * sub_centers + k] for k in range(sub_centers)]
            closest[i, j] = int(np.argmax(candidates))
    return closest


def arc_target(c, m, fallback):
    """ArcFace target cosine (spec section 4.1), for one sample."""
    theta = math.acos(c)
    shifted = math.cos(theta + m)
    threshold = math.cos(math.pi - m)
    if fallback == "none":
        return shifted
    if fallback == "cosface":
        return shifted if c > threshold else c - m * math.sin(m)
    if fallback == "easy":
        return shifted if c > 0.0 else c
    if fallback == "clip":
        angle = min(max(theta + m, CLIP_FALLBACK_EPSILON), math.pi - CLIP_FALLBACK_EPSILON)
        return math.cos(angle)
    if fallback == "reflect":
        return shifted if c > threshold else -2.0 - shifted
    raise ValueError(fallback)


def combined_target(c, m1, m2, m3, fallback):
    """Combined-margin target `cos(m1 theta + m2) - m3` (spec section 4.2), one sample."""
    angle = m1 * math.acos(c) + m2
    if fallback == "none":
        return math.cos(angle) - m3
    if fallback == "clip":
        angle = min(max(angle, CLIP_FALLBACK_EPSILON), math.pi - CLIP_FALLBACK_EPSILON)
        return math.cos(angle) - m3
    if fallback == "reflect":
        # Keras_insightface ArcfaceLoss: threshold cos((pi - m2) / m1), fallback
        # -2 (1 + m3) - phi.
        phi = math.cos(angle) - m3
        if (math.pi - m2) / m1 >= math.pi or c > math.cos((math.pi - m2) / m1):
            return phi
        return -2.0 * (1.0 + m3) - phi
    raise ValueError(fallback)


def _with_targets(cosines, labels, scale, target_function):
    """`scale * c` everywhere, the target column replaced by `target_function(i, c_y)`."""
    cosines = np.asarray(cosines, np.float64)
    logits = scale * cosines
    for i, label in enumerate(np.asarray(labels).reshape(-1)):
        logits[i, label] = target_function(i, cosines[i, label])
    return logits


# Logits from a cosine matrix `(N, C)` (clipped to [-1, 1]) and labels `(N,)`.


def plain(cosines, labels, scale):
    """`s * c` for every column: NormFace, inference, and the straight-through surrogate."""
    return scale * np.asarray(cosines, np.float64)


def cos_face(cosines, labels, scale, margin):
    return _with_targets(cosines, labels, scale, lambda i, c: scale * (c - margin))


def arc_face(cosines, labels, scale, margin, fallback):
    return _with_targets(
        cosines, labels, scale, lambda i, c: scale * arc_target(c, margin, fallback)
    )


def combined_margin(cosines, labels, scale, m1, m2, m3, fallback):
    return _with_targets(
        cosines, labels, scale, lambda i, c: scale * combined_target(c, m1, m2, m3, fallback)
    )


def elastic_plus_margins(draws, target_cosines, reference_order):
    """ElasticFace+ assignment of the draws to the samples (spec section 10).

    Monotone: the sample with the r-th largest target cosine gets the r-th smallest
    margin. `reference_order`: ElasticFace's `margin_sorted[argsort_desc(c_y)]`.
    Ties in the target cosine keep the sample order (stable sorts).
    """
    ascending = sorted(float(d) for d in draws)
    by_similarity = sorted(range(len(draws)), key=lambda i: -target_cosines[i])
    margins = [0.0] * len(draws)
    for position, sample in enumerate(by_similarity):
        if reference_order:
            margins[position] = ascending[sample]
        else:
            margins[sample] = ascending[position]
    return np.asarray(margins)


def elastic_arc_face(cosines, labels, scale, margins, fallback):
    """ElasticArcFace with the given per-sample margins `(N,)`."""
    return _with_targets(
        cosines, labels, scale, lambda i, c: scale * arc_target(c, margins[i], fallback)
    )


def elastic_cos_face(cosines, labels, scale, margins):
    """ElasticCosFace with the given per-sample margins `(N,)`."""
    return _with_targets(cosines, labels, scale, lambda i, c: scale * (c - margins[i]))


# Comparison.

# Largest error of the layers' float32 cosine on the edge cases is 3 half-ulps of 1
# (3 * 2**-24, the `3 w` row); 4 leaves a margin.
COSINE_ROUNDING = 4 * 2.0**-24


def assert_matches_reference(outputs, reference, cosines, scale, rtol=1e-5, atol=None):
    """Assert float32 `outputs` equal `reference(cosines)` up to float32 round-off.

    The tolerance has two parts, because float32 loses accuracy in two places:

    - evaluating the margin formula: `rtol` relative plus `atol` absolute
      (default `1e-6 * scale`: a logit is `s` times a number of magnitude <= 1, so its
      round-off is relative to `s`, not to the logit, which can be near 0);
    - the cosine itself, known only to a few float32 ulps. Near `|c| = 1` the margin
      functions have an unbounded derivative (`d cos(theta + m) / dc ~ 1 / sin(theta)`):
      a cosine that rounds from `1 - 1e-16` (float64) to `1 - 2e-7` (float32) moves
      `s cos(theta + m)` by `s sin(m) sqrt(4e-7)`, 0.02 for s = 64. No fixed tolerance
      covers that without hiding real errors elsewhere, so the output must lie within
      the reference's range over cosines within `COSINE_ROUNDING` of the exact one
      (the layer's output is the exact function of a cosine at most that far off).
      Cosines of exactly +-1 (axis-aligned inputs, computed exactly by the layers) get
      no such slack: there the value must match to `atol` (the spec's `1 - 1e-7` clamp
      would fail by 0.014 at s = 64).
    """
    outputs = np.asarray(outputs, np.float64)
    cosines = np.asarray(cosines, np.float64)
    if atol is None:
        atol = 1e-6 * scale
    delta = np.where(np.abs(cosines) == 1.0, 0.0, COSINE_ROUNDING)
    candidates = np.stack(
        [
            reference(cosines),
            reference(np.clip(cosines - delta, -1.0, 1.0)),
            reference(np.clip(cosines + delta, -1.0, 1.0)),
        ]
    )
    low, high = candidates.min(axis=0), candidates.max(axis=0)
    tolerance = atol + rtol * np.abs(candidates[0])
    bad = (outputs < low - tolerance) | (outputs > high + tolerance)
    if np.any(bad):
        rows, columns = np.nonzero(bad)
        lines = [
            f"  [{i}, {j}] got {outputs[i, j]!r}, reference {candidates[0][i, j]!r} "
            f"(range {low[i, j]!r}..{high[i, j]!r}, cosine {cosines[i, j]!r})"
            for i, j in zip(rows[:10], columns[:10])
        ]
        raise AssertionError(
            f"{bad.sum()} of {bad.size} logits differ from the reference:\n" + "\n".join(lines)
        )


def numerical_gradients(function, embeddings, kernel, weights, rows=None, step=1e-6):
    """Central-difference gradients of `sum(weights * function(embeddings, kernel))`.

    Args:
        function: `(embeddings float64, kernel float64) -> logits (N, C)`.
        embeddings, kernel: the point (float64 copies are taken).
        weights: `(N, C)` loss weights.
        rows: rows of `embeddings` to differentiate (all when None); the kernel gradient
            then uses only those rows, so pass the same rows to the layer.
        step: relative step (times the norm of the row / column; below the 1e-12
            normalisation floor, times 1e-12).

    Returns:
        `(gradient w.r.t. embeddings[rows], gradient w.r.t. kernel)`.
    """
    embeddings = np.asarray(embeddings, np.float64)
    kernel = np.asarray(kernel, np.float64)
    rows = np.arange(embeddings.shape[0]) if rows is None else np.asarray(rows)
    embeddings = embeddings[rows]
    weights = np.asarray(weights, np.float64)[rows]

    def loss(x, w):
        return float(np.sum(weights * function(x, w)))

    embedding_gradient = np.zeros_like(embeddings)
    for i in range(embeddings.shape[0]):
        h = step * max(np.linalg.norm(embeddings[i]), NORM_EPSILON)
        for k in range(embeddings.shape[1]):
            plus, minus = embeddings.copy(), embeddings.copy()
            plus[i, k] += h
            minus[i, k] -= h
            embedding_gradient[i, k] = (loss(plus, kernel) - loss(minus, kernel)) / (2 * h)
    kernel_gradient = np.zeros_like(kernel)
    for j in range(kernel.shape[1]):
        h = step * max(np.linalg.norm(kernel[:, j]), 1e-30)
        for k in range(kernel.shape[0]):
            plus, minus = kernel.copy(), kernel.copy()
            plus[k, j] += h
            minus[k, j] -= h
            kernel_gradient[k, j] = (loss(embeddings, plus) - loss(embeddings, minus)) / (2 * h)
    return embedding_gradient, kernel_gradient


def numerical_gradients_per_row(
    function, embeddings, kernel, labels, weights, rows, kernel_columns=None, step=1e-6
):
    """Central-difference gradients of `sum(weights[rows] * function(...))`, row by row.

    Faster than `numerical_gradients` for heads without batch statistics: a row's
    embedding only enters that row's logits, so each embedding derivative evaluates
    `function` on one row. Not for stateful heads whose logits couple the rows.

    Args:
        function: `(embeddings (n, d), kernel, labels (n,), rows (n,)) -> logits (n, C)`,
            float64; `rows` are the batch indices of the rows passed (for per-sample
            parameters such as ElasticFace's margins).
        embeddings, kernel, labels, weights: the full batch; only `rows` enter the loss.
        rows: the rows of the batch in the loss.
        kernel_columns: the kernel columns to differentiate (all when None); the other
            columns of the returned kernel gradient are NaN.
        step: relative step (times the norm of the row or column; below the 1e-12
            normalisation floor, times 1e-12).

    Returns:
        `(gradient w.r.t. embeddings[rows], gradient w.r.t. kernel)`.
    """
    rows = np.asarray(rows)
    embeddings = np.asarray(embeddings, np.float64)[rows]
    labels = np.asarray(labels)[rows]
    weights = np.asarray(weights, np.float64)[rows]
    kernel = np.asarray(kernel, np.float64)

    # Row i's embedding only enters row i's logits: differentiate one row at a time.
    embedding_gradient = np.zeros_like(embeddings)
    for i in range(embeddings.shape[0]):
        h = step * max(np.linalg.norm(embeddings[i]), NORM_EPSILON)
        for k in range(embeddings.shape[1]):
            plus, minus = embeddings[i : i + 1].copy(), embeddings[i : i + 1].copy()
            plus[0, k] += h
            minus[0, k] -= h
            row = rows[i : i + 1]
            difference = function(plus, kernel, labels[i : i + 1], row) - function(
                minus, kernel, labels[i : i + 1], row
            )
            embedding_gradient[i, k] = float(np.sum(weights[i] * difference)) / (2 * h)

    columns = range(kernel.shape[1]) if kernel_columns is None else kernel_columns
    kernel_gradient = np.full_like(kernel, np.nan)
    for j in columns:
        h = step * max(np.linalg.norm(kernel[:, j]), 1e-30)
        for k in range(kernel.shape[0]):
            plus, minus = kernel.copy(), kernel.copy()
            plus[k, j] += h
            minus[k, j] -= h
            difference = function(embeddings, plus, labels, rows) - function(
                embeddings, minus, labels, rows
            )
            kernel_gradient[k, j] = float(np.sum(weights * difference)) / (2 * h)
    return embedding_gradient, kernel_gradient


def assert_gradients_close(actual, expected, rtol=1e-4, axis=1):
    """`|actual - expected| <= rtol * max |expected|` per row (axis=1) or column (axis=0).

    Relative to each row's largest entry: the rows' gradients span many orders of
    magnitude (a 1e-20-norm embedding has gradients ~1e14), and float32 gradients are
    accurate relative to the largest term that enters them.
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    if axis == 0:  # kernel: only the differentiated (non-NaN) columns
        columns = ~np.all(np.isnan(expected), axis=0)
        actual, expected = actual[:, columns], expected[:, columns]
    scale = np.max(np.abs(expected), axis=axis, keepdims=True)
    error = np.abs(actual - expected)
    bad = error > rtol * scale + 1e-12
    if np.any(bad):
        index = np.argwhere(bad)[:5].tolist()
        raise AssertionError(
            f"{bad.sum()} gradient entries differ (first {index}): "
            f"got {actual[bad][:5]}, expected {expected[bad][:5]}"
        )
