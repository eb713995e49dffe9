"""Test helpers of the stateful heads (SphereFace, CurricularFace, MagFace, AdaFace).

Built on the shared helpers of `tests/heads` (`edge_cases`, `numpy_reference`):

- `with_norms`: the edge-case batch with its ordinary rows rescaled to given norms (the
  margins of MagFace and AdaFace depend on the norm);
- float64 per-sample NumPy re-implementations written from the spec (margin-heads.md
  sections 5, 7, 8, 9), independent of the Keras code (no Chebyshev recurrence): logits
  as functions of the cosine matrix (for `numpy_reference.assert_matches_reference`),
  and the state updates;
- (gradients of stateful heads: `tests/heads/gradients.py`, shared with every head);
- `assert_mixed_precision_training_close`: training-mode logits under the mixed policies,
  from the same state.
"""

import math

import keras
import numpy as np

from tests.heads.numpy_reference import arc_target
from tests.heads.numpy_reference import cosine_matrix


def with_norms(embeddings, norms, kernel, labels):
    """Rescale rows of norm in [1e-3, 1e3] to `norms` (cycled); others are kept.

    Rows whose target cosine is within 1e-6 of +-1 (axis-aligned, or `3 w` whose float32
    cosine rounds above 1) are scaled by the power of two nearest to the norm asked for:
    exact in float32, so their cosines stay bit-identical, as the edge cases designed
    them (another factor would round the row into a new direction).
    """
    embeddings = np.asarray(embeddings, np.float64).copy()
    current = np.linalg.norm(embeddings, axis=1)
    exact = np.abs(target_cosines(cosine_matrix(embeddings, kernel), labels)) > 1 - 1e-6
    ordinary = np.nonzero((current > 1e-3) & (current < 1e3))[0]
    for position, row in enumerate(ordinary):
        factor = norms[position % len(norms)] / current[row]
        if exact[row]:
            factor = 2.0 ** round(math.log2(factor))
        embeddings[row] *= factor
    return embeddings.astype(np.float32)


def random_batch(batch, num_classes, dim, norm_range=(1.0, 1.0), seed=0):
    """Random float32 embeddings with norms uniform in `norm_range`, and int32 labels."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(batch, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = rng.uniform(*norm_range, size=(batch, 1))
    labels = rng.integers(0, num_classes, size=(batch,))
    return (directions * norms).astype("float32"), labels.astype("int32")


def embedding_norms(embeddings):
    """`||x||` per row, float64 (1e20 squared is fine in float64)."""
    return np.linalg.norm(np.asarray(embeddings, np.float64), axis=1)


def target_cosines(cosines, labels):
    """`c_{i, y_i}` from a cosine matrix."""
    cosines = np.asarray(cosines, np.float64)
    return cosines[np.arange(cosines.shape[0]), np.asarray(labels).reshape(-1)]


# ------------------------------------------------------------------------------------------
# SphereFace (spec 5.1).
def sphere_face_lambda(iteration, base=1000.0, gamma=0.12, power=1.0, minimum=5.0):
    return max(minimum, base * (1.0 + gamma * iteration) ** (-power))


def sphere_face_psi(c, margin):
    """`(-1)^k cos(m theta) - 2k`, `k = floor(m theta / pi)`, by `math.acos`/`math.cos`."""
    theta = math.acos(c)
    k = math.floor(margin * theta / math.pi)
    return (-1) ** k * math.cos(margin * theta) - 2 * k


def sphere_face(
    cosines,
    labels,
    norms,
    iteration,
    margin=4,
    base=1000.0,
    gamma=0.12,
    power=1.0,
    minimum=5.0,
    normalize_features=False,
    scale=64.0,
):
    """A-Softmax logits with `lambda` at `iteration` (the counter after its increment)."""
    weight = sphere_face_lambda(iteration, base, gamma, power, minimum)
    cosines = np.asarray(cosines, np.float64)
    logits = np.empty_like(cosines)
    for i, label in enumerate(np.asarray(labels).reshape(-1)):
        factor = scale if normalize_features else norms[i]
        for j, c in enumerate(cosines[i]):
            if j == label:
                c = (weight * c + sphere_face_psi(c, margin)) / (1.0 + weight)
            logits[i, j] = factor * c
    return logits


# ------------------------------------------------------------------------------------------
# CurricularFace (spec 7).
def curricular_face_t(target_cosines, t, alpha=0.01):
    """`t <- alpha mean(c_y) + (1 - alpha) t`."""
    return alpha * float(np.mean(target_cosines)) + (1.0 - alpha) * t


def curricular_face(cosines, labels, t, scale=64.0, margin=0.5):
    """CurricularFace logits with the (already updated) `t`."""
    cosines = np.asarray(cosines, np.float64)
    logits = np.empty_like(cosines)
    for i, label in enumerate(np.asarray(labels).reshape(-1)):
        c_y = cosines[i, label]
        raw = c_y * math.cos(margin) - math.sqrt(1.0 - c_y * c_y) * math.sin(margin)
        for j, c in enumerate(cosines[i]):
            logits[i, j] = scale * (c * (t + c) if c > raw else c)
        logits[i, label] = scale * arc_target(c_y, margin, "cosface")
    return logits


# ------------------------------------------------------------------------------------------
# MagFace (spec 8).
def mag_face(
    cosines,
    labels,
    norms,
    scale=64.0,
    lower_norm=10.0,
    upper_norm=110.0,
    lower_margin=0.45,
    upper_margin=0.8,
    lambda_g=35.0,
    easy_margin=True,
    variant="arcface",
):
    """MagFace logits."""
    cosines = np.asarray(cosines, np.float64)
    logits = scale * cosines
    for i, label in enumerate(np.asarray(labels).reshape(-1)):
        a = min(max(norms[i], lower_norm), upper_norm)
        m = (upper_margin - lower_margin) / (upper_norm - lower_norm) * (a - lower_norm)
        m += lower_margin
        c = cosines[i, label]
        if variant == "cosface":
            target = c - m
        else:
            phi = c * math.cos(m) - math.sqrt(1.0 - c * c) * math.sin(m)
            if easy_margin:
                target = phi if c > 0 else c
            else:
                target = phi if c > math.cos(math.pi - m) else c - math.sin(math.pi - m) * m
        logits[i, label] = scale * target
    return logits


def mag_face_loss(norms, lower_norm=10.0, upper_norm=110.0, lambda_g=35.0, **unused):
    """`lambda_g * mean(a / u_a^2 + 1 / a)`, `a = clip(||x||, l_a, u_a)`."""
    values = [
        min(max(n, lower_norm), upper_norm) / upper_norm**2
        + 1.0 / min(max(n, lower_norm), upper_norm)
        for n in norms
    ]
    return lambda_g * float(np.mean(values))


# ------------------------------------------------------------------------------------------
# AdaFace (spec 9).
def ada_face_state(norms, mean, std, alpha=0.01):
    """`(mean, std)` after one batch: EMA of the clipped norms' mean and unbiased std."""
    safe = np.clip(np.asarray(norms, np.float64), 0.001, 100.0)
    count = len(safe)
    batch_std = math.sqrt(float(np.sum((safe - safe.mean()) ** 2)) / max(count - 1, 1))
    return (
        alpha * float(safe.mean()) + (1.0 - alpha) * mean,
        alpha * batch_std + (1.0 - alpha) * std,
    )


