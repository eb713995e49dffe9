"""Load insightface `arcface_torch` backbone weights (`.pth` state_dicts) into Keras models.

`arcface_torch` (insightface `recognition/arcface_torch`) publishes its backbones as
PyTorch state_dicts saved with `torch.save(backbone.state_dict(), "model.pt")`. The
IR-ResNets (`r18`, `r34`, `r50`, `r100`, `r200`) and the MobileFaceNet `mbf` have the same
layers as `keras_face.models.build_iresnet` and `keras_face.models.build_mobilefacenet`,
so every tensor maps to one Keras weight:

- convolutions: PyTorch `(out, in / groups, kh, kw)` → Keras `(kh, kw, in / groups, out)`;
  depthwise `(channels, 1, kh, kw)` → `(kh, kw, channels, 1)`;
- batch norms: `weight`, `bias`, `running_mean`, `running_var` → `gamma`, `beta`,
  `moving_mean`, `moving_variance` (`num_batches_tracked` is dropped); PyTorch does not
  store epsilon, so the Keras layers must use arcface_torch's 1e-5 (checked);
- PReLU: `(channels,)` → `(1, 1, channels)`;
- the IR-ResNet `fc`: PyTorch flattens the last feature map as (C, H, W), Keras as
  (H, W, C): the input axis of the weight is reordered (without it, the embeddings of
  the ported model have a cosine of about 0.04 with the original's);
- the final `features` batch norm: its scale, held at one by arcface_torch
  (`requires_grad = False`), goes into the frozen scale of
  `keras_face.models.FrozenScaleBatchNormalization`. In `mbf` that scale is trained; it
  is copied as it is (inference is unchanged; fine-tuning in Keras keeps it fixed).

Files are read with `torch.load(weights_only=True)`: a pickle that would run code is
refused, nothing in the file is executed. PyTorch is needed only to read the file.
"""

import os
import re

import keras
import numpy as np

from keras_face.errors import KerasFaceError
from keras_face.models.iresnet import VARIANTS as IRESNET_VARIANTS
from keras_face.models.iresnet import build_iresnet
from keras_face.models.mobile_face_net import build_mobilefacenet

# The input size of the published models (used when the weights do not tell).
DEFAULT_INPUT_SHAPE = (112, 112, 3)
# arcface_torch's `get_model` names of the backbones this module converts.
ARCFACE_TORCH_ARCHITECTURES = ("r18", "r34", "r50", "r100", "r200", "mbf")
# arcface_torch builds every batch norm with PyTorch's default epsilon.
ARCFACE_TORCH_BATCH_NORM_EPSILON = 1e-5
_IGNORED_SUFFIX = ".num_batches_tracked"
# Keys of the checkpoints arcface_torch writes during training (`checkpoint_gpu_0.pt`).
_CHECKPOINT_KEY = "state_dict_backbone"


class WeightConversionError(KerasFaceError, ValueError):
    """A weights file that cannot be loaded into the requested Keras model.

    The message names the file and lists what does not match: missing, unexpected and
    mis-shaped tensors, or why the file is not a state_dict of a known architecture.

    Example:
        ```python
        try:
            keras_face.models.from_arcface_torch("resnet50_imagenet.pth")
        except keras_face.models.WeightConversionError as error:
            print(error)
        ```
    """


