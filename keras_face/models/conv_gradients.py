"""Hand-written gradients of the sliced depthwise convolutions (`"shifted"`).

Where XLA compiles for a CPU, `keras_face.models.DepthwiseConv2D` computes its
convolution as a sum of strided slices of the padded input times per-channel weights
(`keras_face.models.conv2d.shifted_convolution`). That forward pass fuses well; the
gradient automatic differentiation derives from it does not: the kernel gradient becomes
one reduction over `(batch, height, width)` per kernel position, `kh * kw` full passes
over the input and the upstream gradient, each a reduction over leading axes that XLA's
CPU backend vectorises poorly (TensorFlow) or that reads a copy of the sliced window
(JAX: 9 window copies live at once for a 3 x 3 kernel, fresh memory on every step).
Measured on a 2-core CPU, batch 8, 128 channels at 56 x 56, 3 x 3: forward 1.7 ms,
forward + backward 42 ms on JAX (PyTorch: 10.5 ms), of which 38 ms the kernel gradient.

This module writes that backward pass by hand, in `keras.ops`:

- input gradient: the transposed convolution, itself a sliced convolution (the same
  forward function) of the upstream gradient with the kernel rotated by 180 degrees and
  each group's input and output channels swapped. With a stride `s`, the padded input's
  rows and columns split into `s * s` phases (row `q * s + r`); phase `r` only sees the
  kernel rows `r, r + s, ...`, so each phase is a stride-1 convolution with that
  sub-kernel, and the phases are interleaved back.
- kernel gradient: for every kernel position, the sum over `(batch, height, width)` of
  the input window times the upstream gradient, in the form fastest on the backend
  (`kernel_gradient_form`).

`custom_gradient` attaches the backward pass to the forward function; it is the only
backend-specific code here (`jax.custom_vjp`, `tf.custom_gradient`; on PyTorch, which
keeps its native kernels, automatic differentiation).
"""

import keras
from keras import ops


def custom_gradient(forward, backward):
    """`forward(inputs, kernel)`, differentiated by `backward` instead of autodiff.

    Args:
        forward: callable `(inputs, kernel) -> outputs`.
        backward: callable `(inputs, kernel, upstream) -> (inputs_gradient,
            kernel_gradient)`, `upstream` being the gradient of the loss with respect
            to `outputs`.

    Returns:
        Callable `(inputs, kernel) -> outputs` with that gradient on the JAX and
        TensorFlow backends (`jax.custom_vjp`, `tf.custom_gradient`); `forward` itself
        on the others (automatic differentiation).

    Example:
        ```python
        from keras_face.models.conv_gradients import custom_gradient
        square = custom_gradient(
            lambda x, k: x * k, lambda x, k, upstream: (upstream * k, upstream * x)
        )
        ```
    """
    backend = keras.backend.backend()
    if backend == "jax":
        # Lazy import: only the running backend's framework may be imported.
        import jax

        function = jax.custom_vjp(forward)
        function.defvjp(
            lambda inputs, kernel: (forward(inputs, kernel), (inputs, kernel)),
            lambda residuals, upstream: tuple(backward(*residuals, upstream)),
        )
        return function
    if backend == "tensorflow":
        # Lazy import: only the running backend's framework may be imported.
        import tensorflow as tf

        @tf.custom_gradient
        def function(inputs, kernel):
            def gradient(upstream):
                return tuple(backward(inputs, kernel, upstream))

            return forward(inputs, kernel), gradient

        return function
    return forward


def kernel_gradient_form(backend=None):
    """How `depthwise_kernel_gradient` sums over positions on a backend (measured).

    `"padded"` (JAX): the whole padded input times the upstream gradient placed, with
    zeros around it, where each kernel position sees it; one fused multiply-reduce per
    position, no slice copied (JAX's CPU compiler copies every sliced window out before
    reducing it: 9 copies of the input for a 3 x 3 kernel). `"matmul"` (TensorFlow and
    others): window times upstream gradient, summed over the positions by a product with
    a row of ones (XLA's CPU reductions over leading axes are several times slower than
    its matrix-vector product). 128 channels at 56 x 56, batch 8, 2-core CPU: JAX 9.5 ms
    padded against 60 ms sliced; TensorFlow XLA 14 ms matmul against 49 ms sliced.

    Args:
        backend: str. Keras backend name. Defaults to `keras.backend.backend()`.

    Returns:
        `"padded"` or `"matmul"`.

    Example:
        ```python
        keras_face.models.conv_gradients.kernel_gradient_form("jax")  # "padded"
        ```
    """
    backend = keras.backend.backend() if backend is None else backend
    return "padded" if backend == "jax" else "matmul"


