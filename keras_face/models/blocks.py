"""Building blocks shared by the backbone families, and their argument checks.

Every helper takes and returns a Keras tensor and gives each layer it adds a fixed name
derived from `name` (`"stage2_block3_conv1"`), so that weight conversion and debugging can
rely on them. Only `keras.layers` are used: the backbones run on TensorFlow, JAX and
PyTorch.
"""

import numbers

import keras

from keras_face.models.conv2d import Conv2D
from keras_face.models.depthwise_conv2d import DepthwiseConv2D

# PyTorch's BatchNorm momentum 0.1 and MXNet's momentum 0.9 are both Keras' 0.9 (Keras
# weighs the running statistic, PyTorch the new batch).
BATCH_NORM_MOMENTUM = 0.9

# (x - 127.5) * scale, per preprocessing mode.
PREPROCESSING_SCALES = {
    "arcface": 1.0 / 128.0,  # ArcFace paper; insightface MXNet symbols (x * 0.0078125)
    "insightface": 1.0 / 127.5,  # arcface_torch: Normalize(mean=0.5, std=0.5) of x / 255
}


def validate_backbone_arguments(input_shape, embedding_size, dropout, total_stride):
    """Check the arguments every backbone shares; return `input_shape` as a tuple.

    Args:
        input_shape: `(height, width, channels)`.
        embedding_size: int > 0.
        dropout: float in `[0, 1)`.
        total_stride: int. The network's total down-sampling factor; height and width
            must be at least this.

    Returns:
        `input_shape` as a tuple of ints.
    """
    try:
        shape = tuple(int(size) for size in input_shape)
        well_formed = len(shape) == 3 and all(
            size == original for size, original in zip(shape, input_shape)
        )
    except (TypeError, ValueError):
        well_formed = False
    if not well_formed or min(shape) <= 0:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive integers. "
            f"Received: input_shape={input_shape!r}"
        )
    if shape[0] < total_stride or shape[1] < total_stride:
        raise ValueError(
            f"The input must be at least {total_stride}x{total_stride}, the network's "
            f"total stride. Received: input_shape={input_shape!r}"
        )
    if (
        isinstance(embedding_size, bool)
        or not isinstance(embedding_size, numbers.Integral)
        or embedding_size <= 0
    ):
        raise ValueError(
            "`embedding_size` must be a positive integer. "
            f"Received: embedding_size={embedding_size!r}"
        )
    if not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    return shape


def validate_preprocessing(preprocessing):
    """Map the `preprocessing` argument to a key of `PREPROCESSING_SCALES` or `None`."""
    if preprocessing is None or preprocessing is False:
        return None
    if preprocessing is True:
        return "arcface"
    if isinstance(preprocessing, str) and preprocessing.lower() in PREPROCESSING_SCALES:
        return preprocessing.lower()
    raise ValueError(
        "`preprocessing` must be True (same as 'arcface'), 'arcface', 'insightface', "
        f"False or None. Received: preprocessing={preprocessing!r}"
    )


def apply_preprocessing(x, mode, name="preprocessing"):
    """`(x - 127.5) * scale` on raw RGB in [0, 255]; `mode` from `validate_preprocessing`."""
    if mode is None:
        return x
    scale = PREPROCESSING_SCALES[mode]
    return keras.layers.Rescaling(scale=scale, offset=-127.5 * scale, name=name)(x)