def read_arcface_torch_state_dict(path):
    """Read a PyTorch `.pth` state_dict as NumPy arrays, without running code from it.

    Accepts a plain state_dict (`torch.save(model.state_dict(), path)`), a
    DistributedDataParallel one (`module.` prefixes dropped) and arcface_torch's training
    checkpoints (their `"state_dict_backbone"`).

    Args:
        path: str. The `.pth` / `.pt` file.

    Returns:
        dict from parameter name to float32 (or integer, for counters) NumPy array.

    Raises:
        WeightConversionError: naming the file, when it is not a weights-only PyTorch
            file or does not hold a state_dict of tensors.

    Example:
        ```python
        state_dict = keras_face.models.read_arcface_torch_state_dict("backbone.pth")
        state_dict["fc.weight"].shape  # (512, 25088) for r50
        ```
    """
    # PyTorch is an optional dependency, needed only to read `.pth` files.
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found. Received: path={path!r}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a refused or corrupt file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise WeightConversionError(
            f"{path}: not a weights-only PyTorch file (torch.load(weights_only=True) "
            f"refused it: {type(error).__name__}: {first_line[:200]})"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get(_CHECKPOINT_KEY), dict):
        loaded = loaded[_CHECKPOINT_KEY]
    if not isinstance(loaded, dict) or not loaded:
        raise WeightConversionError(
            f"{path}: expected a state_dict (a dict from parameter names to tensors). "
            f"Received: {type(loaded).__name__}" + (" (empty)" if isinstance(loaded, dict) else "")
        )
    not_tensors = [key for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise WeightConversionError(
            f"{path}: expected a state_dict of tensors; these entries are not tensors: "
            f"{_short_list(not_tensors)}"
        )
    state_dict = {}
    for key, tensor in loaded.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        state_dict[str(name)] = tensor.numpy()
    return state_dict


def arcface_torch_architecture(state_dict, source="state_dict"):
    """Name the arcface_torch backbone that a state_dict belongs to.

    Args:
        state_dict: dict from parameter names to arrays (`read_arcface_torch_state_dict`).
        source: str. What to call the state_dict in errors (its file). Defaults to
            `"state_dict"`.

    Returns:
        str. One of `ARCFACE_TORCH_ARCHITECTURES`: `"r18"` ... `"r200"` or `"mbf"`.

    Raises:
        WeightConversionError: when the names match no supported backbone.

    Example:
        ```python
        keras_face.models.arcface_torch_architecture(state_dict)  # "r50"
        ```
    """
    if "layer1.0.conv1.weight" in state_dict and "fc.weight" in state_dict:
        blocks = tuple(_count_indices(state_dict, f"layer{stage}.") for stage in range(1, 5))
        for depth, variant in IRESNET_VARIANTS.items():
            if variant["blocks_per_stage"] == blocks:
                return f"r{depth}"
        raise WeightConversionError(
            f"{source}: an IR-ResNet with {blocks} blocks per stage, which is none of "
            f"arcface_torch's {list(ARCFACE_TORCH_ARCHITECTURES[:-1])}. Received: "
            f"blocks_per_stage={blocks}"
        )
    if "conv_sep.layers.0.weight" in state_dict and "features.layers.2.weight" in state_dict:
        return "mbf"
    raise WeightConversionError(
        f"{source}: not an arcface_torch IR-ResNet or mbf state_dict (no 'layer1.0.conv1.weight' "
        f"or 'conv_sep.layers.0.weight'); its first names are {_short_list(list(state_dict))}"
    )


def from_arcface_torch(
    weights,
    architecture=None,
    input_shape=None,
    preprocessing="insightface",
    name=None,
):
    """Build the keras_face model of an arcface_torch backbone and load its weights.

    The embeddings equal arcface_torch's (`backbone.eval()`) to float32 rounding, on
    images normalised the same way: with the default `preprocessing="insightface"` the
    Keras model takes raw RGB in [0, 255] and applies arcface_torch's
    `(x / 255 - 0.5) / 0.5` itself.

    Args:
        weights: str (a `.pth` file) or a state_dict (dict of arrays or tensors).
        architecture: str. `"r18"`, `"r34"`, `"r50"`, `"r100"`, `"r200"` or `"mbf"`
            (keras_face names such as `"iresnet50"`, `"mobilefacenet_mbf"` also work).
            Defaults to `None`: read from the parameter names.
        input_shape: `(height, width, 3)`. Defaults to `None`: read from the weights (the
            `fc` input of an IR-ResNet, the GDC kernel of mbf; square crops, 112x112 for
            the published models).
        preprocessing: the model's input normalisation (see `build_iresnet`).
            Defaults to `"insightface"`, arcface_torch's.
        name: str. Model name. Defaults to the keras_face factory's name.

    Returns:
        A functional `keras.Model` from images to float32 embeddings.

    Raises:
        WeightConversionError: naming the file, listing missing, unexpected and
            mis-shaped tensors when the weights do not fit the architecture.

    Example:
        ```python
        backbone = keras_face.models.from_arcface_torch("ms1mv3_arcface_r50.pth")
        backbone.save("r50.keras")
        ```

    References:
        - insightface `recognition/arcface_torch/backbones/iresnet.py`, `mobilefacenet.py`
    """
    if architecture is not None:
        architecture = _canonical(architecture)
    state_dict, source = _state_dict_and_source(weights)
    if architecture is None:
        architecture = arcface_torch_architecture(state_dict, source)
    if input_shape is None:
        input_shape = _input_shape_of(state_dict, architecture, source)
    model = _build(architecture, state_dict, input_shape, preprocessing, name)
    return _assign(model, architecture, state_dict, source)


def load_arcface_torch_weights(model, weights, architecture=None):
    """Load an arcface_torch state_dict into an existing keras_face model.

    Args:
        model: a `keras.Model` built by `build_iresnet` (output `"E"`) or
            `build_mobilefacenet` (output `"GDC"`) with arcface_torch's sizes.
        weights: str (a `.pth` file) or a state_dict (dict of arrays or tensors).
        architecture: str. As in `from_arcface_torch`. Defaults to `None`: read from the
            parameter names.

    Returns:
        `model`, with its weights replaced.

    Raises:
        WeightConversionError: naming the file, listing missing, unexpected and
            mis-shaped tensors; or a batch norm whose epsilon is not 1e-5.

    Example:
        ```python
        backbone = keras_face.models.iresnet50(preprocessing="insightface")
        keras_face.models.load_arcface_torch_weights(backbone, "backbone.pth")
        ```
    """
    if architecture is not None:
        architecture = _canonical(architecture)
    state_dict, source = _state_dict_and_source(weights)
    if architecture is None:
        architecture = arcface_torch_architecture(state_dict, source)
    return _assign(model, architecture, state_dict, source)


def _short_list(names, limit=8):
    names = list(names)
    shown = ", ".join(str(name) for name in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"


def _count_indices(state_dict, prefix):
    indices = set()
    for key in state_dict:
        if key.startswith(prefix):
            head = key[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                indices.add(int(head))
    return len(indices)


def _canonical(architecture):
    key = str(architecture).lower().replace("-", "_")
    key = {"mobilefacenet_mbf": "mbf"}.get(key, key)
    match = re.fullmatch(r"(?:iresnet|r)(\d+)", key)
    if match:
        key = f"r{match.group(1)}"
    if key not in ARCFACE_TORCH_ARCHITECTURES:
        raise ValueError(
            f"Unknown arcface_torch architecture; expected one of "
            f"{list(ARCFACE_TORCH_ARCHITECTURES)}. Received: architecture={architecture!r}"
        )
    return key


def _state_dict_and_source(weights):
    if isinstance(weights, (str, os.PathLike)):
        return read_arcface_torch_state_dict(weights), os.fspath(weights)
    if not isinstance(weights, dict):
        raise WeightConversionError(
            "weights must be a .pth path or a state_dict. "
            f"Received: weights of type {type(weights).__name__}"
        )
    state_dict = {}
    for key, value in weights.items():
        if hasattr(value, "detach"):  # a torch.Tensor
            value = value.detach().cpu()
            value = value.float() if value.is_floating_point() else value
            value = value.numpy()
        state_dict[key[len("module.") :] if key.startswith("module.") else key] = np.asarray(value)
    return state_dict, "state_dict"


def _input_shape_of(state_dict, architecture, source):
    """The input size the weights were trained at; 112x112 when they do not tell."""
    if architecture == "mbf":
        kernel = state_dict.get("features.layers.0.layers.0.weight")
        if kernel is None or kernel.ndim != 4:
            return DEFAULT_INPUT_SHAPE  # the mismatch is listed when the weights are assigned
        return (16 * kernel.shape[2], 16 * kernel.shape[3], 3)
    fc = state_dict.get("fc.weight")
    channels = state_dict.get("bn2.weight")
    if fc is None or fc.ndim != 2 or channels is None or channels.ndim != 1:
        return DEFAULT_INPUT_SHAPE
    cells = fc.shape[1] // channels.shape[0]
    side = int(round(np.sqrt(cells)))
    if side * side * channels.shape[0] != fc.shape[1]:
        raise WeightConversionError(
            f"{source}: the fc input ({fc.shape[1]} values) is not a square map of "
            f"{channels.shape[0]} channels; pass input_shape. Received: fc.weight shape "
            f"{tuple(fc.shape)}"
        )
    return (16 * side, 16 * side, 3)


def _build(architecture, state_dict, input_shape, preprocessing, name):
    # Sizes read from the weights where present; a missing tensor is reported by _assign.
    if architecture == "mbf":
        stem = state_dict.get("layers.0.layers.0.weight")
        fc = state_dict.get("features.layers.2.weight")
        width_scale = max(int(stem.shape[0]) // 64, 1) if stem is not None else 2
        return build_mobilefacenet(
            width_scale,
            input_shape=input_shape,
            embedding_size=int(fc.shape[0]) if fc is not None else 512,
            output="GDC",
            preprocessing=preprocessing,
            name="mobilefacenet_mbf" if name is None and width_scale == 2 else name,
        )
    fc = state_dict.get("fc.weight")
    return build_iresnet(
        int(architecture[1:]),
        input_shape=input_shape,
        embedding_size=int(fc.shape[0]) if fc is not None and fc.ndim == 2 else 512,
        output="E",
        preprocessing=preprocessing,
        name=name,
    )


def _iresnet_prefix(layer_name):
    fixed = {
        "stem_conv": "conv1",
        "stem_bn": "bn1",
        "stem_prelu": "prelu",
        "embedding_bn": "bn2",
        "embedding_fc": "fc",
        "embedding_features": "features",
    }
    if layer_name in fixed:
        return fixed[layer_name]
    match = re.fullmatch(r"stage(\d+)_block(\d+)_(\w+)", layer_name)
    if not match:
        return None
    stage, block, part = int(match.group(1)), int(match.group(2)), match.group(3)
    part = {"shortcut_conv": "downsample.0", "shortcut_bn": "downsample.1"}.get(part, part)
    if part not in ("bn1", "conv1", "bn2", "prelu", "conv2", "bn3", "downsample.0", "downsample.1"):
        return None
    return f"layer{stage}.{block - 1}.{part}"


def _mbf_block_module(stage, block):
    # arcface_torch's `self.layers`: 0 stem, 1 stem depthwise, then per keras_face stage a
    # strided `DepthWise` and/or a `Residual` (`get_mbf`'s blocks=(1, 4, 6, 2)).
    if stage == 1:
        return "layers.2" if block == 1 else f"layers.3.layers.{block - 2}"
    return {
        2: "layers.4",
        3: f"layers.5.layers.{block - 1}",
        4: "layers.6",
        5: f"layers.7.layers.{block - 1}",
    }.get(stage)


def _mbf_prefix(layer_name):
    fixed = {
        "embedding_gdc_conv": "features.layers.0.layers.0",
        "embedding_gdc_bn": "features.layers.0.layers.1",
        "embedding_fc": "features.layers.2",
        "embedding_features": "features.layers.3",
    }
    if layer_name in fixed:
        return fixed[layer_name]
    parts = {"conv": 0, "bn": 1, "prelu": 2}
    match = re.fullmatch(r"(stem|stem_depthwise|head)_(conv|bn|prelu)", layer_name)
    if match:
        module = {"stem": "layers.0", "stem_depthwise": "layers.1", "head": "conv_sep"}
        return f"{module[match.group(1)]}.layers.{parts[match.group(2)]}"
    match = re.fullmatch(
        r"stage(\d+)_block(\d+)_(expand|depthwise|project)_(conv|bn|prelu)", layer_name
    )
    if not match:
        return None
    module = _mbf_block_module(int(match.group(1)), int(match.group(2)))
    if module is None:
        return None
    unit = {"expand": 0, "depthwise": 1, "project": 2}[match.group(3)]
    return f"{module}.layers.{unit}.layers.{parts[match.group(4)]}"


def _expected_tensors(layer, prefix):
    """`[(torch name, torch shape), ...]` of a Keras layer, `None` for an unknown kind."""
    weights = [tuple(weight.shape) for weight in layer.weights]
    if isinstance(layer, keras.layers.BatchNormalization):
        channels = weights[0]
        names = ("weight", "bias", "running_mean", "running_var")
        return [(f"{prefix}.{name}", channels) for name in names]
    if isinstance(layer, keras.layers.PReLU):
        return [(f"{prefix}.weight", (int(np.prod(weights[0])),))]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, channels, multiplier = weights[0]
        expected = [(f"{prefix}.weight", (channels * multiplier, 1, kh, kw))]
    elif isinstance(layer, keras.layers.Conv2D):
        kh, kw, inputs, outputs = weights[0]
        expected = [(f"{prefix}.weight", (outputs, inputs, kh, kw))]
    elif isinstance(layer, keras.layers.Dense):
        inputs, outputs = weights[0]
        expected = [(f"{prefix}.weight", (outputs, inputs))]
    else:
        return None
    if layer.use_bias:
        expected.append((f"{prefix}.bias", weights[1]))
    return expected


def _to_keras(layer, arrays, flatten_shape):
    """Keras weight values of `layer` from its PyTorch tensors (`_expected_tensors` order)."""
    if isinstance(layer, keras.layers.BatchNormalization):
        # In weight order (FrozenScaleBatchNormalization creates gamma last).
        gamma, beta, mean, variance = arrays
        values = {"gamma": gamma, "beta": beta, "moving_mean": mean, "moving_variance": variance}
        return [values[weight.name] for weight in layer.weights]
    if isinstance(layer, keras.layers.PReLU):
        return [arrays[0].reshape(tuple(layer.weights[0].shape))]
    kernel = arrays[0]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        channels = kernel.shape[0]
        multiplier = layer.weights[0].shape[-1]
        kernel = kernel.reshape(channels // multiplier, multiplier, *kernel.shape[2:])
        kernel = kernel.transpose(2, 3, 0, 1)
    elif isinstance(layer, keras.layers.Conv2D):
        kernel = kernel.transpose(2, 3, 1, 0)
    else:  # Dense
        if flatten_shape is not None:
            height, width, channels = flatten_shape
            # PyTorch flattened (C, H, W); Keras flattens (H, W, C).
            kernel = kernel.reshape(kernel.shape[0], channels, height, width)
            kernel = kernel.transpose(0, 2, 3, 1).reshape(kernel.shape[0], -1)
        kernel = kernel.T
    return [kernel] + list(arrays[1:])


def _flatten_shape(model, architecture):
    if architecture == "mbf":
        return None  # the GDC output is 1x1: both flatten orders agree.
    try:
        shape = tuple(model.get_layer("embedding_flatten").input.shape[1:])
    except ValueError:
        return None
    return shape if len(shape) == 3 and shape[0] * shape[1] > 1 else None


def _assign(model, architecture, state_dict, source):
    prefix_of = _mbf_prefix if architecture == "mbf" else _iresnet_prefix
    plan = []
    unmapped = []
    bad_epsilon = []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = prefix_of(layer.name)
        expected = _expected_tensors(layer, prefix) if prefix is not None else None
        if expected is None:
            unmapped.append(layer.name)
            continue
        if isinstance(layer, keras.layers.BatchNormalization) and not np.isclose(
            layer.epsilon, ARCFACE_TORCH_BATCH_NORM_EPSILON, rtol=1e-6, atol=0.0
        ):
            bad_epsilon.append(f"{layer.name}: {layer.epsilon:g}")
        plan.append((layer, expected))
    if unmapped:
        raise WeightConversionError(
            f"{source}: the Keras model {model.name!r} is not a keras_face {architecture} "
            f"backbone; these layers have no arcface_torch counterpart: {_short_list(unmapped)}"
        )
    if bad_epsilon:
        raise WeightConversionError(
            f"{source}: arcface_torch's batch norms use epsilon 1e-5 (PyTorch's default, not "
            f"stored in the file); these Keras layers differ: {_short_list(bad_epsilon)}"
        )
    expected_shapes = {name: shape for _, expected in plan for name, shape in expected}
    present = {key for key in state_dict if not key.endswith(_IGNORED_SUFFIX)}
    missing = sorted(set(expected_shapes) - present)
    unexpected = sorted(present - set(expected_shapes))
    misshaped = sorted(
        f"{name}: {tuple(state_dict[name].shape)} in the file, {shape} expected"
        for name, shape in expected_shapes.items()
        if name in state_dict and tuple(state_dict[name].shape) != tuple(shape)
    )
    if missing or unexpected or misshaped:
        problems = []
        if missing:
            problems.append(f"missing {_short_list(missing)}")
        if unexpected:
            problems.append(f"unexpected {_short_list(unexpected)}")
        if misshaped:
            problems.append(f"mis-shaped {_short_list(misshaped)}")
        raise WeightConversionError(
            f"{source}: the weights do not fit {model.name!r} ({architecture}, "
            f"{len(expected_shapes)} tensors expected, {len(present)} in the file): "
            + "; ".join(problems)
        )
    flatten_shape = _flatten_shape(model, architecture)
    for layer, expected in plan:
        arrays = [np.asarray(state_dict[name], dtype=np.float32) for name, _ in expected]
        layer_flatten = flatten_shape if isinstance(layer, keras.layers.Dense) else None
        layer.set_weights(_to_keras(layer, arrays, layer_flatten))
    return model
