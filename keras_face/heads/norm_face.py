"""NormFace: scaled cosine softmax, no margin."""

import keras
from keras import ops

from keras_face.heads.base import MarginHead
from keras_face.heads.base import validate_positive


class _MinValue(keras.constraints.Constraint):
    """Projects a weight back to `>= min_value` after each optimizer step."""

    def __init__(self, min_value):
        self.min_value = float(min_value)

    def __call__(self, w):
        return ops.maximum(w, self.min_value)

    def get_config(self):
        return {"min_value": self.min_value}


@keras.saving.register_keras_serializable(package="keras_face")
class NormFace(MarginHead):
    """Scaled cosine head (NormFace), optionally with a learned scale.

    Every logit is the scaled cosine between the L2-normalised embedding and the
    L2-normalised class centre, with no margin:

    `z_j = s * cos(theta_j)` for every class `j`.

    With `trainable_scale=True` (the authors' setting) `s` is a trainable scalar weight
    initialised to `scale` and kept `>= min_scale`, both after every optimizer step
    (as the `min_value` of the authors' Caffe scale layer) and in the forward pass.
    With `trainable_scale=False`, `s = scale` is a constant; the NormFace paper's lower
    bound on the loss, `log(1 + (C - 1) exp(-C s / (C - 1)))`, guides its choice
    (pytorch-metric-learning's `NormalizedSoftmaxLoss` uses `s = 20`).

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`, or its initial value when trainable. Defaults to
            `10.0` (the authors' `scaled_cosine_softmax.prototxt`).
        trainable_scale: bool. Learn `s`. Defaults to `True`.
        min_scale: float. Lower bound of the learned `s`. Defaults to `0.01`.
        kernel_initializer: initializer of the class centres, shape
            `(embedding_dim, num_classes)`. Defaults to `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.NormFace(num_classes=10_000)
        logits = head([embeddings, labels], training=True)
        learned_scale = head.scale_variable  # after the head is built
        ```

    References:
        - [Wang et al., NormFace: L2 Hypersphere Embedding for Face Verification,
          ACM MM 2017](https://arxiv.org/abs/1704.06369)
    """

    hyperparameters = ("scale", "trainable_scale", "min_scale")
    # The target logit is the plain s * cos: no target column to read or write.
    has_margin = False

    def __init__(
        self,
        num_classes,
        scale=10.0,
        trainable_scale=True,
        min_scale=0.01,
        kernel_initializer=None,
        kernel_regularizer=None,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes, kernel_initializer, kernel_regularizer, sub_centers=sub_centers, **kwargs
        )
        self.scale = validate_positive("scale", scale)
        self.trainable_scale = bool(trainable_scale)
        self.min_scale = validate_positive("min_scale", min_scale)
        if self.trainable_scale and self.scale < self.min_scale:
            raise ValueError(
                f"The initial scale must be at least min_scale={self.min_scale}. "
                f"Received: scale={self.scale}"
            )
        self.scale_variable = None

    def build_state(self):
        if self.trainable_scale:
            self.scale_variable = self.add_weight(
                name="scale",
                shape=(),
                initializer=keras.initializers.Constant(self.scale),
                constraint=_MinValue(self.min_scale),
                trainable=True,
                dtype="float32",
                autocast=False,
            )

    def logit_scale(self, norms):
        if self.scale_variable is None:
            return self.scale
        # The forward bound also covers a scale set below min_scale by `assign`.
        return ops.maximum(ops.convert_to_tensor(self.scale_variable), self.min_scale)
