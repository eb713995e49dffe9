"""Gradient reversal: identity forward, `-scale` times the gradient backward."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_face")
class GradientReversal(keras.layers.Layer):
    """Gradient-reversal layer (Ganin and Lempitsky): `y = x`, `dL/dx = -scale * dL/dy`.

    Placed between a feature and an adversary (an age estimator in MTLFace, an occlusion
    generator), it lets the adversary learn to read the feature while the layers below
    learn to make it unreadable. Computed as `stop_gradient((1 + scale) x) - scale x`, so
    it needs no custom gradient and behaves alike on every backend; the forward value
    equals `x` up to one rounding (exactly for `scale` 0 and powers of two that keep
    `(1 + scale) x` exact).

    Place it before a whole network, never right before a loss: reversing the gradient of
    the loss itself makes the loss grow without bound (the NaNs reported for some
    reversal layers; MTLFace places it before its age-estimation MLP).

    Args:
        scale: float. The reversal coefficient `lambda >= 0` (MTLFace: `1`). Defaults to
            `1.0`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Example:
        ```python
        reverse = keras_face.layers.GradientReversal(scale=1.0)
        adversary_input = reverse(identity_features)
        ```

    References:
        - [Ganin and Lempitsky, Unsupervised Domain Adaptation by Backpropagation,
          ICML 2015](https://arxiv.org/abs/1409.7495)
        - [Huang et al., MTLFace, CVPR 2021](https://arxiv.org/abs/2103.01520)
    """

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise ValueError(f"scale must be a number. Received: scale={scale!r}")
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"scale must be finite and >= 0. Received: scale={scale}")
        self.scale = float(scale)
        self.supports_masking = True

    def call(self, inputs):
        return ops.stop_gradient(inputs * (1.0 + self.scale)) - inputs * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config
