"""IR-ResNet (improved residual network) and IR-SE-ResNet, the ArcFace backbones.

Transcribed from the ArcFace paper (section 3.2 and its figure of the improved residual
unit) and insightface's `arcface_torch/backbones/iresnet.py`:

- stem: 3x3 conv (stride 1, 64 channels) → BN → PReLU, at the full input resolution;
- four stages of 64, 128, 256 and 512 channels, each starting with stride 2
  (112 → 56 → 28 → 14 → 7);
- improved residual unit: BN → 3x3 conv → BN → PReLU → 3x3 conv (carrying the stride) →
  BN (→ squeeze-and-excitation for IR-SE), plus the input, or a strided 1x1 conv → BN
  shortcut where the shape changes, and no activation after the addition;
- embedding output "E" (BN → Dropout → Flatten → FC → BN with frozen scale) by default.

BN epsilon is 1e-5 and momentum 0.9 (PyTorch's 0.1), as in arcface_torch.
"""

import keras

from keras_face.models.blocks import apply_batch_normalization
from keras_face.models.blocks import apply_conv
from keras_face.models.blocks import apply_conv_bn_block
from keras_face.models.blocks import apply_prelu
from keras_face.models.blocks import apply_preprocessing
from keras_face.models.blocks import apply_squeeze_excitation_block
from keras_face.models.blocks import validate_backbone_arguments
from keras_face.models.blocks import validate_preprocessing
from keras_face.models.embedding import apply_embedding_output
from keras_face.models.embedding import validate_embedding_output

# The variants as data: blocks per stage, the sizes published by insightface's
# arcface_torch (512-d, 112x112; FLOPs are multiply-accumulates, `None` where none is
# published) and this implementation's exact parameter count (`count_parameters`).
VARIANTS = {
    18: {
        "blocks_per_stage": (2, 2, 2, 2),
        "published_parameters": 24.03e6,
        "published_flops": 2.6e9,
        "parameters": 24_025_600,
    },
    34: {
        "blocks_per_stage": (3, 4, 6, 3),
        "published_parameters": 34.14e6,
        "published_flops": None,
        "parameters": 34_139_328,
    },
    50: {
        "blocks_per_stage": (3, 4, 14, 3),
        "published_parameters": 43.59e6,
        "published_flops": 6.3e9,
        "parameters": 43_590_848,
    },
    100: {
        "blocks_per_stage": (3, 13, 30, 3),
        "published_parameters": 65.16e6,
        "published_flops": 12.1e9,
        "parameters": 65_156_160,
    },
    200: {
        "blocks_per_stage": (6, 26, 60, 6),
        "published_parameters": 118.83e6,
        "published_flops": 23.5e9,
        "parameters": 118_833_920,
    },
}
BLOCKS_PER_STAGE = {depth: variant["blocks_per_stage"] for depth, variant in VARIANTS.items()}
STAGE_FILTERS = (64, 128, 256, 512)
STEM_FILTERS = 64
BATCH_NORM_EPSILON = 1e-5
SE_REDUCTION = 16
# Four stride-2 stages.
TOTAL_STRIDE = 16


