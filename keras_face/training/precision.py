"""Mixed precision: build a model under a dtype policy without leaving the policy set.

Layers take their dtype policy when they are created, so the policy only needs to be in
force while the backbone and the head are built. Under `"mixed_float16"` Keras wraps the
optimizer in a `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling) at
`compile`; `"mixed_bfloat16"` needs no loss scaling. The margin heads compute in float32
whatever the policy, and the backbones' last layer returns float32 embeddings.
"""

import contextlib

import keras

PRECISIONS = (None, "float32", "mixed_float16", "mixed_bfloat16")


def validate_precision(precision):
    """Return the canonical policy name (`None` means float32)."""
    if precision in ("float32", "none", "None", ""):
        precision = None
    if precision not in PRECISIONS:
        raise ValueError(
            "mixed_precision must be null, 'mixed_float16' or 'mixed_bfloat16'. "
            f"Received: mixed_precision={precision!r}"
        )
    return precision


@contextlib.contextmanager
def dtype_policy_scope(precision):
    """Set the global dtype policy for the block, then restore the previous one.

    Args:
        precision: `None`/`"float32"`, `"mixed_float16"` or `"mixed_bfloat16"`.

    Example:
        ```python
        with keras_face.training.dtype_policy_scope("mixed_float16"):
            backbone = keras_face.models.iresnet50()
        ```
    """
    precision = validate_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision or "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