def ada_face(cosines, labels, norms, mean, std, scale=64.0, margin=0.4, h=0.333, eps=1e-3):
    """AdaFace logits with the (already updated) `mean`, `std`."""
    cosines = np.asarray(cosines, np.float64)
    logits = np.empty_like(cosines)
    for i, label in enumerate(np.asarray(labels).reshape(-1)):
        norm = min(max(norms[i], 0.001), 100.0)
        standardized = min(max(h * (norm - mean) / (std + eps), -1.0), 1.0)
        g_angle, g_add = -margin * standardized, margin + margin * standardized
        for j, c in enumerate(cosines[i]):
            theta = math.acos(min(max(c, -1.0 + eps), 1.0 - eps))
            if j == label:
                theta = min(max(theta + g_angle, eps), math.pi - eps)
                logits[i, j] = scale * (math.cos(theta) - g_add)
            else:
                logits[i, j] = scale * math.cos(min(max(theta, eps), math.pi - eps))
    return logits


# ------------------------------------------------------------------------------------------
def build_head(head_cls, kernel, **kwargs):
    """A head built for `kernel.shape[0]`-dimensional embeddings, kernel set to `kernel`."""
    head = head_cls(kernel.shape[1], **kwargs)
    head.build([(None, kernel.shape[0]), (None,)])
    head.kernel.assign(kernel)
    return head


def state_values(head):
    """`{weight name: float}` of the head's non-trainable weights."""
    return {
        v.name: float(keras.ops.convert_to_numpy(v.value)) for v in head.non_trainable_variables
    }


def assert_mixed_precision_training_close(head_cls, init_kwargs, embeddings, labels, atol):
    """Training-mode logits under mixed policies equal float32's from the same state."""
    reference_head = head_cls(**init_kwargs)
    inputs = [keras.ops.convert_to_tensor(embeddings), keras.ops.convert_to_tensor(labels)]
    reference_head(inputs, training=False)  # build
    snapshot = reference_head.get_weights()
    reference = keras.ops.convert_to_numpy(reference_head(inputs, training=True))
    for policy in ("mixed_float16", "mixed_bfloat16"):
        head = head_cls(**init_kwargs, dtype=policy)
        head(inputs, training=False)
        head.set_weights(snapshot)
        out = head(inputs, training=True)
        assert keras.backend.standardize_dtype(out.dtype) == "float32", policy
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(out), reference, rtol=0, atol=atol, err_msg=policy
        )
        for variable, value in zip(
            head.non_trainable_variables, reference_head.non_trainable_variables
        ):
            assert keras.backend.standardize_dtype(
                variable.dtype
            ) == keras.backend.standardize_dtype(value.dtype), policy
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(variable.value),
                keras.ops.convert_to_numpy(value.value),
                rtol=1e-6,
                err_msg=policy,
            )
