"""`Conv2D` whose grouped convolutions use operations with fast kernels on every backend.

`keras.layers.Conv2D(groups=G)` is exact but, on the TensorFlow backend, every grouped
call goes through a function compiled with XLA (TensorFlow's CPU kernels have no grouped
convolution): about 5x slower forward than the dense convolution of the same shape with
64x the work, much slower backward, and not convertible to ONNX.
`keras_face.models.Conv2D` is a drop-in subclass that keeps the layer's weights
(`kernel` of shape `(kh, kw, in_channels / G, filters)`, optional `bias`), parameter
count, outputs and gradients, and computes a grouped convolution as one of:

- `"depthwise"`: one depthwise convolution per input channel of a group (channel
  multiplier `filters / G`), summed: for `j < in_channels / G`, the `j`-th channel of
  every group convolved with `kernel[:, :, j, :]` gives all `filters` outputs' share of
  that channel. Only depthwise convolutions, slices and additions: fast and exportable
  wherever depthwise convolutions are.
- `"dense"`: one ordinary convolution with the block-diagonal kernel of shape
  `(kh, kw, in_channels, filters)` (zeros outside the groups, which get zero gradient):
  G times the work on the fastest kernel of all; worth it for a few groups.
- `"grouped"`: on TensorFlow, `tf.nn.convolution` with the grouped kernel, called
  directly: TensorFlow (2.16 and later, CPU and GPU) has a grouped convolution kernel, but
  Keras' `ops.conv` always wraps grouped convolutions in an XLA-compiled function on this
  backend. On the other backends it is `"native"`.
- `"native"`: `keras.ops.conv` with the grouped kernel (`Conv2D`'s own computation),
  fastest where the backend has a grouped kernel (PyTorch, cuDNN on GPU).

`"auto"` picks from measurements (`benchmarks/grouped_conv.py`, 2-core CPU, batch 8,
forward + backward): `"grouped"` on TensorFlow (mbf's 64 groups of 2 channels at 56 x 56:
73 ms against 177 ms depthwise, 252 ms dense and 64 s through `ops.conv`; VarGFaceNet's 40
groups of 8 channels at 28 x 28: 62 ms against 228 ms depthwise and 658 ms dense; 10 groups
at 14 x 14: 5.6 ms against 23 ms and 19 ms), falling back to the rule below where
TensorFlow has no grouped kernel; native on the PyTorch backend and on GPUs; dense on JAX's
CPU (XLA's CPU depthwise and grouped kernels are both slow: 0.97 s dense against 73 s
native for the mbf shape); otherwise dense up to 24 groups and depthwise beyond.

The class keeps Keras' name on purpose: Keras stores the weights of a model's layers in
`.weights.h5` / `.keras` files under paths made from their class names (`conv2d`,
`conv2d_1`, ...), so only a class named `Conv2D` reads and writes the files of models
built with `keras.layers.Conv2D(groups=...)`, in both directions.
"""

import functools

import keras

IMPLEMENTATIONS = ("auto", "grouped", "depthwise", "dense", "native")
# "auto" uses the block-diagonal dense kernel up to this many groups (G times the work;
# measured crossover between 20 and 40 groups of 8 channels on CPU, TensorFlow and JAX).
DENSE_MAX_GROUPS = 24


@functools.cache
def _has_accelerator():
    """Whether the current backend computes on a GPU/TPU (native grouped kernels there)."""
    backend = keras.backend.backend()
    # Lazy imports: only the running backend's framework may be imported (models/ must
    # run on JAX and PyTorch without TensorFlow installed).
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return False


@functools.cache
def tensorflow_has_grouped_convolution():
    """Whether `tf.nn.convolution` computes grouped convolutions on this installation.

    TensorFlow 2.16 and later do on CPU and GPU; some older or non-x86 builds raise
    "Grouped convolution is not supported" instead. Checked once on a tiny input.
    """
    # Lazy import: models/ must run on JAX and PyTorch without TensorFlow installed.
    import tensorflow as tf

    # Eagerly, even when first asked while a function is being traced.
    with tf.init_scope():
        try:
            inputs = tf.zeros((1, 4, 4, 4))
            tf.nn.convolution(inputs, tf.zeros((3, 3, 2, 4)), padding="SAME").numpy()
        except (tf.errors.OpError, ValueError, TypeError):
            return False
    return True


def select_implementation(groups, backend=None, accelerator=None):
    """The implementation `"auto"` uses for a grouped convolution.

    Args:
        groups: int. Number of groups G.
        backend: str. Keras backend name. Defaults to `keras.backend.backend()`.
        accelerator: bool. Whether the backend computes on a GPU/TPU. Defaults to what
            the backend reports.

    Returns:
        `"grouped"`, `"native"`, `"dense"` or `"depthwise"`.

    Example:
        ```python
        keras_face.models.conv2d.select_implementation(64, "jax", False)
        # "dense"
        ```
    """
    backend = keras.backend.backend() if backend is None else backend
    if groups == 1:
        return "native"
    if backend == "tensorflow" and tensorflow_has_grouped_convolution():
        return "grouped"
    accelerator = _has_accelerator() if accelerator is None else accelerator
    if backend == "torch" or accelerator:
        return "native"
    # XLA's CPU depthwise and grouped convolutions are both slow (mbf shape, forward +
    # backward: native 73 s, dense 0.97 s); TensorFlow's depthwise kernels are fast.
    if backend == "jax" or groups <= DENSE_MAX_GROUPS:
        return "dense"
    return "depthwise"


