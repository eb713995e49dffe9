"""VarGFaceNet (Yan et al. 2019), variable group convolutions for lightweight face recognition.

Transcribed from the paper and the authors' MXNet code (`zma-c-137/VarGFaceNet`):

- variable group convolution: a k x k grouped conv whose groups hold a fixed number of
  input channels, S = 8 (so the group count varies with the width), expanding the
  channels by a factor (2 in the stages, 1 in the head), followed by a pointwise 1x1
  conv: the "separable" unit, each conv followed by BN (→ PReLU);
- normal block: two separable units, squeeze-and-excitation (reduction 4), plus the
  input, PReLU;
- down-sampling block: two parallel strided separable units summed, PReLU, a separable
  unit, plus a strided separable shortcut, PReLU;
- head setting: 3x3 conv at stride 1 (keeping the 112x112 resolution) → BN → PReLU, then
  a stride-2 normal block with a separable shortcut and expansion 1;
- three stages (80, 160, 320 channels at width multiplier 1.25; 3, 7, 4 blocks, each
  starting with a down-sampling block);
- embedding setting: 1x1 conv to 1024 → BN → PReLU, 7x7 variable group conv (S = 8) →
  BN, 1x1 conv to 512 → BN → PReLU, then FC → BN (the `"J"` embedding output).

The variable group conv of the embedding covers the whole last feature map, so both
112x112 (7x7 map) and 112x96 (7x6 map) inputs work. BN epsilon is 2e-5 and momentum
0.9, as in the MXNet code.
"""

import keras

from keras_face.models.blocks import apply_batch_normalization
from keras_face.models.blocks import apply_conv_bn_block
from keras_face.models.blocks import apply_prelu
from keras_face.models.blocks import apply_preprocessing
from keras_face.models.blocks import apply_squeeze_excitation_block
from keras_face.models.blocks import validate_backbone_arguments
from keras_face.models.blocks import validate_preprocessing
from keras_face.models.conv2d import Conv2D
from keras_face.models.embedding import apply_embedding_output

BATCH_NORM_EPSILON = 2e-5
CHANNELS_PER_GROUP = 8  # S in the paper
SE_REDUCTION = 4
WIDTH_MULTIPLIER = 1.25
# Channels before the width multiplier: head, then the three stages.
FILTERS = (32, 64, 128, 256)
BLOCKS_PER_STAGE = (3, 7, 4)
EXPANSION = 2
LAST_CHANNELS = 1024
# Head block and three stride-2 stages.
TOTAL_STRIDE = 16


def apply_variable_group_separable_block(
    x,
    filters,
    strides=1,
    expansion=EXPANSION,
    pointwise_activation=True,
    name="block",
):
    """Variable group conv (S = 8 channels per group) → BN → PReLU → 1x1 conv → BN (→ PReLU).

    The 3x3 grouped conv has `input_channels / 8` groups and `input_channels * expansion`
    outputs; the 1x1 pointwise conv maps them to `filters`.

    Args:
        x: input tensor (batch, height, width, channels), channels divisible by 8.
        filters: int. Output channels.
        strides: int. Stride of the grouped conv. Defaults to `1`.
        expansion: int. Channel expansion of the grouped conv. Defaults to `2`.
        pointwise_activation: bool. PReLU after the pointwise BN. Defaults to `True`.
        name: str. Prefix of the layer names (`f"{name}_group_conv"`,
            `f"{name}_pointwise_bn"`, ...).
    """
    input_channels = x.shape[-1]
    x = apply_conv_bn_block(
        x,
        input_channels * expansion,
        3,
        strides=strides,
        groups=input_channels // CHANNELS_PER_GROUP,
        epsilon=BATCH_NORM_EPSILON,
        name=f"{name}_group",
    )
    return apply_conv_bn_block(
        x,
        filters,
        1,
        activation=pointwise_activation,
        epsilon=BATCH_NORM_EPSILON,
        name=f"{name}_pointwise",
    )


