"""Random inputs for every head and embedding dtype: logits, loss and gradients stay finite.

Each case is a batch of 6 rows (every tenth case: 1 row) with a random mix of:
ordinary Gaussian rows, rows scaled to extreme norms (within the dtype's range: 1e-30 ..
1e30 for float32 and bfloat16, 1e-7 .. 6e4 for float16), zero rows, rows parallel or
opposite to a class centre (cosines of exactly or nearly +-1), and labels at the bounds 0
and C - 1. The head's kernel has columns of different norms. One head per name and dtype
sees all the cases in turn (its state, if any, carries over). Checked: finite float32
logits (a call with embeddings of the dtype itself and a training call through the
gradient harness), finite loss, finite gradients w.r.t. the kernel and the embeddings,
finite state.

The default run makes 12 cases per head and dtype (every row kind and both batch sizes
appear); the `slow` one 1,000.
"""

import zlib

import keras
import numpy as np
import pytest

import keras_face
from tests.heads.gradients import head_gradients

C, DIM = 5, 8
NAMES = keras_face.heads.names()
DTYPES = ("float32", "float16", "bfloat16")
NORM_RANGES = {"float32": (-30, 30), "bfloat16": (-30, 30), "float16": (-7, 4.8)}


def quantize(values, dtype):
    """`values` rounded to `dtype` and back to float32 (what a `dtype` embedding holds)."""
    tensor = keras.ops.convert_to_tensor(values.astype("float32"), dtype=dtype)
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(tensor, "float32")))


def random_case(rng, kernel, dtype, size):
    labels = rng.integers(0, C, size=size)
    labels[rng.random(size) < 0.3] = 0
    labels[rng.random(size) < 0.3] = C - 1
    embeddings = rng.normal(size=(size, DIM))
    low, high = NORM_RANGES[dtype]
    for row in range(size):
        kind = rng.integers(0, 6)
        if kind == 1:  # an extreme norm
            embeddings[row] *= 10.0 ** rng.uniform(low, high) / np.linalg.norm(embeddings[row])
        elif kind == 2:
            embeddings[row] = 0.0
        elif kind in (3, 4):  # along (or against) a class centre: |cos| = 1 or nearly
            sign = 1.0 if kind == 3 else -1.0
            centre = kernel[:, rng.integers(0, C)]
            scale = 10.0 ** rng.uniform(low / 2, high / 2) / np.linalg.norm(centre)
            embeddings[row] = sign * scale * centre + 1e-6 * rng.normal(size=DIM) * (kind == 4)
    return quantize(embeddings, dtype), labels.astype("int32")


def assert_finite(values, what):
    values = np.asarray(values)
    assert np.all(np.isfinite(values)), f"non-finite {what}"


def fuzz(name, dtype, cases, seed):
    rng = np.random.default_rng(seed)
    head = keras_face.heads.get(name, C)
    kernel = rng.normal(size=(DIM, C * head.sub_centers)) * 10.0 ** rng.uniform(
        -3, 3, size=C * head.sub_centers
    )
    head.build([(None, DIM), (None,)])
    head.kernel.assign(kernel.astype("float32"))
    for case in range(cases):
        # Two batch shapes only (JAX compiles each operation once per shape).
        embeddings, labels = random_case(rng, kernel, dtype, size=1 if case % 10 == 0 else 6)
        context = f"{name} {dtype} case {case}: embeddings={embeddings!r}, labels={labels!r}"
        logits = head(
            [keras.ops.convert_to_tensor(embeddings, dtype=dtype), labels], training=False
        )
        assert keras.backend.standardize_dtype(logits.dtype) == "float32", context
        assert_finite(keras.ops.convert_to_numpy(logits), f"inference logits, {context}")
        result = head_gradients(head, embeddings, labels)
        assert_finite(result.logits, f"logits, {context}")
        loss = keras.losses.sparse_categorical_crossentropy(labels, result.logits, from_logits=True)
        assert_finite(keras.ops.convert_to_numpy(loss), f"loss, {context}")
        assert_finite(result.kernel, f"kernel gradient, {context}")
        assert_finite(result.embeddings, f"embedding gradient, {context}")
        for variable in head.non_trainable_variables:
            if "float" in variable.dtype:
                assert_finite(keras.ops.convert_to_numpy(variable), f"{variable.path}, {context}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name, dtype):
    fuzz(name, dtype, cases=12, seed=zlib.crc32(f"{name} {dtype}".encode()))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_fuzz_large(name, dtype):
    fuzz(name, dtype, cases=1000, seed=zlib.crc32(f"{name} {dtype} large".encode()))
