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
- `"shifted"`: the sum, over the `kh * kw` kernel positions and the `in_channels / G`
  channels of a group, of a shifted (strided) slice of the padded input times one row of
  the kernel: slices, multiplications and additions only, which XLA fuses into a loop
  per channel of a group. It is what `keras_face.models.DepthwiseConv2D` computes under
  XLA on a CPU (one channel per group), there with a hand-written backward pass
  (`sliced_convolution`, `keras_face.models.conv_gradients`); with several channels per
  group a whole training step was slower than with `"dense"` / `"patches"`.
- `"patches"`: the `kh * kw` windows stacked into patches and contracted with the kernel
  group by group (one einsum, batched over the groups): the grouped convolution's own
  multiply-adds as batched matrix products.

`"auto"` picks from measurements (`benchmarks/grouped_conv.py`, 2-core CPU, batch 8,
forward + backward): where XLA compiles for a CPU (TensorFlow's `jit_compile=True`, JAX),
`"patches"` for 16 groups or more of 4 channels or more (VarGFaceNet's deep stages) and
`"dense"` otherwise (XLA's CPU grouped convolution took 34 s for the mbf shape below,
dense 0.20 s, shifted 0.41 s); else `"grouped"` on TensorFlow (mbf's 64 groups of 2
channels at 56 x 56: 73 ms against 177 ms depthwise, 252 ms dense and 64 s through
`ops.conv`; VarGFaceNet's 40 groups of 8 channels at 28 x 28: 62 ms against 228 ms
depthwise and 658 ms dense; 10 groups at 14 x 14: 5.6 ms against 23 ms and 19 ms),
falling back to the rule below where TensorFlow has no grouped kernel; native on the
PyTorch backend and on GPUs; otherwise dense up to 24 groups and depthwise beyond.

A 1 x 1 convolution with one group (`groups=1`) is a matrix product of the pixels'
channels with the kernel. Where XLA compiles for a CPU, `"auto"` computes it as one
(`"pointwise"`: the strided pixels reshaped to `(pixels, channels)` times the
`(channels, filters)` kernel): XLA's CPU convolution is several times slower there,
forward and backward (JAX, batch 8, 2-core CPU, forward + backward: 64 -> 128 channels
at 56 x 56 4.9 ms against 20 ms; 128 -> 256 at 28 x 28 3.8 against 10.9 ms). Every
other convolution with one group is Keras' own (`"native"`).

The class keeps Keras' name on purpose: Keras stores the weights of a model's layers in
`.weights.h5` / `.keras` files under paths made from their class names (`conv2d`,
`conv2d_1`, ...), so only a class named `Conv2D` reads and writes the files of models
built with `keras.layers.Conv2D(groups=...)`, in both directions.
"""

import functools

import keras

from keras_face.models.conv_gradients import convolution_backward
from keras_face.models.conv_gradients import custom_gradient

IMPLEMENTATIONS = ("auto", "grouped", "depthwise", "dense", "native", "shifted", "patches")
# A 1 x 1 convolution with one group as a matrix product (any other kernel refuses it).
POINTWISE = "pointwise"
# "auto" uses the block-diagonal dense kernel up to this many groups (G times the work;
# measured crossover between 20 and 40 groups of 8 channels on CPU, TensorFlow and JAX).
DENSE_MAX_GROUPS = 24
# Under XLA on a CPU, "auto" contracts patches group by group from this many groups of at
# least this many input channels (measured: 20 groups of 8 channels and more).
PATCHES_MIN_GROUPS = 16
PATCHES_MIN_CHANNELS = 4
# Inference under XLA on a CPU takes the shifted slices for fewer input channels than this
# per group (mbf's 2 and VarGFaceNet's 8: the fastest forward pass of both whole models).
SHIFTED_INFERENCE_CHANNEL_LIMIT = 9
# ... and kernels of at most this many positions (3 x 3): VarGFaceNet's last grouped layer,
# 7 x 7 over a 7 x 7 map, 392 products a group, is faster as patches (whole JAX forward
# 93.9 against 103.1 ms).
SHIFTED_INFERENCE_MAX_KERNEL_POSITIONS = 9


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


def compiling_with_xla_for_cpu():
    """Whether the computation being built is compiled by XLA for a CPU.

    True on JAX with a CPU device (every JAX computation is XLA), and on TensorFlow
    while a function compiled with XLA (`jit_compile=True`) is traced on a machine without
    a GPU; false in TensorFlow's graph mode and eager mode and on PyTorch. XLA's CPU
    convolutions with feature groups (depthwise and grouped) are several times slower than
    the same arithmetic written as shifted slices, which XLA fuses into one loop.

    Returns:
        bool.

    Example:
        ```python
        keras_face.models.conv2d.compiling_with_xla_for_cpu()
        # False in eager TensorFlow
        ```
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return not _has_accelerator()
    if backend != "tensorflow":
        return False
    # Lazy import: models/ must run on JAX and PyTorch without TensorFlow installed.
    import tensorflow as tf

    # No public equivalent: TensorFlow's own layers ask the same question this way.
    from tensorflow.python.ops import control_flow_util

    if tf.executing_eagerly():
        return False
    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph) and not _has_accelerator()


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


def select_implementation(
    groups,
    backend=None,
    accelerator=None,
    xla_cpu=None,
    group_channels=None,
    inference=False,
    kernel_positions=None,
):
    """The implementation `"auto"` uses for a grouped convolution.

    Training (or whenever gradients may be taken) and inference are chosen apart: the
    fastest forward pass is not the fastest forward + backward pass. Under XLA on a CPU
    the shifted slices are the fastest forward pass of groups of few channels (JAX,
    batch 8, forward only: mbf's 64 groups of 2 at 56 x 56, 10.8 ms against 24 dense;
    the whole `mobilefacenet_mbf` forward 0.81x -> 1.23x PyTorch's speed), but automatic
    differentiation makes their backward pass the slowest. The same holds for groups of
    8 channels (VarGFaceNet: 10 groups at 28 x 28, 1.7 against 5.2 ms dense) once the
    windows reach the padding (`_windows`): before that, XLA recomputed the previous
    layer's normalisation and activation inside every product and the whole VarGFaceNet
    forward was slower shifted (205 against 128 ms; now 83-109 ms, 0.52x -> 0.87-1.03x
    PyTorch's speed on JAX). A VarGFaceNet training step with the shifted slices took
    5.8 s against 1.2 s for the training choice.

    Args:
        groups: int. Number of groups G.
        backend: str. Keras backend name. Defaults to `keras.backend.backend()`.
        accelerator: bool. Whether the backend computes on a GPU/TPU. Defaults to what
            the backend reports.
        xla_cpu: bool. Whether the convolution is compiled by XLA for a CPU. Defaults to
            `compiling_with_xla_for_cpu()` (always true on JAX's CPU).
        group_channels: int. Input channels per group (`in_channels / G`), if known.
            Defaults to `None` (unknown: as if few).
        inference: bool. Whether only the forward pass runs (the layer called with
            `training=False`, as `predict` and `keras_face.evaluation` do). Defaults to
            `False`.
        kernel_positions: int. `kh * kw`, if known. Defaults to `None` (unknown: as if
            3 x 3).

    Returns:
        `"grouped"`, `"native"`, `"dense"`, `"patches"`, `"shifted"` or `"depthwise"`.

    Example:
        ```python
        keras_face.models.conv2d.select_implementation(64, "torch", False, False)
        # "native"
        ```
    """
    backend = keras.backend.backend() if backend is None else backend
    if groups == 1:
        return "native"
    accelerator = _has_accelerator() if accelerator is None else accelerator
    if xla_cpu is None:
        if backend == "jax":
            xla_cpu = not accelerator
        else:
            xla_cpu = backend == keras.backend.backend() and compiling_with_xla_for_cpu()
    # XLA's CPU depthwise and grouped convolutions are slow (mbf shape, forward +
    # backward under TensorFlow's XLA: grouped 34 s, dense 0.20 s, shifted 0.41 s). Many
    # groups of several channels: patches (JAX, forward + backward, batch 8: 40 groups of
    # 8 at 7 x 7: 3.8 ms against 33 ms dense; 20 groups of 8 at 14 x 14: 9.1 against
    # 30 ms; 10 groups of 8 at 28 x 28: 54 against 35 ms; mbf: 472 against 192 ms).
    if xla_cpu:
        if (
            inference
            and (group_channels or 1) < SHIFTED_INFERENCE_CHANNEL_LIMIT
            and (kernel_positions or SHIFTED_INFERENCE_MAX_KERNEL_POSITIONS)
            <= SHIFTED_INFERENCE_MAX_KERNEL_POSITIONS
        ):
            return "shifted"
        if groups >= PATCHES_MIN_GROUPS and (group_channels or 0) >= PATCHES_MIN_CHANNELS:
            return "patches"
        return "dense"
    if backend == "tensorflow" and tensorflow_has_grouped_convolution():
        return "grouped"
    if backend == "torch" or accelerator:
        return "native"
    if groups <= DENSE_MAX_GROUPS:
        return "dense"
    return "depthwise"


def explicit_padding(size, kernel_size, stride, dilation, padding):
    """`(before, after)` zeros that make a `"valid"` convolution equal `padding`.

    Keras' (and TensorFlow's) `"same"`: `ceil(size / stride)` outputs, the odd zero
    after; `"valid"`: none.

    Args:
        size: int. Input height or width.
        kernel_size: int. Kernel height or width.
        stride: int.
        dilation: int.
        padding: str. `"same"` or `"valid"`.

    Returns:
        `(before, after)`, ints.

    Example:
        ```python
        keras_face.models.conv2d.explicit_padding(56, 3, 2, 1, "same")  # (0, 1)
        ```
    """
    if padding == "valid":
        return (0, 0)
    extent = (kernel_size - 1) * dilation + 1
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + extent - size, 0)
    return (total // 2, total - total // 2)


def shifted_convolution(inputs, kernel, groups, strides, padding, dilation_rate):
    """A grouped convolution as a sum of shifted slices times kernel rows (channels last).

    For every kernel position `(i, j)` and every channel `c` of a group, the strided
    window of the padded input that this position sees, channel `c` of each group,
    times `kernel[i, j, c]` broadcast over the group's outputs; the sum of the
    `kh * kw * in_channels / G` terms is the convolution. Only slices, multiplications
    and additions: XLA fuses them, and their gradients, into a few loops.

    Args:
        inputs: tensor `(batch, height, width, in_channels)` with static height and width.
        kernel: tensor `(kh, kw, in_channels / groups, filters)` (Keras' grouped layout;
            a depthwise kernel `(kh, kw, C, M)` reshaped to `(kh, kw, 1, C * M)`).
        groups: int.
        strides: `(int, int)`.
        padding: str. `"same"` or `"valid"`.
        dilation_rate: `(int, int)`.

    Returns:
        Tensor `(batch, out_height, out_width, filters)`.

    Example:
        ```python
        from keras_face.models.conv2d import shifted_convolution
        outputs = shifted_convolution(
            keras.random.normal((2, 8, 8, 4)), keras.random.normal((3, 3, 2, 6)),
            groups=2, strides=(1, 1), padding="same", dilation_rate=(1, 1),
        )  # (2, 8, 8, 6)
        ```
    """
    height, width, group_in, filters = kernel.shape
    group_out = filters // groups
    # One axis per group when groups give several outputs. Only then are the windows
    # widened to reach the padding (`_windows`): each input element is used by
    # `group_out` products; with one, fusing the input's producer costs no more than
    # storing it, and a widened window costs a copy of a `"valid"` layer's input.
    per_group = group_out > 1
    # The input is padded once for all channels (a pad per channel of a group: whole
    # VarGFaceNet forward on JAX 93.6 against 85.0 ms).
    windows, outputs_size = _windows(
        inputs, (height, width), strides, padding, dilation_rate, reach_padding=per_group
    )
    kernel = keras.ops.reshape(kernel, (height, width, group_in, groups, group_out))
    outputs = None
    # Channel by channel of every group, each a sum of kh * kw terms, then added: XLA
    # fuses a few terms per loop well and one chain over all of them badly (batch 8,
    # 28 x 28, 10 groups, JAX: 8 channels a group 3 against 6 ms; 16 channels a group,
    # as in the input gradient of a depthwise multiplier, 9 against 58 ms).
    for channel in range(group_in):
        partial = None
        for (row, column), window in windows:
            if group_in > 1:
                window = keras.ops.reshape(
                    window, (-1, window.shape[1], window.shape[2], groups, group_in)
                )[..., channel]
            if per_group:
                # (batch, h, w, G, 1) * (G, group_out) -> (batch, h, w, G, group_out).
                term = window[..., None] * kernel[row, column, channel]
            else:
                term = window * kernel[row, column, channel, :, 0]
            if window.shape[2] != outputs_size[1]:
                # A window widened to reach the padding (see `_windows`): cropped after
                # the product, so that the slice stays a slice of the padded input.
                term = term[:, :, : outputs_size[1]]
            partial = term if partial is None else partial + term
        outputs = partial if outputs is None else outputs + partial
    if per_group:
        outputs = keras.ops.reshape(outputs, (-1, outputs_size[0], outputs_size[1], filters))
    return outputs


def patches_convolution(inputs, kernel, groups, strides, padding, dilation_rate):
    """A grouped convolution as one contraction of the input's patches, group by group.

    The `kh * kw` strided windows of the padded input are stacked into patches
    `(batch, h, w, G, in_channels / G, kh * kw)` and contracted with the kernel
    `(kh * kw, in_channels / G, G, filters / G)` over the last two axes, batched over the
    groups: exactly the grouped convolution's multiply-adds (no zero blocks, unlike
    `"dense"`), as one einsum that XLA compiles to batched matrix products. Fastest under
    XLA on a CPU for many groups of several channels (VarGFaceNet's deep stages).

    Args:
        inputs: tensor `(batch, height, width, in_channels)` with static height and width.
        kernel: tensor `(kh, kw, in_channels / groups, filters)`.
        groups: int.
        strides: `(int, int)`.
        padding: str. `"same"` or `"valid"`.
        dilation_rate: `(int, int)`.

    Returns:
        Tensor `(batch, out_height, out_width, filters)`.

    Example:
        ```python
        from keras_face.models.conv2d import patches_convolution
        outputs = patches_convolution(
            keras.random.normal((2, 8, 8, 16)), keras.random.normal((3, 3, 8, 4)),
            groups=2, strides=(1, 1), padding="same", dilation_rate=(1, 1),
        )  # (2, 8, 8, 4)
        ```
    """
    height, width, group_in, filters = kernel.shape
    group_out = filters // groups
    windows, outputs_size = _windows(inputs, (height, width), strides, padding, dilation_rate)
    patches = keras.ops.stack([window for _, window in windows], axis=-1)
    patches = keras.ops.reshape(
        patches, (-1, outputs_size[0], outputs_size[1], groups, group_in, height * width)
    )
    # (kh, kw, group_in, filters) -> (kh * kw, group_in, G, group_out).
    kernel = keras.ops.reshape(kernel, (height * width, group_in, groups, group_out))
    outputs = keras.ops.einsum("bhwgcp,pcgm->bhwgm", patches, kernel)
    return keras.ops.reshape(outputs, (-1, outputs_size[0], outputs_size[1], filters))


def sliced_convolution(inputs, kernel, groups, strides, padding, dilation_rate, convolution):
    """`convolution(inputs, kernel, ...)`, with the hand-written gradient where it applies.

    One input channel per group (depthwise, with any multiplier), undilated, on JAX and
    TensorFlow: the forward pass of `convolution` and the backward pass of
    `keras_face.models.conv_gradients.convolution_backward` (the input gradient as the
    same sliced convolution of the upstream gradient, the kernel gradient in one pass per
    kernel position without copying windows out). 3 x 3 depthwise, batch 8, 2-core CPU,
    forward + backward: 128 channels at 56 x 56, 14 against 57 ms on JAX and 26 against
    59 ms under TensorFlow's XLA; 256 channels at 28 x 28, 6 against 28 ms and 11 against
    80 ms. Otherwise (several channels per group, dilation) `convolution` with automatic
    differentiation: there the hand-written pass was not faster in a whole VarGFaceNet
    training step.

    Args:
        inputs: tensor `(batch, height, width, in_channels)` with static height and width.
        kernel: tensor `(kh, kw, in_channels / groups, filters)`.
        groups: int.
        strides: `(int, int)`.
        padding: str. `"same"` or `"valid"`.
        dilation_rate: `(int, int)`.
        convolution: `shifted_convolution` or `patches_convolution`.

    Returns:
        Tensor `(batch, out_height, out_width, filters)`.

    Example:
        ```python
        from keras_face.models.conv2d import shifted_convolution, sliced_convolution
        outputs = sliced_convolution(
            keras.random.normal((2, 8, 8, 4)), keras.random.normal((3, 3, 1, 4)),
            groups=4, strides=(1, 1), padding="same", dilation_rate=(1, 1),
            convolution=shifted_convolution,
        )  # (2, 8, 8, 4)
        ```
    """
    if tuple(dilation_rate) != (1, 1) or kernel.shape[2] != 1:
        return convolution(inputs, kernel, groups, strides, padding, dilation_rate)
    input_size = tuple(inputs.shape[1:3])
    pads = tuple(
        explicit_padding(size, extent, stride, 1, padding)
        for size, extent, stride in zip(input_size, kernel.shape[:2], strides)
    )

    def forward(inputs, kernel):
        return convolution(inputs, kernel, groups, strides, padding, (1, 1))

    backward = convolution_backward(convolution, groups, strides, pads, input_size)
    return custom_gradient(forward, backward)(inputs, keras.ops.convert_to_tensor(kernel))


def _windows(inputs, kernel_size, strides, padding, dilation_rate, reach_padding=False):
    """`[((row, column), window)]` of the padded input that each kernel position sees.

    Each window is the strided slice `(batch, out_height, out_width, channels)`; also
    returns `(out_height, out_width)`.

    With `reach_padding=True`, a window that would lie inside the input without touching
    the zeros added here (the centre position of a `"same"` convolution; every position
    of a `"valid"` one) is taken wider, to the right, by the fewest strides that reach
    the zeros (padding more zeros on the right where needed): `out_width + extra`
    columns, for the caller to crop after its product. XLA replaces a slice of a pad that
    misses the padding by a slice of the pad's operand, and then fuses the computation
    that produced the input (the previous layer's normalisation and activation) into the
    loop of the product, where it is recomputed once per output channel of the group:
    VarGFaceNet's 28 x 28 grouped layer after a batch normalisation and a PReLU, JAX,
    batch 8, 22.4 ms against 2.6 ms with the widened centre window.
    """
    size = inputs.shape[1:3]
    pads = [
        list(explicit_padding(extent, kernel, stride, dilation, padding))
        for extent, kernel, stride, dilation in zip(size, kernel_size, strides, dilation_rate)
    ]
    outputs_size = [
        (extent + sum(pad) - (kernel - 1) * dilation - 1) // stride + 1
        for extent, pad, kernel, stride, dilation in zip(
            size, pads, kernel_size, strides, dilation_rate
        )
    ]
    spans = []
    for row in range(kernel_size[0]):
        top = row * dilation_rate[0]
        bottom = top + (outputs_size[0] - 1) * strides[0]
        for column in range(kernel_size[1]):
            left = column * dilation_rate[1]
            right = left + (outputs_size[1] - 1) * strides[1]
            extra = 0
            inside = pads[0][0] <= top and bottom < pads[0][0] + size[0]
            if reach_padding and inside and pads[1][0] <= left:
                # Strides to add until the last column lies past the input.
                extra = max(0, -(-(pads[1][0] + size[1] - right) // strides[1]))
            spans.append(((row, column), top, bottom, left, right + extra * strides[1]))
    # Zeros on the right for the widest window.
    pads[1][1] = max(pads[1][1], max(span[4] for span in spans) + 1 - pads[1][0] - size[1])
    if any(sum(pad) for pad in pads):
        inputs = keras.ops.pad(inputs, [(0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)])
    windows = []
    for position, top, bottom, left, right in spans:
        rows = slice(top, bottom + 1, strides[0])
        columns = slice(left, right + 1, strides[1])
        windows.append((position, inputs[:, rows, columns]))
    return windows, outputs_size


@keras.saving.register_keras_serializable(package="keras_face")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`, its grouped and 1 x 1 convolutions computed with fast operations.

    Same constructor, weights (`kernel` of shape `(kh, kw, in_channels / groups,
    filters)`, `bias`), parameter count, outputs and gradients as `keras.layers.Conv2D`
    with the same `groups`, so weight files of one load into the other. Only the
    computation differs (see the module docstring): a sum of depthwise convolutions, a
    block-diagonal dense convolution, a sum of shifted slices (under XLA on a CPU) or the
    backend's grouped convolution.

    Args:
        filters: int. Output channels, divisible by `groups`.
        kernel_size: int or (int, int).
        groups: int. Number of groups; the input channels must be divisible by it.
            Defaults to `1`.
        implementation: str. `"auto"`, `"grouped"`, `"depthwise"`, `"dense"`, `"native"`,
            `"shifted"` or `"patches"`; `"auto"` chooses per backend, device, compiler and
            group count (`select_implementation`), each time the layer is traced.
            `"pointwise"` (a matrix product) is for 1 x 1 kernels with `groups=1` only,
            which `"auto"` computes so under XLA on a CPU. Defaults to `"auto"`.
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
        if implementation not in IMPLEMENTATIONS + (POINTWISE,):
            raise ValueError(
                f"`implementation` must be one of {IMPLEMENTATIONS + (POINTWISE,)}. "
                f"Received: implementation={implementation!r}"
            )
        super().__init__(filters, kernel_size, groups=groups, **kwargs)
        if implementation == POINTWISE and not self._is_pointwise():
            raise ValueError(
                "`implementation='pointwise'` needs a 1 x 1 kernel and `groups=1`. "
                f"Received: kernel_size={self.kernel_size}, groups={groups}"
            )
        self.implementation = implementation

    def resolved_implementation(self, inference=False):
        """The implementation this layer computes with now (`"auto"` resolved).

        Under `"auto"` the answer depends on where the layer is called: `"shifted"` while
        XLA compiles for a CPU, TensorFlow's grouped kernel in its graph mode, ....

        Args:
            inference: bool. Whether the layer is called with `training=False` (the
                forward pass alone). Defaults to `False`.
        """
        if self.data_format != "channels_last":
            return "native"
        if self.groups == 1:
            if self.implementation == POINTWISE or (
                self.implementation == "auto"
                and self._is_pointwise()
                and compiling_with_xla_for_cpu()
            ):
                return POINTWISE
            return "native"
        implementation = self.implementation
        if implementation == "auto":
            group_channels = None
            if self.built:
                group_channels = self.kernel.shape[2]
            implementation = select_implementation(
                self.groups,
                group_channels=group_channels,
                inference=inference,
                kernel_positions=self.kernel_size[0] * self.kernel_size[1],
            )
        if implementation == "grouped" and keras.backend.backend() != "tensorflow":
            return "native"
        return implementation

    def call(self, inputs, training=None):
        # `training=False` (predict, keras_face.evaluation): no gradient will be taken, so
        # "auto" may pick the fastest forward pass. `None` (a direct call) may be
        # differentiated: the training choice.
        outputs = self._convolve(inputs, self.kernel, inference=training is False)
        if self.use_bias:
            bias_shape = (1, 1, 1, self.filters)
            if self.data_format != "channels_last":
                bias_shape = (1, self.filters, 1, 1)
            outputs = keras.ops.add(outputs, keras.ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def convolution_op(self, inputs, kernel):
        return self._convolve(inputs, kernel)

    def _is_pointwise(self):
        """Whether this is a 1 x 1 convolution with one group (a matrix product)."""
        return self.groups == 1 and tuple(self.kernel_size) == (1, 1)

    def _pointwise(self, inputs, kernel):
        """The 1 x 1 convolution as `(pixels, channels) @ (channels, filters)`."""
        # A 1 x 1 kernel needs no padding ("same" = "valid"): the strided pixels.
        if tuple(self.strides) != (1, 1):
            inputs = inputs[:, :: self.strides[0], :: self.strides[1]]
        shape = keras.ops.shape(inputs)
        outputs = keras.ops.matmul(
            keras.ops.reshape(inputs, (-1, shape[3])), keras.ops.reshape(kernel, kernel.shape[2:])
        )
        return keras.ops.reshape(outputs, (shape[0], shape[1], shape[2], self.filters))

    def _convolve(self, inputs, kernel, inference=False):
        implementation = self.resolved_implementation(inference)
        if implementation == POINTWISE:
            return self._pointwise(inputs, kernel)
        if implementation in ("shifted", "patches") and None not in inputs.shape[1:3]:
            function = shifted_convolution if implementation == "shifted" else patches_convolution
            return sliced_convolution(
                inputs,
                kernel,
                self.groups,
                self.strides,
                self.padding,
                self.dilation_rate,
                function,
            )
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
