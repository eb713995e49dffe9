"""MobileFaceNet (Chen et al. 2018) and insightface's wider "mbf" variant.

Table 1 of the paper, for a 112x112 input:

| input | operator | expansion t | channels c | repeats n | stride s |
|---|---|---|---|---|---|
| 112x112x3 | conv 3x3 | - | 64 | 1 | 2 |
| 56x56x64 | depthwise conv 3x3 | - | 64 | 1 | 1 |
| 56x56x64 | bottleneck | 2 | 64 | 5 | 2 |
| 28x28x64 | bottleneck | 4 | 128 | 1 | 2 |
| 14x14x128 | bottleneck | 2 | 128 | 6 | 1 |
| 14x14x128 | bottleneck | 4 | 128 | 1 | 2 |
| 7x7x128 | bottleneck | 2 | 128 | 2 | 1 |
| 7x7x128 | conv 1x1 | - | 512 | 1 | 1 |
| 7x7x512 | linear GDConv 7x7 | - | 512 | 1 | 1 |
| 1x1x512 | linear conv 1x1 | - | 128 | 1 | 1 |

The bottleneck is MobileNetV2's (1x1 expansion → BN → PReLU → 3x3 depthwise (stride)
→ BN → PReLU → linear 1x1 projection → BN, plus the input when stride is 1 and the
channel count is unchanged) with PReLU in place of ReLU6. In insightface's
arcface_torch `mobilefacenet.py`, which "mbf" comes from, the expanded widths stay those
of the paper (128, 128, 256, 256, 512, 256) while the block outputs are multiplied by a
width scale (2 for "mbf"), and the second layer becomes a grouped 3x3 conv of 64 groups.
BN epsilon is 1e-5, as there.
"""

import keras

from keras_face.models.blocks import (
    apply_conv_bn_block,
    apply_preprocessing,
    validate_backbone_arguments,
    validate_preprocessing,
)
from keras_face.models.embedding import (
    apply_embedding_output,
    validate_embedding_output,
)

BATCH_NORM_EPSILON = 1e-5
# Stem conv and three stride-2 bottlenecks.
TOTAL_STRIDE = 16
HEAD_FILTERS = 512
# (output channels at width scale 1, expanded channels, repeats, stride of the first).
# The paper's t is expanded channels / input channels.
BOTTLENECK_STAGES = (
    (64, 128, 5, 2),
    (128, 256, 1, 2),
    (128, 256, 6, 1),
    (128, 512, 1, 2),
    (128, 256, 2, 1),
)


def apply_bottleneck_block(x, filters, expanded_filters, strides=1, name="block"):
    """MobileFaceNet's inverted residual bottleneck (MobileNetV2's, with PReLU).

    1x1 conv to `expanded_filters` → BN → PReLU → 3x3 depthwise conv (stride) → BN →
    PReLU → linear 1x1 conv to `filters` → BN, plus the input when the shapes match.

    Args:
        x: input tensor (batch, height, width, channels).
        filters: int. Output channels.
        expanded_filters: int. Channels of the depthwise stage.
        strides: int. Stride of the depthwise conv. Defaults to `1`.
        name: str. Prefix of the layer names, e.g. `"stage2_block3"`.
    """
    shortcut = x
    x = apply_conv_bn_block(
        x, expanded_filters, 1, epsilon=BATCH_NORM_EPSILON, name=f"{name}_expand"
    )
    x = apply_conv_bn_block(
        x,
        expanded_filters,
        3,
        strides=strides,
        groups=expanded_filters,
        epsilon=BATCH_NORM_EPSILON,
        name=f"{name}_depthwise",
    )
    x = apply_conv_bn_block(
        x,
        filters,
        1,
        activation=False,
        epsilon=BATCH_NORM_EPSILON,
        name=f"{name}_project",
    )
    if strides == 1 and shortcut.shape[-1] == filters:
        x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return x