def apply_improved_residual_block(x, filters, strides=1, se=False, name="block"):
    """The improved residual unit of IR-ResNet (ArcFace paper, figure of section 3.2).

    BN → 3x3 conv → BN → PReLU → 3x3 conv (stride) → BN (→ SE), added to the input, or to
    a strided 1x1 conv → BN shortcut when the stride or channel count changes. No
    activation follows the addition.

    Args:
        x: input tensor (batch, height, width, channels).
        filters: int. Output channels.
        strides: int. Stride of the second 3x3 conv and the shortcut. Defaults to `1`.
        se: bool. Add squeeze-and-excitation (reduction 16) before the addition.
            Defaults to `False`.
        name: str. Prefix of the layer names, e.g. `"stage2_block3"`.
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = apply_conv_bn_block(
            x,
            filters,
            1,
            strides=strides,
            activation=False,
            epsilon=BATCH_NORM_EPSILON,
            name=f"{name}_shortcut",
        )
    residual = apply_batch_normalization(x, BATCH_NORM_EPSILON, name=f"{name}_bn1")
    residual = apply_conv(residual, filters, 3, name=f"{name}_conv1")
    residual = apply_batch_normalization(residual, BATCH_NORM_EPSILON, name=f"{name}_bn2")
    residual = apply_prelu(residual, name=f"{name}_prelu")
    residual = apply_conv(residual, filters, 3, strides=strides, name=f"{name}_conv2")
    residual = apply_batch_normalization(residual, BATCH_NORM_EPSILON, name=f"{name}_bn3")
    if se:
        residual = apply_squeeze_excitation_block(residual, SE_REDUCTION, name=name)
    return keras.layers.Add(name=f"{name}_add")([residual, shortcut])


def build_iresnet(
    depth,
    input_shape=(112, 112, 3),
    embedding_size=512,
    output="E",
    se=False,
    preprocessing=True,
    dropout=0.0,
    name=None,
):
    """IR-ResNet (or IR-SE-ResNet) of a given depth, from face crops to embeddings.

    `iresnet18` ... `iresnet200` call this with their depth. The variants (blocks per
    stage, published sizes, exact parameter counts) are the data of
    `keras_face.models.iresnet.VARIANTS`; `count_flops` gives 2.610 G, 4.460 G, 6.309 G,
    12.090 G and 23.419 G multiply-accumulates at 112x112 for depths 18 to 200.

    Args:
        depth: int. One of 18, 34, 50, 100, 200.
        input_shape: `(height, width, channels)`; height and width at least 16.
            Defaults to `(112, 112, 3)`.
        embedding_size: int. Embedding dimension. Defaults to `512`.
        output: str. Embedding output option, `"E"`, `"F"`, `"J"`, `"GAP"` or `"GDC"`
            (see `keras_face.models.embedding`). Defaults to `"E"`.
        se: bool. Squeeze-and-excitation in every residual unit (IR-SE). Defaults to
            `False`.
        preprocessing: `True`/`"arcface"` for `(x - 127.5) / 128` in the model (raw RGB
            in [0, 255] in), `"insightface"` for `(x - 127.5) / 127.5`, `False`/`None`
            for none. Defaults to `True`.
        dropout: float. Dropout rate before the embedding's fully connected layer.
            Defaults to `0.0`.
        name: str. Model name. Defaults to `f"iresnet{depth}"` (`"_se"` appended for
            IR-SE).

    Returns:
        A functional `keras.Model` from images to float32 embeddings.

    Example:
        ```python
        backbone = keras_face.models.build_iresnet(50, embedding_size=512, se=True)
        ```

    References:
        - [Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition,
          CVPR 2019](https://arxiv.org/abs/1801.07698)
        - [Han et al., Deep Pyramidal Residual Networks (the improved unit), CVPR 2017](
          https://arxiv.org/abs/1610.02915)
    """
    if isinstance(depth, bool) or depth not in BLOCKS_PER_STAGE:
        raise ValueError(
            f"Unknown IR-ResNet depth; expected one of {sorted(BLOCKS_PER_STAGE)}. "
            f"Received: depth={depth!r}"
        )
    input_shape = validate_backbone_arguments(input_shape, embedding_size, dropout, TOTAL_STRIDE)
    output = validate_embedding_output(output)
    preprocessing = validate_preprocessing(preprocessing)
    if name is None:
        name = f"iresnet{depth}" + ("_se" if se else "")

    inputs = keras.Input(shape=input_shape, name="image")
    x = apply_preprocessing(inputs, preprocessing)
    x = apply_conv_bn_block(x, STEM_FILTERS, 3, epsilon=BATCH_NORM_EPSILON, name="stem")
    for stage_index, (filters, blocks) in enumerate(
        zip(STAGE_FILTERS, BLOCKS_PER_STAGE[depth]), start=1
    ):
        for block_index in range(1, blocks + 1):
            x = apply_improved_residual_block(
                x,
                filters,
                strides=2 if block_index == 1 else 1,
                se=se,
                name=f"stage{stage_index}_block{block_index}",
            )
    embeddings = apply_embedding_output(
        x, output, embedding_size, dropout, name="embedding", epsilon=BATCH_NORM_EPSILON
    )
    return keras.Model(inputs, embeddings, name=name)


def iresnet18(
    input_shape=(112, 112, 3),
    embedding_size=512,
    output="E",
    se=False,
    preprocessing=True,
    dropout=0.0,
    name=None,
):
    """IR-ResNet-18 (blocks per stage 2, 2, 2, 2): 24.03 M parameters, 2.6 G FLOPs.

    `build_iresnet(18, ...)`: the arguments are documented there, the sizes in
    `keras_face.models.iresnet.VARIANTS[18]` and on the Models page.

    Example:
        ```python
        backbone = keras_face.models.iresnet18(embedding_size=512)
        ```
    """
    return build_iresnet(18, input_shape, embedding_size, output, se, preprocessing, dropout, name)


def iresnet34(
    input_shape=(112, 112, 3),
    embedding_size=512,
    output="E",
    se=False,
    preprocessing=True,
    dropout=0.0,
    name=None,
):
    """IR-ResNet-34 (blocks per stage 3, 4, 6, 3): 34.14 M parameters.

    `build_iresnet(34, ...)`: the arguments are documented there, the sizes in
    `keras_face.models.iresnet.VARIANTS[34]` and on the Models page.

    Example:
        ```python
        backbone = keras_face.models.iresnet34(embedding_size=512)
        ```
    """
    return build_iresnet(34, input_shape, embedding_size, output, se, preprocessing, dropout, name)


def iresnet50(
    input_shape=(112, 112, 3),
    embedding_size=512,
    output="E",
    se=False,
    preprocessing=True,
    dropout=0.0,
    name=None,
):
    """IR-ResNet-50 (3, 4, 14, 3), "LResNet50E-IR": 43.59 M parameters, 6.3 G FLOPs.

    `build_iresnet(50, ...)`: the arguments are documented there, the sizes in
    `keras_face.models.iresnet.VARIANTS[50]` and on the Models page.

    Example:
        ```python
        backbone = keras_face.models.iresnet50(embedding_size=512)
        ```
    """
    return build_iresnet(50, input_shape, embedding_size, output, se, preprocessing, dropout, name)


def iresnet100(
    input_shape=(112, 112, 3),
    embedding_size=512,
    output="E",
    se=False,
    preprocessing=True,
    dropout=0.0,
    name=None,
):
    """IR-ResNet-100 (3, 13, 30, 3), "LResNet100E-IR": 65.16 M parameters, 12.1 G FLOPs.

    `build_iresnet(100, ...)`: the arguments are documented there, the sizes in
    `keras_face.models.iresnet.VARIANTS[100]` and on the Models page.

    Example:
        ```python
        backbone = keras_face.models.iresnet100(embedding_size=512)
        ```
    """
    return build_iresnet(100, input_shape, embedding_size, output, se, preprocessing, dropout, name)


def iresnet200(
    input_shape=(112, 112, 3),
    embedding_size=512,
    output="E",
    se=False,
    preprocessing=True,
    dropout=0.0,
    name=None,
):
    """IR-ResNet-200 (blocks per stage 6, 26, 60, 6): 118.83 M parameters, 23.5 G FLOPs.

    `build_iresnet(200, ...)`: the arguments are documented there, the sizes in
    `keras_face.models.iresnet.VARIANTS[200]` and on the Models page.

    Example:
        ```python
        backbone = keras_face.models.iresnet200(embedding_size=512)
        ```
    """
    return build_iresnet(200, input_shape, embedding_size, output, se, preprocessing, dropout, name)