def apply_normal_block(x, filters, strides=1, expansion=EXPANSION, name="block"):
    """VarGFaceNet's normal block (with SE); with stride 2 it gets a separable shortcut.

    Two separable units (the second without the final PReLU), squeeze-and-excitation,
    plus the input (or a strided separable shortcut when the shape changes), PReLU.

    Args:
        x: input tensor.
        filters: int. Output channels.
        strides: int. Stride of the first unit and of the shortcut. Defaults to `1`.
        expansion: int. Channel expansion of the grouped convs. Defaults to `2`.
        name: str. Prefix of the layer names.
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = apply_variable_group_separable_block(
            x, filters, strides, expansion, False, name=f"{name}_shortcut"
        )
    x = apply_variable_group_separable_block(
        x, filters, strides, expansion, True, name=f"{name}_separable1"
    )
    x = apply_variable_group_separable_block(
        x, filters, 1, expansion, False, name=f"{name}_separable2"
    )
    x = apply_squeeze_excitation_block(x, SE_REDUCTION, name=name)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return apply_prelu(x, name=f"{name}_prelu")


def apply_downsampling_block(x, filters, strides=2, expansion=EXPANSION, name="block"):
    """VarGFaceNet's down-sampling block (branch merge).

    Two parallel strided separable units (no final PReLU) are added and activated, a
    third separable unit follows, and a strided separable shortcut is added, PReLU.

    Args:
        x: input tensor.
        filters: int. Output channels.
        strides: int. Defaults to `2`.
        expansion: int. Channel expansion of the grouped convs. Defaults to `2`.
        name: str. Prefix of the layer names.
    """
    shortcut = apply_variable_group_separable_block(
        x, filters, strides, expansion, False, name=f"{name}_shortcut"
    )
    branch1 = apply_variable_group_separable_block(
        x, filters, strides, expansion, False, name=f"{name}_branch1"
    )
    branch2 = apply_variable_group_separable_block(
        x, filters, strides, expansion, False, name=f"{name}_branch2"
    )
    x = keras.layers.Add(name=f"{name}_branch_add")([branch1, branch2])
    x = apply_prelu(x, name=f"{name}_branch_prelu")
    x = apply_variable_group_separable_block(
        x, filters, 1, expansion, False, name=f"{name}_separable"
    )
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return apply_prelu(x, name=f"{name}_prelu")


def apply_embedding_setting_block(x, embedding_size, dropout, name="embedding"):
    """VarGFaceNet's embedding setting: 1x1 conv → group conv over the map → 1x1 conv → FC → BN.

    1x1 conv to 1024 → variable group conv covering the whole map → 1x1 conv to 512 →
    the `"J"` output (FC → BN).

    Args:
        x: last feature map (batch, height, width, channels).
        embedding_size: int.
        dropout: float. Dropout before the FC.
        name: str. Prefix of the layer names.
    """
    x = apply_conv_bn_block(x, LAST_CHANNELS, 1, epsilon=BATCH_NORM_EPSILON, name=f"{name}_expand")
    # The whole map (7x7 at 112x112, 7x6 at 112x96), no padding: as the paper's 7x7.
    x = Conv2D(
        LAST_CHANNELS,
        (x.shape[1], x.shape[2]),
        padding="valid",
        groups=LAST_CHANNELS // CHANNELS_PER_GROUP,
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_group_conv",
    )(x)
    x = apply_batch_normalization(x, BATCH_NORM_EPSILON, name=f"{name}_group_bn")
    x = apply_conv_bn_block(
        x, LAST_CHANNELS // 2, 1, epsilon=BATCH_NORM_EPSILON, name=f"{name}_pointwise"
    )
    return apply_embedding_output(
        x, "J", embedding_size, dropout, name=name, epsilon=BATCH_NORM_EPSILON
    )


def vargfacenet(
    input_shape=(112, 112, 3),
    embedding_size=512,
    preprocessing=True,
    dropout=0.0,
    name="vargfacenet",
):
    """VarGFaceNet: variable group convolutions, head setting and embedding setting.

    Published size (Yan et al. 2019, 512-d, 112x112): 1.022 G FLOPs (the LFR 2019
    challenge's 1 G budget), counting a multiply-accumulate as two FLOPs.
    `keras_face.models.count_flops` gives 0.513 G multiply-accumulates (1.025 G FLOPs)
    and `keras_face.models.count_parameters` 5,198,292 (the paper gives no parameter
    count).

    Args:
        input_shape: `(height, width, channels)`; at least 16x16; `(112, 112, 3)` and
            `(112, 96, 3)` are the usual face crops. Defaults to `(112, 112, 3)`.
        embedding_size: int. Defaults to `512`.
        preprocessing: `True`/`"arcface"` for `(x - 127.5) / 128` (as the authors'
            code), `"insightface"` for `(x - 127.5) / 127.5`, `False`/`None` for none.
            Defaults to `True`.
        dropout: float. Dropout before the embedding FC. Defaults to `0.0`.
        name: str. Defaults to `"vargfacenet"`.

    Example:
        ```python
        backbone = keras_face.models.vargfacenet(input_shape=(112, 96, 3))
        ```

    References:
        - [Yan et al., VarGFaceNet: An Efficient Variable Group Convolutional Neural
          Network for Lightweight Face Recognition, ICCV Workshops 2019](
          https://arxiv.org/abs/1910.04985)
        - [Zhang et al., VarGNet, 2019](https://arxiv.org/abs/1907.05653)
    """
    input_shape = validate_backbone_arguments(input_shape, embedding_size, dropout, TOTAL_STRIDE)
    preprocessing = validate_preprocessing(preprocessing)
    widths = [int(filters * WIDTH_MULTIPLIER) for filters in FILTERS]

    inputs = keras.Input(shape=input_shape, name="image")
    x = apply_preprocessing(inputs, preprocessing)
    x = apply_conv_bn_block(x, widths[0], 3, epsilon=BATCH_NORM_EPSILON, name="head")
    x = apply_normal_block(x, widths[0], strides=2, expansion=1, name="head_block")
    for stage_index, (filters, blocks) in enumerate(zip(widths[1:], BLOCKS_PER_STAGE), start=1):
        x = apply_downsampling_block(x, filters, name=f"stage{stage_index}_block1")
        for block_index in range(2, blocks + 1):
            x = apply_normal_block(x, filters, name=f"stage{stage_index}_block{block_index}")
    embeddings = apply_embedding_setting_block(x, embedding_size, dropout)
    return keras.Model(inputs, embeddings, name=name)
