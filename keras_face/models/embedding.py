"""Embedding outputs: from the last feature map to the face embedding.

| output | layers | source |
|---|---|---|
| `"E"` | BN → Dropout → Flatten → Dense → BN (scale frozen) | ArcFace paper section 3.2, Option-E; insightface default |
| `"F"` | BN → Dropout → Flatten → Dense | insightface `get_fc1` option F |
| `"J"` | Flatten → Dropout → Dense → BN (scale frozen) | insightface `get_fc1` option J |
| `"GAP"` | BN → ReLU → global average pool → Dropout → Dense → BN (scale frozen) | insightface `get_fc1` option GAP |
| `"GDC"` | depthwise conv over the whole map → BN → Dropout → Flatten → Dense (no bias) → BN (scale frozen) | MobileFaceNet (global depthwise convolution) |

The last layer always computes in float32 so that the embedding is float32 under the
`mixed_float16` / `mixed_bfloat16` policies.
"""  # noqa: E501 (a Markdown table cannot wrap)

import keras

from keras_face.models.blocks import BATCH_NORM_MOMENTUM
from keras_face.models.blocks import apply_batch_normalization
from keras_face.models.depthwise_conv2d import DepthwiseConv2D
from keras_face.models.frozen_scale_batch_normalization import FrozenScaleBatchNormalization

EMBEDDING_OUTPUTS = ("E", "F", "J", "GAP", "GDC")


def check_embedding_backbone(backbone):
    """Check that `backbone` is a `keras.Model` from one image input to one embedding output.

    Args:
        backbone: the model to check.

    Returns:
        `backbone`, unchanged.

    Raises:
        ValueError: naming what `backbone` is instead.

    Example:
        ```python
        backbone = keras_face.models.check_embedding_backbone(keras_face.models.iresnet18())
        ```
    """
    if not isinstance(backbone, keras.Model):
        raise ValueError(
            "backbone must be a keras.Model from images to embeddings. "
            f"Received: backbone={backbone!r}"
        )
    if len(backbone.inputs) != 1 or len(backbone.outputs) != 1:
        raise ValueError(
            "backbone must have one image input and one embedding output. "
            f"Received: {len(backbone.inputs)} inputs, {len(backbone.outputs)} outputs"
        )
    return backbone


# Prefix of the layers `apply_embedding_output` adds after the last feature map
# (`embedding_bn`, `embedding_gdc_conv`, ...).
EMBEDDING_LAYER_PREFIX = "embedding_"


def find_feature_map(backbone, feature_layer=None):
    """The symbolic tensor of a backbone's last feature map (before its embedding layers).

    For a `keras_face.models` backbone this is the input of its first `embedding_*` layer
    (`apply_embedding_output`): the last convolutional map, `(batch, H, W, C)`.

    Args:
        backbone: functional `keras.Model` from images to embeddings.
        feature_layer: str. Name of the layer whose output is the feature map, for
            backbones not built by `keras_face.models`. Defaults to `None` (found by name).

    Returns:
        A `KerasTensor` of the backbone's graph.

    Raises:
        ValueError: no layer of that name, or no `embedding_*` layer.

    Example:
        ```python
        backbone = keras_face.models.mobilefacenet(input_shape=(32, 32, 3))
        keras_face.models.find_feature_map(backbone).shape  # (None, 2, 2, 512)
        ```
    """
    backbone = check_embedding_backbone(backbone)
    if feature_layer is not None:
        try:
            return backbone.get_layer(feature_layer).output
        except ValueError as error:
            raise ValueError(
                f"backbone {backbone.name!r} has no layer named {feature_layer!r}. "
                f"Received: feature_layer={feature_layer!r}"
            ) from error
    for layer in backbone.layers:
        if layer.name.startswith(EMBEDDING_LAYER_PREFIX):
            return layer.input
    last = [layer.name for layer in backbone.layers[-4:]]
    raise ValueError(
        f"Cannot find the feature map of backbone {backbone.name!r}: it has no layer named "
        f"'{EMBEDDING_LAYER_PREFIX}*' (the output layers of keras_face.models backbones). "
        "Pass feature_layer=<the name of the layer that outputs the last feature map>. "
        f"Received: a backbone whose last layers are {last}"
    )


