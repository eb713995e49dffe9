"""Margin heads: layers taking `[embedding, label]` and returning float32 logits.

Every head is a `keras.layers.Layer` called as `head([embeddings, labels], training=...)`,
returning float32 logits of shape `(batch, num_classes)` for
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.

A head has two halves. The classifier (`CosineClassifier`) owns the class-centre kernel,
its column norms and which columns make a class (`sub_centers=K`, for every head); it
maps embeddings to class cosines. The margin (`MarginHead` and the heads built on it)
states how the target logit is formed from the target cosine, and the head's state.
"""

# Stateful heads.
from keras_face.heads.ada_face import AdaFace

# Stateless heads.
from keras_face.heads.arc_face import ArcFace
from keras_face.heads.base import MarginHead
from keras_face.heads.class_sharded_classifier import ClassShardedClassifier
from keras_face.heads.combined_margin import CombinedMargin
from keras_face.heads.cos_face import CosFace
from keras_face.heads.cos_face import am_softmax
from keras_face.heads.cosine_classifier import CosineClassifier
from keras_face.heads.curricular_face import CurricularFace
from keras_face.heads.elastic_face import ElasticArcFace
from keras_face.heads.elastic_face import ElasticCosFace
from keras_face.heads.label_range_check import LabelRangeCheck
from keras_face.heads.mag_face import MagFace
from keras_face.heads.norm_face import NormFace
from keras_face.heads.partial_fc import PartialFC
from keras_face.heads.sphere_face import SphereFace
from keras_face.heads.sub_center_arc_face import SubCenterArcFace
from keras_face.heads.sub_center_arc_face import SubCenterOutliers

_HEADS = {
    "normface": NormFace,
    "cosface": CosFace,
    "amsoftmax": am_softmax,
    "arcface": ArcFace,
    "combinedmargin": CombinedMargin,
    "subcenterarcface": SubCenterArcFace,
    "elasticarcface": ElasticArcFace,
    "elasticcosface": ElasticCosFace,
    # Stateful heads.
    "sphereface": SphereFace,
    "curricularface": CurricularFace,
    "magface": MagFace,
    "adaface": AdaFace,
}


def get(name, num_classes, **kwargs):
    """Build a head from its name (`"arcface"`, `"cosface"`, ...; case, `-` and `_` ignored).

    Args:
        name: str. Head name, e.g. `"arcface"`, `"curricular_face"`, `"AdaFace"`.
        num_classes: int. Number of identities.
        **kwargs: the head's hyper-parameters.

    Returns:
        A `keras_face.heads.MarginHead` instance.

    Example:
        ```python
        head = keras_face.heads.get("arcface", num_classes=1000, margin=0.4)
        ```
    """
    key = str(name).lower().replace("_", "").replace("-", "")
    if key not in _HEADS:
        raise ValueError(f"Unknown head; expected one of {sorted(_HEADS)}. Received: name={name!r}")
    return _HEADS[key](num_classes, **kwargs)


def names():
    """The names accepted by `keras_face.heads.get`."""
    return sorted(_HEADS)


__all__ = [
    "CosineClassifier",
    "MarginHead",
    "NormFace",
    "CosFace",
    "am_softmax",
    "ArcFace",
    "CombinedMargin",
    "SubCenterArcFace",
    "SubCenterOutliers",
    "ElasticArcFace",
    "ElasticCosFace",
    # Stateful heads.
    "SphereFace",
    "CurricularFace",
    "MagFace",
    "AdaFace",
    "LabelRangeCheck",
    # Class-centre sampling around any head.
    "PartialFC",
    # Classes split over devices (keras.distribution, JAX).
    "ClassShardedClassifier",
    "get",
    "names",
]