def _mobile_face_net(
    width_scale, input_shape, embedding_size, output, preprocessing, dropout, name
):
    input_shape = validate_backbone_arguments(
        input_shape, embedding_size, dropout, TOTAL_STRIDE
    )
    output = validate_embedding_output(output)
    preprocessing = validate_preprocessing(preprocessing)

    inputs = keras.Input(shape=input_shape, name="image")
    x = apply_preprocessing(inputs, preprocessing)
    x = apply_conv_bn_block(
        x, 64 * width_scale, 3, strides=2, epsilon=BATCH_NORM_EPSILON, name="stem"
    )
    # Depthwise at width scale 1; 64 groups of `width_scale` channels otherwise.
    x = apply_conv_bn_block(
        x,
        64 * width_scale,
        3,
        groups=64,
        epsilon=BATCH_NORM_EPSILON,
        name="stem_depthwise",
    )
    for stage_index, (filters, expanded_filters, repeats, strides) in enumerate(
        BOTTLENECK_STAGES, start=1
    ):
        for block_index in range(1, repeats + 1):
            x = apply_bottleneck_block(
                x,
                filters * width_scale,
                expanded_filters,
                strides=strides if block_index == 1 else 1,
                name=f"stage{stage_index}_block{block_index}",
            )
    x = apply_conv_bn_block(x, HEAD_FILTERS, 1, epsilon=BATCH_NORM_EPSILON, name="head")
    embeddings = apply_embedding_output(
        x, output, embedding_size, dropout, name="embedding", epsilon=BATCH_NORM_EPSILON
    )
    return keras.Model(inputs, embeddings, name=name)


def mobilefacenet(
    input_shape=(112, 112, 3),
    embedding_size=128,
    output="GDC",
    preprocessing=True,
    dropout=0.0,
    name="mobilefacenet",
):
    """MobileFaceNet, the paper's network (128-d embeddings, global depthwise output).

    Published size (Chen et al. 2018, 128-d, 112x112): 0.99 M parameters, 221 M MAdds.
    `keras_face.models.count_parameters` gives 1,003,136 (0.976 M of them convolution
    and FC weights, the rest BN and PReLU parameters) and `keras_face.models.count_flops`
    220.97 M.

    Args:
        input_shape: `(height, width, channels)`; at least 16x16. Defaults to
            `(112, 112, 3)`.
        embedding_size: int. Defaults to `128`.
        output: str. Embedding output, `"GDC"` (the paper's linear GDConv → linear 1x1
            conv), `"E"`, `"F"`, `"J"` or `"GAP"`. Defaults to `"GDC"`.
        preprocessing: `True`/`"arcface"` for `(x - 127.5) / 128`, `"insightface"` for
            `(x - 127.5) / 127.5`, `False`/`None` for none. Defaults to `True`.
        dropout: float. Dropout before the embedding FC. Defaults to `0.0`.
        name: str. Defaults to `"mobilefacenet"`.

    Example:
        ```python
        backbone = keras_face.models.mobilefacenet(embedding_size=128)
        ```

    References:
        - [Chen et al., MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
          Verification on Mobile Devices, CCBR 2018](https://arxiv.org/abs/1804.07573)
    """
    return _mobile_face_net(
        1, input_shape, embedding_size, output, preprocessing, dropout, name
    )


def mobilefacenet_mbf(
    input_shape=(112, 112, 3),
    embedding_size=512,
    output="GDC",
    preprocessing=True,
    dropout=0.0,
    name="mobilefacenet_mbf",
):
    """insightface's "mbf": MobileFaceNet with doubled block widths, 512-d embeddings.

    Published size (insightface arcface_torch "mobilefacenet-0.45G", 512-d, 112x112):
    0.45 G FLOPs (ptflops' multiply-accumulates, BN and PReLU included).
    `keras_face.models.count_parameters` gives 2,059,520 and
    `keras_face.models.count_flops` 0.438 G (conv and FC only; 0.449 G with BN and PReLU
    counted as ptflops does).

    Args:
        input_shape: `(height, width, channels)`; at least 16x16. Defaults to
            `(112, 112, 3)`.
        embedding_size: int. Defaults to `512`.
        output: str. `"GDC"`, `"E"`, `"F"`, `"J"` or `"GAP"`. Defaults to `"GDC"`.
        preprocessing: `True`/`"arcface"`, `"insightface"`, `False`/`None`. Defaults to
            `True`.
        dropout: float. Dropout before the embedding FC. Defaults to `0.0`.
        name: str. Defaults to `"mobilefacenet_mbf"`.

    Example:
        ```python
        backbone = keras_face.models.mobilefacenet_mbf(embedding_size=512)
        ```

    References:
        - [Chen et al., MobileFaceNets, CCBR 2018](https://arxiv.org/abs/1804.07573)
        - insightface `recognition/arcface_torch/backbones/mobilefacenet.py` (`get_mbf`)
    """
    return _mobile_face_net(
        2, input_shape, embedding_size, output, preprocessing, dropout, name
    )
