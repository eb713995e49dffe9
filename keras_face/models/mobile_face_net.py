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

import numbers

import keras

from keras_face.models.blocks import apply_conv_bn_block
from keras_face.models.blocks import apply_preprocessing
from keras_face.models.blocks import validate_backbone_arguments
from keras_face.models.blocks import validate_preprocessing
from keras_face.models.embedding import apply_embedding_output
from keras_face.models.embedding import validate_embedding_output

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


# The variants as data: width scale of the block outputs, default embedding size, the
# published sizes (112x112; FLOPs are multiply-accumulates, `None` where none is
# published) and this implementation's exact counts (`count_parameters`, `count_flops`).
# The paper's 0.99 M parameters lie between the conv/FC weights alone (0.976 M) and the
# full count with BN and PReLU; insightface's 0.45 G for "mbf" is ptflops' count with BN
# and PReLU (0.449 G here with them).
VARIANTS = {
    "mobilefacenet": {
        "width_scale": 1,
        "embedding_size": 128,
        "published_parameters": 0.99e6,
        "published_flops": 221e6,
        "parameters": 1_003_136,
        "flops": 220_965_376,
    },
    "mobilefacenet_mbf": {
        "width_scale": 2,
        "embedding_size": 512,
        "published_parameters": None,
        "published_flops": 0.45e9,
        "parameters": 2_059_520,
        "flops": None,
    },
}


def build_mobilefacenet(
    width_scale=1,
    input_shape=(112, 112, 3),
    embedding_size=128,
    output="GDC",
    preprocessing=True,
    dropout=0.0,
    name=None,
):
    """MobileFaceNet at a given width scale, from face crops to embeddings.

    `mobilefacenet` (the paper's network, width scale 1) and `mobilefacenet_mbf`
    (insightface's "mbf", width scale 2) call this; their sizes are the data of
    `keras_face.models.mobile_face_net.VARIANTS`.

    Args:
        width_scale: int. Multiplier of the block output widths; at 2 and above the
            second layer is a grouped 3x3 conv of 64 groups. Defaults to `1`.
        input_shape: `(height, width, channels)`; at least 16x16. Defaults to
            `(112, 112, 3)`.
        embedding_size: int. Defaults to `128`.
        output: str. Embedding output, `"GDC"` (the paper's linear GDConv → linear 1x1
            conv), `"E"`, `"F"`, `"J"` or `"GAP"`. Defaults to `"GDC"`.
        preprocessing: `True`/`"arcface"` for `(x - 127.5) / 128`, `"insightface"` for
            `(x - 127.5) / 127.5`, `False`/`None` for none. Defaults to `True`.
        dropout: float. Dropout before the embedding FC. Defaults to `0.0`.
        name: str. Model name. Defaults to `"mobilefacenet"` at width scale 1,
            `f"mobilefacenet_x{width_scale}"` otherwise.

    Returns:
        A functional `keras.Model` from images to float32 embeddings.

    Example:
        ```python
        backbone = keras_face.models.build_mobilefacenet(2, embedding_size=512)
        ```

    References:
        - [Chen et al., MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
          Verification on Mobile Devices, CCBR 2018](https://arxiv.org/abs/1804.07573)
        - insightface `recognition/arcface_torch/backbones/mobilefacenet.py` (`get_mbf`)
    """
    if (
        isinstance(width_scale, bool)
        or not isinstance(width_scale, numbers.Integral)
        or width_scale < 1
    ):
        raise ValueError(
            f"`width_scale` must be a positive integer. Received: width_scale={width_scale!r}"
        )
    if name is None:
        name = "mobilefacenet" if width_scale == 1 else f"mobilefacenet_x{width_scale}"
    input_shape = validate_backbone_arguments(input_shape, embedding_size, dropout, TOTAL_STRIDE)
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
    """MobileFaceNet, the paper's network: 0.99 M parameters, 221 M MAdds (128-d).

    `build_mobilefacenet(1, ...)`: the arguments are documented there, the sizes in
    `keras_face.models.mobile_face_net.VARIANTS["mobilefacenet"]` and on the Models page.

    Example:
        ```python
        backbone = keras_face.models.mobilefacenet(embedding_size=128)
        ```
    """
    return build_mobilefacenet(1, input_shape, embedding_size, output, preprocessing, dropout, name)


def mobilefacenet_mbf(
    input_shape=(112, 112, 3),
    embedding_size=512,
    output="GDC",
    preprocessing=True,
    dropout=0.0,
    name="mobilefacenet_mbf",
):
    """insightface's "mbf": MobileFaceNet at twice the block widths, 0.45 G FLOPs (512-d).

    `build_mobilefacenet(2, ...)`: the arguments are documented there, the sizes in
    `keras_face.models.mobile_face_net.VARIANTS["mobilefacenet_mbf"]` and on the Models
    page.

    Example:
        ```python
        backbone = keras_face.models.mobilefacenet_mbf(embedding_size=512)
        ```
    """
    return build_mobilefacenet(2, input_shape, embedding_size, output, preprocessing, dropout, name)