def transposed_group_kernel(kernel, groups):
    """`(kh, kw, in / G, out)` → `(kh, kw, out / G, in)`: each group's channels swapped.

    The kernel of the input gradient's convolution: output channel `g * in / G + c`
    reads input channel `g * out / G + m` through `kernel[:, :, c, g * out / G + m]`
    (not yet rotated).
    """
    height, width, group_in, filters = kernel.shape
    group_out = filters // groups
    kernel = ops.reshape(kernel, (height, width, group_in, groups, group_out))
    kernel = ops.transpose(kernel, (0, 1, 4, 3, 2))
    return ops.reshape(kernel, (height, width, group_out, groups * group_in))


def input_gradient(upstream, kernel, groups, strides, pads, input_size, convolution):
    """Gradient of a valid, undilated grouped convolution with respect to its input.

    Args:
        upstream: tensor `(batch, out_height, out_width, filters)`.
        kernel: tensor `(kh, kw, in_channels / groups, filters)`.
        groups: int.
        strides: `(int, int)`.
        pads: `((top, bottom), (left, right))` zeros the forward pass added.
        input_size: `(height, width)` of the unpadded input.
        convolution: the forward function, `(inputs, kernel, groups, strides, padding,
            dilation_rate) -> outputs` (`shifted_convolution` or `patches_convolution`).

    Returns:
        Tensor `(batch, height, width, in_channels)`.
    """
    kernel_size = kernel.shape[:2]
    transposed = transposed_group_kernel(kernel, groups)
    if tuple(strides) == (1, 1):
        # The full correlation with the rotated kernel, cropped to the unpadded input.
        zeros = [
            (extent - 1 - before, extent - 1 - after)
            for extent, (before, after) in zip(kernel_size, pads)
        ]
        if any(before < 0 for before, _ in zeros):
            return _phase_input_gradient(
                upstream, transposed, groups, strides, pads, input_size, convolution
            )
        padded = ops.pad(upstream, [(0, 0), zeros[0], zeros[1], (0, 0)])
        rotated = ops.flip(transposed, axis=(0, 1))
        return convolution(padded, rotated, groups, (1, 1), "valid", (1, 1))
    return _phase_input_gradient(
        upstream, transposed, groups, strides, pads, input_size, convolution
    )


