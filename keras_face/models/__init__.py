"""Backbones: functional Keras models from face crops to embeddings.

IR-ResNet / IR-SE (`iresnet18` ... `iresnet200`), MobileFaceNet (`mobilefacenet`,
`mobilefacenet_mbf`) and VarGFaceNet (`vargfacenet`), built from `keras.layers` only so
that they run on the TensorFlow, JAX and PyTorch backends. `count_parameters` and
`count_flops` report sizes the way the papers and insightface do. Grouped convolutions
use `Conv2D`, Keras' layer with the same weights computed by fast, exportable operations.
`from_arcface_torch` loads insightface arcface_torch `.pth` backbones (r18 ... r200, mbf).
"""

from keras_face.models.arcface_torch_weights import WeightConversionError
from keras_face.models.arcface_torch_weights import arcface_torch_architecture
from keras_face.models.arcface_torch_weights import from_arcface_torch
from keras_face.models.arcface_torch_weights import load_arcface_torch_weights
from keras_face.models.arcface_torch_weights import read_arcface_torch_state_dict
from keras_face.models.conv2d import Conv2D
from keras_face.models.counting import count_flops
from keras_face.models.counting import count_parameters
from keras_face.models.depthwise_conv2d import DepthwiseConv2D
from keras_face.models.embedding import EMBEDDING_OUTPUTS
from keras_face.models.embedding import apply_embedding_output
from keras_face.models.embedding import check_embedding_backbone
from keras_face.models.embedding import embedding_head_model
from keras_face.models.embedding import feature_map_model
from keras_face.models.embedding import find_feature_map
from keras_face.models.frozen_scale_batch_normalization import FrozenScaleBatchNormalization
from keras_face.models.iresnet import build_iresnet
from keras_face.models.iresnet import iresnet18
from keras_face.models.iresnet import iresnet34
from keras_face.models.iresnet import iresnet50
from keras_face.models.iresnet import iresnet100
from keras_face.models.iresnet import iresnet200
from keras_face.models.mobile_face_net import build_mobilefacenet
from keras_face.models.mobile_face_net import mobilefacenet
from keras_face.models.mobile_face_net import mobilefacenet_mbf
from keras_face.models.varg_face_net import vargfacenet

_BACKBONES = {
    "iresnet18": iresnet18,
    "iresnet34": iresnet34,
    "iresnet50": iresnet50,
    "iresnet100": iresnet100,
    "iresnet200": iresnet200,
    "mobilefacenet": mobilefacenet,
    "mobilefacenet_mbf": mobilefacenet_mbf,
    "vargfacenet": vargfacenet,
}


def get(name, **kwargs):
    """Build a backbone from its name (case-insensitive, `-` read as `_`).

    Args:
        name: str. One of `keras_face.models.names()`: `"iresnet18"`, `"iresnet34"`,
            `"iresnet50"`, `"iresnet100"`, `"iresnet200"`, `"mobilefacenet"`,
            `"mobilefacenet_mbf"`, `"vargfacenet"`.
        **kwargs: the factory's arguments (`input_shape`, `embedding_size`, ...).

    Returns:
        A functional `keras.Model` from images to float32 embeddings.

    Example:
        ```python
        backbone = keras_face.models.get("iresnet50", embedding_size=512, se=True)
        ```
    """
    key = str(name).lower().replace("-", "_")
    if key not in _BACKBONES:
        raise ValueError(f"Unknown backbone; expected one of {names()}. Received: name={name!r}")
    return _BACKBONES[key](**kwargs)


def names():
    """The names accepted by `keras_face.models.get`."""
    return sorted(_BACKBONES)


__all__ = [
    "EMBEDDING_OUTPUTS",
    "FrozenScaleBatchNormalization",
    "Conv2D",
    "DepthwiseConv2D",
    "WeightConversionError",
    "apply_embedding_output",
    "arcface_torch_architecture",
    "check_embedding_backbone",
    "embedding_head_model",
    "feature_map_model",
    "find_feature_map",
    "build_iresnet",
    "build_mobilefacenet",
    "count_flops",
    "count_parameters",
    "from_arcface_torch",
    "get",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "iresnet200",
    "load_arcface_torch_weights",
    "mobilefacenet",
    "mobilefacenet_mbf",
    "names",
    "read_arcface_torch_state_dict",
    "vargfacenet",
]
