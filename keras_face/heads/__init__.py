"""Margin heads: layers taking `[embedding, label]` and returning float32 logits.

Every head is a `keras.layers.Layer` called as `head([embeddings, labels], training=...)`,
returning float32 logits of shape `(batch, num_classes)` for
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.
"""

from keras_face.heads.base import MarginHead

# Stateless heads.
from keras_face.heads.arc_face import ArcFace

# Stateful heads.

_HEADS = {
    "arcface": ArcFace,
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
        raise ValueError(
            f"Unknown head; expected one of {sorted(_HEADS)}. Received: name={name!r}"
        )
    return _HEADS[key](num_classes, **kwargs)


def names():
    """The names accepted by `keras_face.heads.get`."""
    return sorted(_HEADS)


__all__ = ["MarginHead", "ArcFace", "get", "names"]