def apply_conv(x, filters, kernel_size, strides=1, groups=1, use_bias=False, name="conv"):
    """Convolution padded like PyTorch/MXNet (`padding=kernel_size // 2` on every side).

    With stride 1 this is Keras' `"same"`. With stride 2, `"same"` would pad only the
    bottom/right, shifting the sampling grid by one pixel relative to the references
    (and to a strided 1x1 shortcut); an explicit symmetric `ZeroPadding2D` keeps it.
    `groups == input channels == filters` gives a `keras_face.models.DepthwiseConv2D`,
    any other a `keras_face.models.Conv2D` (same weights as Keras' layers; grouped and
    1 x 1 layers fast under XLA on a CPU too).

    Args:
        x: input tensor (batch, height, width, channels).
        filters: int. Output channels.
        kernel_size: int or (int, int).
        strides: int. Defaults to `1`.
        groups: int. Convolution groups. Defaults to `1`.
        use_bias: bool. Defaults to `False`.
        name: str. Layer name; the padding layer is `f"{name}_pad"`.
    """
    kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    padding = "same" if strides == 1 else "valid"
    if strides != 1 and max(kernel_size) > 1:
        x = keras.layers.ZeroPadding2D(
            ((kernel_size[0] // 2,) * 2, (kernel_size[1] // 2,) * 2), name=f"{name}_pad"
        )(x)
    input_channels = x.shape[-1]
    if groups > 1 and groups == input_channels == filters:
        return DepthwiseConv2D(
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            depthwise_initializer="he_normal",
            name=name,
        )(x)
    # `keras.layers.Conv2D`'s weights, computed with fast, exportable ops where they differ
    # (grouped layers; 1 x 1 layers under XLA on a CPU).
    return Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=use_bias,
        kernel_initializer="he_normal",
        name=name,
    )(x)


def apply_batch_normalization(x, epsilon, name):
    """`BatchNormalization` with the references' momentum and the given epsilon."""
    return keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=epsilon, name=name
    )(x)


def apply_prelu(x, name):
    """Per-channel PReLU (one slope per channel, as `torch.nn.PReLU(channels)`), slope 0.25."""
    return keras.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(0.25),
        shared_axes=list(range(1, len(x.shape) - 1)) or None,
        name=name,
    )(x)


def apply_conv_bn_block(
    x,
    filters,
    kernel_size,
    strides=1,
    groups=1,
    activation=True,
    epsilon=1e-5,
    name="block",
):
    """Convolution → BN (→ PReLU): `f"{name}_conv"`, `f"{name}_bn"`, `f"{name}_prelu"`.

    Args:
        x: input tensor.
        filters: int. Output channels.
        kernel_size: int or (int, int).
        strides: int. Defaults to `1`.
        groups: int. Defaults to `1`.
        activation: bool. Whether a PReLU follows. Defaults to `True`.
        epsilon: float. BN epsilon. Defaults to `1e-5`.
        name: str. Prefix of the layer names.
    """
    x = apply_conv(x, filters, kernel_size, strides, groups, name=f"{name}_conv")
    x = apply_batch_normalization(x, epsilon, name=f"{name}_bn")
    if activation:
        x = apply_prelu(x, name=f"{name}_prelu")
    return x


def apply_squeeze_excitation_block(x, reduction, name):
    """Squeeze-and-excitation: global pool → 1x1 conv (C/r) → PReLU → 1x1 conv (C) → sigmoid.

    The gate multiplies `x` channel-wise. The 1x1 convolutions have biases and the
    activation is PReLU, as in insightface's IR-SE (`fresnet.py`) and the official
    VarGFaceNet.

    Args:
        x: input tensor (batch, height, width, channels).
        reduction: int. Channel reduction ratio r (16 for IR-SE, 4 for VarGFaceNet).
        name: str. Prefix of the layer names (`f"{name}_se_pool"`, ...).

    References:
        - [Hu et al., Squeeze-and-Excitation Networks, CVPR 2018](
          https://arxiv.org/abs/1709.01507)
    """
    channels = x.shape[-1]
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    gate = Conv2D(
        max(channels // reduction, 1), 1, kernel_initializer="he_normal", name=f"{name}_se_conv1"
    )(gate)
    gate = apply_prelu(gate, name=f"{name}_se_prelu")
    gate = Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_conv2")(gate)
    return keras.layers.Multiply(name=f"{name}_se_multiply")([x, gate])