def _phase_input_gradient(upstream, transposed, groups, strides, pads, input_size, convolution):
    """The input gradient phase by phase (any stride): see the module docstring."""
    output_size = upstream.shape[1:3]
    padded_size = [size + sum(pad) for size, pad in zip(input_size, pads)]
    # Rows q * s + r of the padded input, q < ceil(padded / s), for every phase r.
    phase_size = [-(-size // stride) for size, stride in zip(padded_size, strides)]
    rows = []
    for row_phase in range(strides[0]):
        columns = []
        for column_phase in range(strides[1]):
            sub_kernel = transposed[row_phase :: strides[0], column_phase :: strides[1]]
            taps = sub_kernel.shape[:2]
            if 0 in taps:
                shape = ops.shape(upstream)
                columns.append(
                    ops.zeros(
                        (shape[0], phase_size[0], phase_size[1], transposed.shape[-1]),
                        dtype=upstream.dtype,
                    )
                )
                continue
            zeros = [
                (count - 1, phase - output)
                for count, phase, output in zip(taps, phase_size, output_size)
            ]
            padded = ops.pad(upstream, [(0, 0), zeros[0], zeros[1], (0, 0)])
            rotated = ops.flip(sub_kernel, axis=(0, 1))
            columns.append(convolution(padded, rotated, groups, (1, 1), "valid", (1, 1)))
        rows.append(ops.stack(columns, axis=3))
    # (batch, q_h, s_h, q_w, s_w, channels) -> rows q_h * s_h + r_h, columns alike.
    interleaved = ops.stack(rows, axis=2)
    interleaved = ops.reshape(
        interleaved,
        (-1, phase_size[0] * strides[0], phase_size[1] * strides[1], transposed.shape[-1]),
    )
    top, left = pads[0][0], pads[1][0]
    return interleaved[:, top : top + input_size[0], left : left + input_size[1]]


def depthwise_kernel_gradient(padded_inputs, upstream, kernel_size, strides, form=None):
    """Kernel gradient of a valid, undilated convolution with one input channel per group.

    Args:
        padded_inputs: tensor `(batch, height, width, groups)`, the padded input.
        upstream: tensor `(batch, out_height, out_width, groups * multiplier)`.
        kernel_size: `(kh, kw)`.
        strides: `(int, int)`.
        form: `"padded"`, `"matmul"` or `"sliced"` (one reduction per kernel position,
            what automatic differentiation does). Defaults to `kernel_gradient_form()`.

    Returns:
        Tensor `(kh, kw, 1, groups * multiplier)`.
    """
    form = kernel_gradient_form() if form is None else form
    groups = padded_inputs.shape[-1]
    filters = upstream.shape[-1]
    multiplier = filters // groups
    output_size = upstream.shape[1:3]
    if multiplier > 1:
        upstream = ops.reshape(upstream, (-1, output_size[0], output_size[1], groups, multiplier))
    if form == "padded":
        sums = _padded_position_sums(padded_inputs, upstream, kernel_size, strides, multiplier)
    else:
        sums = []
        for row in range(kernel_size[0]):
            for column in range(kernel_size[1]):
                window = padded_inputs[
                    :,
                    row : row + (output_size[0] - 1) * strides[0] + 1 : strides[0],
                    column : column + (output_size[1] - 1) * strides[1] + 1 : strides[1],
                ]
                if multiplier > 1:
                    window = window[..., None]
                product = _in_float32(window * upstream)
                if form == "matmul":
                    product = ops.reshape(product, (-1, filters))
                    ones = ops.ones((1, ops.shape(product)[0]), dtype=product.dtype)
                    sums.append(ops.reshape(ops.matmul(ones, product), (filters,)))
                else:
                    sums.append(ops.reshape(ops.sum(product, axis=(0, 1, 2)), (filters,)))
    return ops.reshape(ops.stack(sums), (kernel_size[0], kernel_size[1], 1, filters))


def _in_float32(values):
    """Half-precision products summed in float32 (sums over every position of a batch)."""
    if keras.backend.standardize_dtype(values.dtype) in ("float16", "bfloat16"):
        return ops.cast(values, "float32")
    return values


def _padded_position_sums(padded_inputs, upstream, kernel_size, strides, multiplier):
    """Per kernel position, Σ input × upstream with the upstream padded, not the input sliced."""
    height, width = padded_inputs.shape[1:3]
    output_size = upstream.shape[1:3]
    phase_size = [-(-size // stride) for size, stride in zip((height, width), strides)]
    extra = [
        phase * stride - size for phase, stride, size in zip(phase_size, strides, (height, width))
    ]
    if any(extra):
        padded_inputs = ops.pad(padded_inputs, [(0, 0), (0, extra[0]), (0, extra[1]), (0, 0)])
    groups = padded_inputs.shape[-1]
    if tuple(strides) != (1, 1):
        # (batch, q_h, s_h, q_w, s_w, groups): phase (r_h, r_w) holds rows q * s + r.
        phased = ops.reshape(
            padded_inputs, (-1, phase_size[0], strides[0], phase_size[1], strides[1], groups)
        )
    sums = []
    for row in range(kernel_size[0]):
        for column in range(kernel_size[1]):
            if tuple(strides) == (1, 1):
                phase = padded_inputs
            else:
                phase = phased[:, :, row % strides[0], :, column % strides[1]]
            shift = (row // strides[0], column // strides[1])
            zeros = [
                (offset, size - output - offset)
                for offset, size, output in zip(shift, phase_size, output_size)
            ]
            placed = ops.pad(
                upstream, [(0, 0), zeros[0], zeros[1]] + [(0, 0)] * (upstream.ndim - 3)
            )
            if multiplier > 1:
                phase = phase[..., None]
            product = _in_float32(phase * placed)
            sums.append(ops.reshape(ops.sum(product, axis=(0, 1, 2)), (-1,)))
    return sums


def convolution_backward(convolution, groups, strides, pads, input_size, form=None):
    """The hand-written backward pass of a valid-after-padding, undilated sliced convolution.

    Args:
        convolution: the forward function, `(inputs, kernel, groups, strides, padding,
            dilation_rate) -> outputs` (`keras_face.models.conv2d.shifted_convolution`
            or `patches_convolution`); the input gradient uses it too.
        groups: int.
        strides: `(int, int)`.
        pads: `((top, bottom), (left, right))` zeros the forward pass adds to the input.
        input_size: `(height, width)` of the unpadded input.
        form: kernel-gradient form with one channel per group
            (`depthwise_kernel_gradient`). Defaults to `kernel_gradient_form()`.

    Returns:
        Callable `(inputs, kernel, upstream) -> (inputs_gradient, kernel_gradient)`, for
        `custom_gradient`.

    Example:
        ```python
        from keras_face.models.conv2d import shifted_convolution
        from keras_face.models.conv_gradients import convolution_backward
        backward = convolution_backward(
            shifted_convolution, 4, (1, 1), ((1, 1), (1, 1)), (8, 8)
        )
        ```
    """
    strides = tuple(strides)

    def backward(inputs, kernel, upstream):
        kernel_size = kernel.shape[:2]
        padded = inputs
        if any(sum(pad) for pad in pads):
            padded = ops.pad(inputs, [(0, 0), pads[0], pads[1], (0, 0)])
        kernel_gradient = depthwise_kernel_gradient(padded, upstream, kernel_size, strides, form)
        inputs_gradient = input_gradient(
            upstream, kernel, groups, strides, pads, input_size, convolution
        )
        return ops.cast(inputs_gradient, inputs.dtype), ops.cast(kernel_gradient, kernel.dtype)

    return backward
