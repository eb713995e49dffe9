"""Model sizes counted the way the face-recognition literature reports them.

`count_parameters` counts like PyTorch's `sum(p.numel() for p in model.parameters())`:
every weight, trainable or frozen (a frozen BN scale counts), but not the BN moving
statistics, which PyTorch keeps as buffers.

`count_flops` counts multiply-accumulates of the convolutions and fully connected
layers, which is what insightface reports as "FLOPs" (its `flops.py` prints ptflops'
MACs as "GFLOPs"); normalisation, activations and additions are left out.
"""

import math

import keras

_BATCH_NORM_STATISTICS = (
    "moving_mean",
    "moving_variance",
    "moving_stddev",
    "renorm_mean",
    "renorm_stddev",
)


def _iterate_layers(layer):
    yield layer
    for sublayer in getattr(layer, "layers", ()):
        yield from _iterate_layers(sublayer)


def count_parameters(model):
    """Number of parameters as PyTorch counts them (BN moving statistics excluded).

    Args:
        model: a built `keras.Model` (or layer).

    Returns:
        int.

    Example:
        ```python
        backbone = keras_face.models.iresnet50()
        keras_face.models.count_parameters(backbone)  # 43,590,848 (published: 43.59 M)
        ```
    """
    statistics = set()
    for layer in _iterate_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            for attribute in _BATCH_NORM_STATISTICS:
                variable = getattr(layer, attribute, None)
                if variable is not None:
                    statistics.add(id(variable))
    return sum(math.prod(weight.shape) for weight in model.weights if id(weight) not in statistics)


def _layer_flops(layer):
    """Multiply-accumulates of `layer` for one example (its single call in the graph)."""
    if not isinstance(
        layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    ):
        return 0
    input_shape = tuple(layer.input.shape)
    outputs_per_example = math.prod(layer.output.shape[1:])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        # Each output value reads one input channel over the kernel window.
        return outputs_per_example * math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.Conv2D):
        channels_per_group = input_shape[-1] // layer.groups
        return outputs_per_example * math.prod(layer.kernel_size) * channels_per_group
    return outputs_per_example * input_shape[-1]


def _graph_flops(model):
    return sum(
        _graph_flops(layer) if isinstance(layer, keras.Model) else _layer_flops(layer)
        for layer in model.layers
    )


def count_flops(model, input_shape=None):
    """Multiply-accumulates of one forward pass of one image (insightface's "FLOPs").

    Counts `Conv2D` (grouped convolutions included), `DepthwiseConv2D` and `Dense`
    layers from their input and output shapes, recursing into nested models. Each layer
    is counted once (a layer shared between several calls is not supported).

    Args:
        model: a functional `keras.Model`.
        input_shape: `(height, width, channels)` of one image. `None` uses the model's
            own input shape. Another shape rebuilds the model's graph (fresh weights) on
            that input first, which works for backbones whose layers do not depend on
            the input size (e.g. the `"GDC"` output does). Defaults to `None`.

    Returns:
        int.

    Example:
        ```python
        backbone = keras_face.models.iresnet50()
        keras_face.models.count_flops(backbone, (112, 112, 3))  # 6.309 G (published 6.3 G)
        ```
    """
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise ValueError(
            "count_flops needs a functional or built Sequential keras.Model. "
            f"Received: model={model!r}"
        )
    if input_shape is not None:
        input_shape = tuple(int(size) for size in input_shape)
        own_shape = tuple(model.inputs[0].shape[1:])
        if input_shape != own_shape:
            model = keras.models.clone_model(model, input_tensors=keras.Input(shape=input_shape))
    return _graph_flops(model)
