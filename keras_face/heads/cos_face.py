"""CosFace / AM-Softmax: additive cosine margin."""

import keras

from keras_face.heads.base import MarginHead
from keras_face.heads.base import validate_positive


@keras.saving.register_keras_serializable(package="keras_face")
class CosFace(MarginHead):
    """Additive cosine margin head (CosFace, also known as AM-Softmax).

    Computes `s * (cos(theta_y) - m)` for the target class and `s * cos(theta_j)` for
    the others, where `theta` is the angle between the L2-normalised embedding and class
    centre. The cosines are clipped to `[-1, 1]`; the target is linear in the cosine, so
    no fallback is needed and every gradient is finite.

    CosFace (s = 64, m = 0.35) and AM-Softmax (s = 30, m = 0.35) are the same formula;
    `keras_face.heads.am_softmax(num_classes)` builds the AM-Softmax setting.

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0` (CosFace paper; AM-Softmax
            uses `30.0`).
        margin: float. Cosine margin `m`. Defaults to `0.35` (both papers; insightface's
            Glint360K/WebFace configs use `0.4`).
        kernel_initializer: initializer of the class centres, shape
            `(embedding_dim, num_classes)`. Defaults to `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.CosFace(num_classes=10_000)
        logits = head([embeddings, labels], training=True)
        ```

    References:
        - [Wang et al., CosFace: Large Margin Cosine Loss for Deep Face Recognition,
          CVPR 2018](https://arxiv.org/abs/1801.09414)
        - [Wang et al., Additive Margin Softmax for Face Verification, IEEE Signal
          Processing Letters 2018](https://arxiv.org/abs/1801.05599)
    """

    hyperparameters = ("scale", "margin")

    def __init__(
        self,
        num_classes,
        scale=64.0,
        margin=0.35,
        kernel_initializer=None,
        kernel_regularizer=None,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes, kernel_initializer, kernel_regularizer, sub_centers=sub_centers, **kwargs
        )
        self.scale = validate_positive("scale", scale)
        self.margin = validate_positive("margin", margin, allow_zero=True)

    def target_logits(self, target_cosine, norms):
        # CosFace paper Eq. 4: s (cos(theta_y) - m).
        return self.scale * (target_cosine - self.margin)


def am_softmax(num_classes, scale=30.0, margin=0.35, **kwargs):
    """AM-Softmax: a `CosFace` head with the AM-Softmax authors' scale `s = 30`.

    Args:
        num_classes: int. Number of identities.
        scale: float. The fixed scale `s`. Defaults to `30.0` (the authors' prototxt and
            README: "Feature normalized, s=30, m=0.35").
        margin: float. Cosine margin `m`. Defaults to `0.35`.
        **kwargs: other keyword arguments passed to `CosFace`.

    Returns:
        A `keras_face.heads.CosFace` layer.

    Example:
        ```python
        head = keras_face.heads.am_softmax(num_classes=10_000)
        ```

    References:
        - [Wang et al., Additive Margin Softmax for Face Verification, IEEE Signal
          Processing Letters 2018](https://arxiv.org/abs/1801.05599)
    """
    return CosFace(num_classes, scale=scale, margin=margin, **kwargs)
