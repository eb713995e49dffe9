"""Backbones: functional Keras models from face crops to embeddings.

IR-ResNet / IR-SE (`iresnet18` ... `iresnet200`), MobileFaceNet (`mobilefacenet`,
`mobilefacenet_mbf`) and VarGFaceNet (`vargfacenet`), built from `keras.layers` only so
that they run on the TensorFlow, JAX and PyTorch backends. `count_parameters` and
`count_flops` report sizes the way the papers and insightface do.
"""

from keras_face.models.counting import count_flops, count_parameters
from keras_face.models.embedding import EMBEDDING_OUTPUTS, apply_embedding_output
from keras_face.models.frozen_scale_batch_normalization import (
    FrozenScaleBatchNormalization,
)
from keras_face.models.iresnet import (
    build_iresnet,
    iresnet18,
    iresnet34,
    iresnet50,
    iresnet100,
    iresnet200,
)
from keras_face.models.mobile_face_net import mobilefacenet, mobilefacenet_mbf
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
        raise ValueError(
            f"Unknown backbone; expected one of {names()}. Received: name={name!r}"
        )
    return _BACKBONES[key](**kwargs)


def names():
    """The names accepted by `keras_face.models.get`."""
    return sorted(_BACKBONES)


__all__ = [
    "EMBEDDING_OUTPUTS",
    "FrozenScaleBatchNormalization",
    "apply_embedding_output",
    "build_iresnet",
    "count_flops",
    "count_parameters",
    "get",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "iresnet200",
    "mobilefacenet",
    "mobilefacenet_mbf",
    "names",
    "vargfacenet",
]
