"""Spatial pyramid pooling with PyTorch's adaptive-pooling bins."""

import keras
from keras import ops

POOL_MODES = ("avg", "max")


def adaptive_bins(length, bins):
    """PyTorch's adaptive-pooling windows: `[floor(i L / n), ceil((i + 1) L / n))`.

    Windows overlap when `n` does not divide `L` (for `L = 7`: `n = 2` gives `[0, 4)` and
    `[3, 7)`), and a window is never empty, even when `n > L`.

    Args:
        length: int. Size of the pooled axis `L`.
        bins: int. Number of windows `n`.

    Returns:
        list of `(start, stop)` pairs.

    Example:
        ```python
        keras_face.age_invariant.adaptive_bins(7, 3)  # [(0, 3), (2, 5), (4, 7)]
        ```
    """
    return [(index * length // bins, -(-(index + 1) * length // bins)) for index in range(bins)]


def validate_pool_sizes(pool_sizes):
    """Return `pool_sizes` as a tuple of positive ints, else raise naming it."""
    sizes = tuple(pool_sizes) if isinstance(pool_sizes, (list, tuple)) else None
    if not sizes or not all(
        isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in sizes
    ):
        raise ValueError(
            f"pool_sizes must be a non-empty sequence of positive integers. "
            f"Received: pool_sizes={pool_sizes!r}"
        )
    return sizes


@keras.saving.register_keras_serializable(package="keras_face")
class SpatialPyramidPooling(keras.layers.Layer):
    """Spatial pyramid pooling: adaptive pools at several grid sizes, concatenated.

    For each size `n` the map `(B, H, W, C)` is pooled (average or maximum) over the
    `n x n` windows of `adaptive_bins` (PyTorch's `AdaptiveAvgPool2d` /
    `AdaptiveMaxPool2d`), then flattened channel-major as PyTorch's `Flatten` of a
    `(B, C, n, n)` tensor; the sizes are concatenated: `(B, C * sum(n^2))`. MTLFace's
    attention module uses sizes `(1, 2, 3)`: `512 * 14 = 7168` values at 112 px. The
    windows are static slices, so any map size works (2 x 2 maps of small images too).

    Args:
        pool_sizes: sequence of int. Grid sizes. Defaults to `(1, 2, 3)`.
        mode: str. `"avg"` or `"max"`. Defaults to `"avg"`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Example:
        ```python
        spp = keras_face.age_invariant.SpatialPyramidPooling((1, 2, 3), "max")
        spp(feature_map).shape  # (batch, 14 * channels)
        ```

    References:
        - [He et al., Spatial Pyramid Pooling, ECCV 2014](https://arxiv.org/abs/1406.4729)
        - [Huang et al., MTLFace, CVPR 2021](https://arxiv.org/abs/2103.01520)
    """

    def __init__(self, pool_sizes=(1, 2, 3), mode="avg", **kwargs):
        super().__init__(**kwargs)
        self.pool_sizes = validate_pool_sizes(pool_sizes)
        if mode not in POOL_MODES:
            raise ValueError(f"mode must be 'avg' or 'max'. Received: mode={mode!r}")
        self.mode = mode

    def _pool(self, window):
        reduce = ops.mean if self.mode == "avg" else ops.max
        return reduce(window, axis=(1, 2))

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError(
                "SpatialPyramidPooling needs a static map size. "
                f"Received: input shape {tuple(inputs.shape)}"
            )
        pooled = []
        for size in self.pool_sizes:
            cells = [
                self._pool(inputs[:, top:bottom, left:right, :])
                for top, bottom in adaptive_bins(height, size)
                for left, right in adaptive_bins(width, size)
            ]
            # (B, n*n, C) -> (B, C, n*n) -> (B, C*n*n): PyTorch's channel-major flatten.
            grid = ops.transpose(ops.stack(cells, axis=1), (0, 2, 1))
            pooled.append(ops.reshape(grid, (-1, inputs.shape[-1] * size * size)))
        return ops.concatenate(pooled, axis=-1)

    def compute_output_shape(self, input_shape):
        cells = sum(size * size for size in self.pool_sizes)
        channels = input_shape[-1]
        return (input_shape[0], None if channels is None else channels * cells)

    def get_config(self):
        config = super().get_config()
        config.update(pool_sizes=list(self.pool_sizes), mode=self.mode)
        return config