@keras.saving.register_keras_serializable(package="keras_face")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` with `groups`, computed with fast, exportable operations.

    Same constructor, weights (`kernel` of shape `(kh, kw, in_channels / groups,
    filters)`, `bias`), parameter count, outputs and gradients as `keras.layers.Conv2D`
    with the same `groups`, so weight files of one load into the other. Only the
    computation differs (see the module docstring): a sum of depthwise convolutions, a
    block-diagonal dense convolution or the backend's grouped convolution.

    Args:
        filters: int. Output channels, divisible by `groups`.
        kernel_size: int or (int, int).
        groups: int. Number of groups; the input channels must be divisible by it.
            Defaults to `1`.
        implementation: str. `"auto"`, `"grouped"`, `"depthwise"`, `"dense"` or `"native"`;
            `"auto"` chooses per backend, device and group count
            (`select_implementation`). Defaults to `"auto"`.
        **kwargs: the other arguments of `keras.layers.Conv2D` (`strides`, `padding`,
            `dilation_rate`, `use_bias`, initializers, regularizers, ...).

    Example:
        ```python
        layer = keras_face.models.Conv2D(128, 3, groups=64, padding="same")
        outputs = layer(keras.random.normal((8, 56, 56, 128)))  # (8, 56, 56, 128)
        ```

    References:
        - [Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural
          Networks (grouped convolutions), NeurIPS 2012](
          https://papers.nips.cc/paper/4824)
        - [Yan et al., VarGFaceNet, ICCV Workshops 2019](https://arxiv.org/abs/1910.04985)
    """

    def __init__(self, filters, kernel_size, groups=1, implementation="auto", **kwargs):
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"`implementation` must be one of {IMPLEMENTATIONS}. "
                f"Received: implementation={implementation!r}"
            )
        super().__init__(filters, kernel_size, groups=groups, **kwargs)
        self.implementation = implementation

    def resolved_implementation(self):
        """The implementation this layer computes with (`"auto"` resolved)."""
        if self.data_format != "channels_last" or self.groups == 1:
            return "native"
        implementation = self.implementation
        if implementation == "auto":
            implementation = select_implementation(self.groups)
        if implementation == "grouped" and keras.backend.backend() != "tensorflow":
            return "native"
        return implementation

    def convolution_op(self, inputs, kernel):
        implementation = self.resolved_implementation()
        if implementation == "depthwise":
            return self._depthwise_sum(inputs, kernel)
        if implementation == "grouped":
            return self._tensorflow_grouped(inputs, kernel)
        if implementation == "dense":
            kernel = self._block_diagonal_kernel(kernel)
        return keras.ops.conv(
            inputs,
            kernel,
            strides=list(self.strides),
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )

    def _tensorflow_grouped(self, inputs, kernel):
        """TensorFlow's grouped convolution kernel, without Keras' XLA wrapper."""
        # Lazy import: "grouped" resolves to "native" on the other backends.
        import tensorflow as tf

        return tf.nn.convolution(
            inputs,
            kernel,
            strides=list(self.strides),
            padding=self.padding.upper(),
            dilations=list(self.dilation_rate),
            data_format="NHWC",
        )

    def _block_diagonal_kernel(self, kernel):
        """`(kh, kw, in/G, out)` → `(kh, kw, in, out)`, zero outside the diagonal blocks."""
        height, width, group_in, filters = kernel.shape
        groups = self.groups
        group_out = filters // groups
        # blocks[..., g, j, h, m] = kernel[..., j, h * group_out + m] if g == h else 0.
        blocks = keras.ops.reshape(kernel, (height, width, 1, group_in, groups, group_out))
        mask = keras.ops.reshape(
            keras.ops.eye(groups, dtype=kernel.dtype), (1, 1, groups, 1, groups, 1)
        )
        return keras.ops.reshape(blocks * mask, (height, width, groups * group_in, filters))

    def _depthwise_sum(self, inputs, kernel):
        """Σ_j depthwise(j-th channel of every group, kernel[:, :, j, :]) over j < in/G."""
        height, width, group_in, filters = kernel.shape
        groups = self.groups
        group_out = filters // groups
        # Channel g * group_in + j of the input is channel j of group g.
        shape = keras.ops.shape(inputs)
        grouped = keras.ops.reshape(inputs, (shape[0], shape[1], shape[2], groups, group_in))
        outputs = None
        for index in range(group_in):
            depthwise_kernel = keras.ops.reshape(
                kernel[:, :, index, :], (height, width, groups, group_out)
            )
            output = keras.ops.depthwise_conv(
                grouped[..., index],
                depthwise_kernel,
                strides=self.strides,
                padding=self.padding,
                dilation_rate=self.dilation_rate,
                data_format="channels_last",
            )
            outputs = output if outputs is None else outputs + output
        return outputs

    def get_config(self):
        config = super().get_config()
        config["implementation"] = self.implementation
        return config
