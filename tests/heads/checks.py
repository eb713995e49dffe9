"""Checks shared by the head tests: outputs and gradients against the NumPy reference.

A reference is a function `(cosines (N, C) float64, labels (N,)) -> logits (N, C)` from
`tests/heads/numpy_reference.py`. The edge-case batch comes from `edge_cases.py`; every
check uses its shapes, so that JAX's eager mode compiles each operation once per test
session.
"""

import hashlib

import keras
import numpy as np

from tests.heads import numpy_reference as ref
from tests.heads.gradients import head_gradients

# Rows whose gradient is compared with central differences: away from |c| = 1 and from
# fallback thresholds, where the logits are smooth functions of the inputs. All other
# rows (|c| = 1, cosines rounding past +-1, zero / tiny / huge norms) are checked for
# finite gradients.
_NUMERICAL_CACHE = {}

SMOOTH_ROWS = ("at 10.0 deg", "at 60.0 deg", "at 120.0 deg", "at 160.0 deg", "random")


def smooth_rows(cases, exclude=()):
    return [
        i
        for i, d in enumerate(cases.descriptions)
        if any(k in d for k in SMOOTH_ROWS) and not any(k in d for k in exclude)
    ]


def outputs(layer, embeddings, labels, training):
    """The layer's logits as float64 NumPy, after checking they are float32 and finite."""
    out = layer([embeddings, labels], training=training)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    out = np.asarray(keras.ops.convert_to_numpy(out), np.float64)
    assert np.all(np.isfinite(out)), "non-finite logits"
    return out


def check_outputs(layer, cases, reference, scale, cosines=None, training=True):
    """Training (or inference) logits on the edge cases equal the reference."""
    if cosines is None:
        cosines = ref.cosine_matrix(cases.embeddings, cases.kernel)
    ref.assert_matches_reference(
        outputs(layer, cases.embeddings, cases.labels, training),
        lambda c: reference(c, cases.labels),
        cosines,
        scale,
    )


def check_gradients(
    layer,
    cases,
    reference,
    cosine_function=ref.cosine_matrix,
    exclude_rows=(),
    seed=0,
    cache_key=None,
    pass_rows=False,
):
    """Finite gradients on every edge case; equal to central differences where smooth.

    Args:
        layer: the head, built, with `cases.kernel` (or its sub-centre kernel) set.
        cases: the edge cases (the kernel used is `layer.kernel`).
        reference: `(cosines, labels) -> logits` whose true gradient the layer's should
            equal (for a straight-through mode: `numpy_reference.plain`).
        cosine_function: `(embeddings, kernel) -> cosines` of the reference.
        exclude_rows: substrings of row descriptions left out of the comparison.
        seed: seed of the loss weights.
        cache_key: hashable naming the reference (e.g. `("arcface", "none")`): tests
            with the same key and cases reuse the central differences (the slow part).
        pass_rows: call `reference(cosines, labels, rows)` with the batch indices of
            the rows (for per-sample parameters).

    Returns:
        The `HeadGradients` of the full loss.
    """
    kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel), np.float64)
    num_classes = layer.num_classes
    weights = np.random.default_rng(seed).normal(size=(len(cases.labels), num_classes))
    grads = head_gradients(layer, cases.embeddings, cases.labels, weights)
    assert np.all(np.isfinite(grads.embeddings)), "non-finite embedding gradient"
    for path, value in grads.variables.items():
        assert np.all(np.isfinite(value)), f"non-finite gradient of {path}"

    rows = smooth_rows(cases, exclude_rows)
    masked = np.zeros_like(weights)
    masked[rows] = weights[rows]
    masked_grads = head_gradients(layer, cases.embeddings, cases.labels, masked)
    grad_x, grad_vars = masked_grads.embeddings, masked_grads.variables
    key = None
    if cache_key is not None:
        content = hashlib.sha1()
        for array in (cases.embeddings, cases.labels, kernel, weights, np.asarray(rows)):
            content.update(np.ascontiguousarray(array).tobytes())
        key = (cache_key, content.hexdigest())
    if key in _NUMERICAL_CACHE:
        expected_x, expected_kernel = _NUMERICAL_CACHE[key]
    else:
        # Kernel columns: the first two classes' (targets of most rows) and the last.
        per_class = kernel.shape[1] // num_classes
        columns = list(range(2 * per_class)) + [kernel.shape[1] - 1]
        expected_x, expected_kernel = ref.numerical_gradients_per_row(
            lambda x, w, labels, batch_rows: (
                reference(cosine_function(x, w), labels, batch_rows)
                if pass_rows
                else reference(cosine_function(x, w), labels)
            ),
            cases.embeddings,
            kernel,
            cases.labels,
            weights,
            rows,
            kernel_columns=columns,
        )
        if key is not None:
            _NUMERICAL_CACHE[key] = expected_x, expected_kernel
    ref.assert_gradients_close(grad_x[rows], expected_x)
    ref.assert_gradients_close(grad_vars[layer.kernel.path], expected_kernel, axis=0)
    return grads
