"""`DepthwiseConv2D` that stays fast where XLA compiles it for a CPU.

XLA's CPU backend computes a depthwise convolution (a convolution with one feature group
per channel) with a slow generic loop: MobileFaceNet's 3x3 depthwise layers took 5 to 20
times longer under TensorFlow's `jit_compile=True` than in its graph mode, and JAX on a
CPU is XLA throughout. Written as the sum, over the `kh * kw` kernel positions, of a
shifted (strided) slice of the padded input times that position's per-channel weights,
the same arithmetic is a few elementwise operations that XLA fuses into one loop; its
backward pass is written by hand (`keras_face.models.conv2d.sliced_convolution`,
`keras_face.models.conv_gradients`), the one automatic differentiation derives being a
slow reduction per kernel position. `keras_face.models.DepthwiseConv2D` is a drop-in subclass of
`keras.layers.DepthwiseConv2D` (same weights, outputs to float32 rounding, gradients)
that switches to that form while XLA compiles it for a CPU, and keeps the backend's own
depthwise kernel everywhere else: TensorFlow's graph mode (and so ONNX export), PyTorch
and GPUs.

Measured with forward + backward, batch 8, on a 2-core CPU under TensorFlow's XLA, against
XLA's depthwise convolution: 44 ms against 282 ms for 128 channels at 56 x 56, stride 1;
22 ms against 190 ms at stride 2; 36 ms against 130 ms for 256 channels at 28 x 28
(`benchmarks/grouped_conv.py --depthwise`, automatic differentiation of the shifted
form). With the hand-written backward pass: 26 against 59 ms (TensorFlow's XLA) and 14
against 57 ms (JAX) at 56 x 56; 11 against 80 ms and 6 against 28 ms at 28 x 28.

The class keeps Keras' name on purpose: `.weights.h5` / `.keras` files store a model's
weights under paths made from its layers' class names (`depthwise_conv2d`, ...), so only
a class named `DepthwiseConv2D` reads and writes the files of models built with
`keras.layers.DepthwiseConv2D`, in both directions.
"""

import keras

from keras_face.models.conv2d import compiling_with_xla_for_cpu
from keras_face.models.conv2d import shifted_convolution
from keras_face.models.conv2d import sliced_convolution

DEPTHWISE_IMPLEMENTATIONS = ("auto", "native", "shifted")


@keras.saving.register_keras_serializable(package="keras_face")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D`, computed as shifted slices where XLA targets a CPU.

    Same constructor, weights (`kernel` of shape `(kh, kw, channels, depth_multiplier)`,
    `bias`), parameter count, outputs and gradients as `keras.layers.DepthwiseConv2D`, so
    weight files of one load into the other. Only the computation can differ (see the
    module docstring).

    Args:
        kernel_size: int or (int, int).
        implementation: str. `"native"` (`keras.ops.depthwise_conv`), `"shifted"` (the
            sum of `kh * kw` shifted slices times per-channel weights) or `"auto"`:
            `"shifted"` while XLA compiles the layer for a CPU (TensorFlow with
            `jit_compile=True` on a machine without a GPU, JAX on a CPU), `"native"`
            otherwise; decided each time the layer is traced. Defaults to `"auto"`.
        **kwargs: the other arguments of `keras.layers.DepthwiseConv2D` (`strides`,
            `padding`, `depth_multiplier`, `dilation_rate`, `use_bias`, initializers, ...).

    Example:
        ```python
        layer = keras_face.models.DepthwiseConv2D(3, padding="same")
        outputs = layer(keras.random.normal((8, 56, 56, 128)))  # (8, 56, 56, 128)
        ```

    References:
        - [Howard et al., MobileNets, 2017](https://arxiv.org/abs/1704.04861)
        - [Chen et al., MobileFaceNets, 2018](https://arxiv.org/abs/1804.07573)
    """

    def __init__(self, kernel_size, implementation="auto", **kwargs):
        if implementation not in DEPTHWISE_IMPLEMENTATIONS:
            raise ValueError(
                f"`implementation` must be one of {DEPTHWISE_IMPLEMENTATIONS}. "
                f"Received: implementation={implementation!r}"
            )
        super().__init__(kernel_size, **kwargs)
        self.implementation = implementation

    def resolved_implementation(self):
        """The implementation this layer computes with now (`"auto"` resolved)."""
        if self.data_format != "channels_last":
            return "native"
        if self.implementation == "auto":
            return "shifted" if compiling_with_xla_for_cpu() else "native"
        return self.implementation

    def call(self, inputs):
        if self.resolved_implementation() != "shifted" or None in inputs.shape[1:3]:
            return super().call(inputs)
        kernel = self.kernel
        height, width, channels, multiplier = kernel.shape
        # (kh, kw, C, M) -> the grouped layout with C groups of one input channel:
        # output channel c * M + m in both.
        outputs = sliced_convolution(
            inputs,
            keras.ops.reshape(kernel, (height, width, 1, channels * multiplier)),
            groups=channels,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            convolution=shifted_convolution,
        )
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config["implementation"] = self.implementation
        return config