def feature_map_model(backbone, feature_layer=None):
    """The trunk of a backbone: images to its last feature map (shares the weights).

    Args:
        backbone: functional `keras.Model` from images to embeddings.
        feature_layer: str. See `find_feature_map`. Defaults to `None`.

    Returns:
        A `keras.Model` `images -> (batch, H, W, C)`.

    Example:
        ```python
        trunk = keras_face.models.feature_map_model(keras_face.models.iresnet18())
        trunk.output.shape  # (None, 7, 7, 512)
        ```
    """
    feature_map = find_feature_map(backbone, feature_layer)
    return keras.Model(backbone.inputs[0], feature_map, name=f"{backbone.name}_trunk")


def embedding_head_model(backbone, feature_layer=None):
    """The rest of a backbone: its last feature map to the embedding (shares the weights).

    `embedding_head_model(b)(feature_map_model(b)(images))` equals `b(images)`; a method
    can put a layer between the two (MTLFace's attention decomposition).

    Args:
        backbone: functional `keras.Model` from images to embeddings.
        feature_layer: str. See `find_feature_map`. Defaults to `None`.

    Returns:
        A `keras.Model` `(batch, H, W, C) -> (batch, D)`.

    Example:
        ```python
        backbone = keras_face.models.iresnet18()
        tail = keras_face.models.embedding_head_model(backbone)
        embeddings = tail(keras_face.models.feature_map_model(backbone)(images))
        ```
    """
    feature_map = find_feature_map(backbone, feature_layer)
    return keras.Model(feature_map, backbone.outputs[0], name=f"{backbone.name}_embedding_head")


def validate_embedding_output(output):
    """Return the canonical (upper-case) name of an embedding output option."""
    key = output.upper() if isinstance(output, str) else output
    if key not in EMBEDDING_OUTPUTS:
        raise ValueError(
            f"Unknown embedding output; expected one of {list(EMBEDDING_OUTPUTS)}. "
            f"Received: output={output!r}"
        )
    return key


def apply_embedding_output(
    x, output="E", embedding_size=512, dropout=0.0, name="embedding", epsilon=1e-5
):
    """Turn the last feature map into the embedding, with one of the ArcFace options.

    Dropout, when used, sits just before the fully connected layer (for `"E"` the
    ArcFace paper's BN → Dropout → FC → BN; the dropout layer is always present, a no-op
    at rate 0, so that layer names do not depend on the rate).

    Args:
        x: feature map (batch, height, width, channels).
        output: str. One of `"E"`, `"F"`, `"J"`, `"GAP"`, `"GDC"` (case-insensitive).
            Defaults to `"E"`.
        embedding_size: int. Embedding dimension. Defaults to `512`.
        dropout: float. Dropout rate before the fully connected layer. Defaults to `0.0`.
        name: str. Prefix of the layer names (`f"{name}_fc"`, `f"{name}_features"`, ...).
            Defaults to `"embedding"`.
        epsilon: float. BN epsilon (1e-5 in arcface_torch, 2e-5 in the MXNet
            references). Defaults to `1e-5`.

    Returns:
        The float32 embedding tensor (batch, embedding_size).

    Example:
        ```python
        from keras_face.models.embedding import apply_embedding_output
        features = keras.Input((7, 7, 512))
        embeddings = apply_embedding_output(features, "GDC", embedding_size=128)
        ```

    References:
        - [Deng et al., ArcFace, CVPR 2019, section 3.2](https://arxiv.org/abs/1801.07698)
        - [Chen et al., MobileFaceNets, 2018](https://arxiv.org/abs/1804.07573)
    """
    output = validate_embedding_output(output)
    if output == "GDC":
        height, width = x.shape[1], x.shape[2]
        x = DepthwiseConv2D(
            (height, width),
            padding="valid",
            use_bias=False,
            depthwise_initializer="he_normal",
            name=f"{name}_gdc_conv",
        )(x)
        x = apply_batch_normalization(x, epsilon, name=f"{name}_gdc_bn")
    elif output in ("E", "F", "GAP"):
        x = apply_batch_normalization(x, epsilon, name=f"{name}_bn")
    if output == "GAP":
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    else:
        x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    if output == "F":
        # No BN after the FC: the Dense itself is the float32 output layer.
        return keras.layers.Dense(embedding_size, dtype="float32", name=f"{name}_fc")(x)
    x = keras.layers.Dense(embedding_size, use_bias=output != "GDC", name=f"{name}_fc")(x)
    return FrozenScaleBatchNormalization(
        momentum=BATCH_NORM_MOMENTUM,
        epsilon=epsilon,
        dtype="float32",
        name=f"{name}_features",
    )(x)
