"""`ApplyOcclusion`: `x * (1 - m) + fill * m` with masks broadcast over channels."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_face")
class ApplyOcclusion(keras.layers.Layer):
    """Occlude images or feature maps: `x * (1 - m) + fill * m`.

    Called as `layer([x, masks])` with `x` of shape `(B, H, W, C)` and masks `(B, H, W)`
    or `(B, H, W, 1)` in [0, 1] (1 = occluded), broadcast over the channels. For images
    preprocessed to [-1, 1] the neutral grey 127.5 is `fill = 0`; for feature maps `0`
    drops the features.

    Args:
        fill: float. Value of occluded entries. Defaults to `0.0`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Example:
        ```python
        occluded = keras_face.occlusion.ApplyOcclusion()([images, masks])
        ```
    """

    def __init__(self, fill=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not math.isfinite(fill):
            raise ValueError(f"fill must be a finite number. Received: fill={fill!r}")
        self.fill = float(fill)

    def call(self, inputs):
        x, masks = inputs
        masks = ops.cast(masks, x.dtype)
        if len(masks.shape) == len(x.shape) - 1:
            masks = ops.expand_dims(masks, -1)
        return x * (1.0 - masks) + self.fill * masks

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config["fill"] = self.fill
        return config
