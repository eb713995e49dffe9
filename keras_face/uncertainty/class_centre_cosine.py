"""Frozen class centres taken from a trained margin head, and the target cosine they give."""

import keras
import numpy as np
from keras import ops

from keras_face.uncertainty.vmf import unit_vectors


def class_centres_from_head(head):
    """The unit class centres of a trained `keras_face.heads` head, `(C, K, D)`.

    The head's kernel (class-major: class `j` owns centres `j*K ... j*K+K-1`,
    `K = head.columns_per_class`, 1 except for sub-centres) is read as rows through
    `head.centre_rows()`, whatever its `kernel_layout`, and normalised.

    Args:
        head: a built `keras_face.heads` head (e.g. the `ArcFace` the backbone was trained
            with).

    Returns:
        float32 NumPy array `(num_classes, sub_centers, embedding_dim)` of unit vectors.

    Example:
        ```python
        centres = keras_face.uncertainty.class_centres_from_head(training_model.head)
        ```
    """
    centre_rows = getattr(head, "centre_rows", None)
    num_classes = getattr(head, "num_classes", None)
    if centre_rows is None or num_classes is None or not getattr(head, "built", False):
        raise ValueError(
            "The class centres come from a built keras_face.heads head (with `kernel` and "
            f"`num_classes`). Received: head={head!r}"
        )
    rows = centre_rows()  # (C * K, D) in either kernel layout
    centres = rows.reshape(num_classes, head.columns_per_class, rows.shape[1])
    norms = np.linalg.norm(centres, axis=-1, keepdims=True)
    return (centres / np.maximum(norms, 1e-12)).astype(np.float32)


def target_cosine(embeddings, centres, labels):
    """Cosine between each embedding and the centre of its class, `(B,)`, float32.

    With several sub-centres per class, the closest one (largest cosine), as Sub-center
    ArcFace. Only the `B` centres of the batch's labels are gathered (O(B K D)).

    Args:
        embeddings: float tensor `(B, D)` (normalised here).
        centres: float tensor `(C, D)` or `(C, K, D)` of class centres (normalised here).
        labels: integer tensor `(B,)` of class ids.

    Returns:
        float32 tensor `(B,)` in [-1, 1].

    Example:
        ```python
        cosine = keras_face.uncertainty.target_cosine(embeddings, centres, labels)
        ```
    """
    centres = ops.cast(centres, "float32")
    if len(centres.shape) == 2:
        centres = ops.expand_dims(centres, 1)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    selected = unit_vectors(ops.take(centres, labels, axis=0))  # (B, K, D)
    mu = unit_vectors(embeddings)
    cosine = ops.max(ops.sum(selected * ops.expand_dims(mu, 1), axis=-1), axis=-1)
    return ops.clip(cosine, -1.0, 1.0)


@keras.saving.register_keras_serializable(package="keras_face")
class ClassCentreCosine(keras.layers.Layer):
    """Layer holding frozen class centres: `[embeddings, labels] -> target cosine (B,)`.

    The centres are a non-trainable float32 weight `(num_classes, sub_centers,
    embedding_dim)`, set from a trained margin head with `class_centres_from_head` (SCF
    keeps the classifier of the recognition model fixed and learns only the confidence).

    Args:
        num_classes: int. Number of classes `C`.
        embedding_dim: int. Embedding dimension `D`.
        sub_centers: int. Centres per class `K` (the closest is used). Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        centres = keras_face.uncertainty.class_centres_from_head(head)
        num_classes, sub_centers, embedding_dim = centres.shape
        layer = keras_face.uncertainty.ClassCentreCosine(
            num_classes, embedding_dim, sub_centers=sub_centers)
        layer.build()
        layer.centres.assign(centres)
        cosine = layer([embeddings, labels])
        ```
    """

    def __init__(self, num_classes, embedding_dim, sub_centers=1, **kwargs):
        super().__init__(**kwargs)
        for name, value in (
            ("num_classes", num_classes),
            ("embedding_dim", embedding_dim),
            ("sub_centers", sub_centers),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        self.num_classes = int(num_classes)
        self.embedding_dim = int(embedding_dim)
        self.sub_centers = int(sub_centers)

    @property
    def input_dtype(self):
        return "float32"

    def build(self, input_shape=None):
        self.centres = self.add_weight(
            name="centres",
            shape=(self.num_classes, self.sub_centers, self.embedding_dim),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            autocast=False,
        )

    def call(self, inputs):
        embeddings, labels = inputs
        return target_cosine(embeddings, self.centres, labels)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "embedding_dim": self.embedding_dim,
                "sub_centers": self.sub_centers,
            }
        )
        return config
