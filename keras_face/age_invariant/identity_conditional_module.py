"""MTLFace's identity conditional module: task-router masks that condition on the age group."""

import math

import keras
import numpy as np
from keras import ops

from keras_face.age_invariant.age_estimation_head import validate_num_groups


def task_router_layout(num_groups, unit_count=128, sigma=0.1):
    """Channels of MTLFace's `TaskRouter`: `(conv_dim, starts)`.

    `conv_dim = int((G - (G - 1) sigma) unit_count)`; group `i` keeps the channels
    `[start_i, start_i + unit_count)` with `start_0 = 0` and
    `start_{i+1} = int(start_i + (1 - sigma) unit_count)`: consecutive groups share
    about `sigma * unit_count` channels, the weight sharing that makes ageing smooth.

    Args:
        num_groups: int. Age groups `G` (4 to 8).
        unit_count: int. Channels per group. Defaults to `128`.
        sigma: float. Shared fraction, in [0, 1). Defaults to `0.1`.

    Returns:
        `(conv_dim, starts)`: int and list of int.

    Example:
        ```python
        keras_face.age_invariant.task_router_layout(7, 128, 0.1)
        # (819, [0, 115, 230, 345, 460, 575, 690])
        ```
    """
    num_groups = validate_num_groups(num_groups)
    if isinstance(unit_count, bool) or not isinstance(unit_count, int) or unit_count < 1:
        raise ValueError(
            f"unit_count must be a positive integer. Received: unit_count={unit_count!r}"
        )
    if not (math.isfinite(sigma) and 0 <= sigma < 1):
        raise ValueError(f"sigma must be in [0, 1). Received: sigma={sigma}")
    conv_dim = int((num_groups - (num_groups - 1) * sigma) * unit_count)
    starts = [0]
    for _ in range(num_groups - 1):
        starts.append(int(starts[-1] + (1 - sigma) * unit_count))
    return conv_dim, starts


def task_router_masks(num_groups, unit_count=128, sigma=0.1):
    """The binary masks `(G, conv_dim)` of `task_router_layout` (float32).

    Example:
        ```python
        masks = keras_face.age_invariant.task_router_masks(4, 16)  # (4, 59)
        ```
    """
    conv_dim, starts = task_router_layout(num_groups, unit_count, sigma)
    masks = np.zeros((len(starts), conv_dim), dtype=np.float32)
    for group, start in enumerate(starts):
        masks[group, start : start + unit_count] = 1.0
    return masks


@keras.saving.register_keras_serializable(package="keras_face")
class IdentityConditionalModule(keras.layers.Layer):
    """MTLFace's identity conditional module (ICM): identity features at a target age group.

    `[features (B, H, W, C), group (B,)] -> (B, H, W, C)`: a 1x1 convolution to
    `conv_dim` channels, batch norm and PReLU, the task router (only the channels of the
    target group pass, `task_router_masks`), `num_blocks` residual blocks
    (`conv3x3 -> router -> PReLU -> conv3x3 -> router`, plus the input), and a 1x1
    convolution back to `C` channels. The face-age synthesis network of MTLFace puts an
    upsampling decoder behind it and trains it as a GAN; this package gives the module
    at tutorial level (a decoder trained to paired targets in the notebook).

    Args:
        num_groups: int. Age groups (4 to 8). Defaults to `7`.
        unit_count: int. Channels per group. Defaults to `128`.
        sigma: float. Fraction of channels shared by neighbouring groups. Defaults to `0.1`.
        num_blocks: int. Residual blocks. Defaults to `4`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Example:
        ```python
        icm = keras_face.age_invariant.IdentityConditionalModule(num_groups=4, unit_count=16)
        aged_features = icm([x_id, target_groups])
        ```

    References:
        - [Huang et al., MTLFace, CVPR 2021](https://arxiv.org/abs/2103.01520)
    """

    def __init__(self, num_groups=7, unit_count=128, sigma=0.1, num_blocks=4, **kwargs):
        super().__init__(**kwargs)
        self.conv_dim, self.starts = task_router_layout(num_groups, unit_count, sigma)
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 0:
            raise ValueError(
                f"num_blocks must be an integer >= 0. Received: num_blocks={num_blocks!r}"
            )
        self.num_groups = int(num_groups)
        self.unit_count = unit_count
        self.sigma = float(sigma)
        self.num_blocks = num_blocks
        self.masks = task_router_masks(num_groups, unit_count, sigma)

    def build(self, input_shape):
        feature_shape = input_shape[0]
        channels = feature_shape[-1]
        hidden_shape = (*feature_shape[:3], self.conv_dim)
        self.project = keras.layers.Conv2D(
            self.conv_dim, 1, use_bias=False, name="project", dtype=self.dtype_policy
        )
        self.project.build(feature_shape)
        self.project_bn = keras.layers.BatchNormalization(
            name="project_bn", dtype=self.dtype_policy
        )
        self.project_bn.build(hidden_shape)
        self.project_prelu = keras.layers.PReLU(
            shared_axes=(1, 2), name="project_prelu", dtype=self.dtype_policy
        )
        self.project_prelu.build(hidden_shape)
        self.blocks = []
        for index in range(self.num_blocks):
            first = keras.layers.Conv2D(
                self.conv_dim, 3, padding="same", name=f"block{index}_a", dtype=self.dtype_policy
            )
            second = keras.layers.Conv2D(
                self.conv_dim, 3, padding="same", name=f"block{index}_b", dtype=self.dtype_policy
            )
            prelu = keras.layers.PReLU(
                shared_axes=(1, 2), name=f"block{index}_prelu", dtype=self.dtype_policy
            )
            for layer in (first, second, prelu):
                layer.build(hidden_shape)
            self.blocks.append((first, prelu, second))
        self.output_conv = keras.layers.Conv2D(channels, 1, name="output", dtype=self.dtype_policy)
        self.output_conv.build(hidden_shape)

    def call(self, inputs, training=None):
        features, groups = inputs
        mask = ops.take(ops.convert_to_tensor(self.masks), ops.cast(groups, "int32"), axis=0)
        x = self.project_prelu(self.project_bn(self.project(features), training=training))
        mask = ops.cast(ops.reshape(mask, (-1, 1, 1, self.conv_dim)), x.dtype)
        x = x * mask
        for first, prelu, second in self.blocks:
            x = x + second(prelu(first(x) * mask)) * mask
        return self.output_conv(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_groups=self.num_groups,
            unit_count=self.unit_count,
            sigma=self.sigma,
            num_blocks=self.num_blocks,
        )
        return config
