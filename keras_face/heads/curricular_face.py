"""CurricularFace: ArcFace target with adaptively re-weighted hard negatives."""

import math

import keras
from keras import ops

from keras_face.heads import backend_ops
from keras_face.heads.base import MarginHead
from keras_face.heads.base import additive_angular_margin
from keras_face.heads.base import safe_sine
from keras_face.heads.base import validate_angular_margin
from keras_face.heads.base import validate_positive


@keras.saving.register_keras_serializable(package="keras_face")
class CurricularFace(MarginHead):
    r"""Adaptive curriculum learning head (CurricularFace).

    The target logit is ArcFace's `s * cos(theta_y + m)` (with the `"cosface"` fallback
    `c_y - m sin m` where `c_y <= cos(pi - m)`). A non-target class is *hard* when its
    cosine exceeds the raw `cos(theta_y + m)`; hard negatives are re-weighted by
    `t + cos theta_j`, where `t` follows the mean target cosine of the training batches:

    $$z_y = s\,\tilde\phi(c_y), \qquad
    z_j = \begin{cases} s\,c_j\,(t + c_j) & c_j > \cos(\theta_y + m) \\
    s\,c_j & \text{otherwise,} \end{cases}$$

    $$t \leftarrow \alpha \cdot \frac{1}{B}\sum_i c_{i, y_i} + (1 - \alpha)\, t,
    \qquad t_0 = 0,\ \alpha = 0.01.$$

    `t` is a non-trainable float32 weight (saved with the model and in checkpoints),
    updated only when training and *before* it is used in the same step, from the
    clipped target cosines without margin and without gradient. Under a `tf.distribute`
    strategy the mean is taken over the global batch (all replicas). With
    `training=False` (or no labels) the head returns `s * cos theta`.

    The weight on the new batch is the code's 0.01, not the paper's 0.99 (the author
    confirmed the code in HuangYG123/CurricularFace#8), and the batch statistic is the
    mean (the paper writes a sum).

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0`.
        margin: float. Additive angular margin `m` in radians, in `[0, pi)`. Defaults to `0.5`.
        t_alpha: float. Weight `alpha` of the new batch in the moving average of `t`, in
            `(0, 1]`. Defaults to `0.01`.
        kernel_initializer: initializer of the class centres. Defaults to
            `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.CurricularFace(num_classes=10_000)
        logits = head([embeddings, labels], training=True)
        float(head.t)  # the moving average of the target cosine
        ```

    References:
        - [Huang et al., CurricularFace: Adaptive Curriculum Learning Loss for Deep Face
          Recognition, CVPR 2020](https://arxiv.org/abs/2004.00288)
        - [HuangYG123/CurricularFace](https://github.com/HuangYG123/CurricularFace)
          (authors' code, `head/metrics.py`)
    """

    hyperparameters = ("scale", "margin", "t_alpha")

    def __init__(
        self,
        num_classes,
        scale=64.0,
        margin=0.5,
        t_alpha=0.01,
        kernel_initializer=None,
        kernel_regularizer=None,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes, kernel_initializer, kernel_regularizer, sub_centers=sub_centers, **kwargs
        )
        self.scale = validate_positive("scale", scale)
        self.margin = validate_angular_margin("margin", margin)
        self.t_alpha = validate_positive("t_alpha", t_alpha)
        if self.t_alpha > 1.0:
            raise ValueError(f"t_alpha must be in (0, 1]. Received: t_alpha={t_alpha}")

    def build_state(self):
        self.t = self.add_weight(
            name="t",
            shape=(),
            dtype="float32",
            initializer="zeros",
            trainable=False,
            autocast=False,
            # Every replica computes the same global-batch value.
            aggregation="only_first_replica",
        )

    def update_state(self, scaled_cosine, target_cosine, norms):
        mean_target, count = self.global_batch_mean(ops.stop_gradient(target_cosine))
        new_t = self.t_alpha * mean_target + (1.0 - self.t_alpha) * self.t.value
        self.assign_if_batch(self.t, new_t, count)

    def hardness_threshold(self, target_cosine):
        """`s cos(theta_y + m)`, `(B, 1)`: the raw target without fallback (the authors')."""
        raw_target = target_cosine * math.cos(self.margin) - safe_sine(target_cosine) * math.sin(
            self.margin
        )
        return ops.stop_gradient(ops.expand_dims(self.scale * raw_target, 1))

    def scaled_nontarget_logits(self, scaled_cosine, target_cosine, norms):
        # Hard negatives compared on the scale of the logits: s c > s cos(theta_y + m).
        threshold = self.hardness_threshold(target_cosine)
        t = ops.stop_gradient(self.t.value)
        return backend_ops.reweight_hard_negatives(scaled_cosine, threshold, t, self.scale)

    def margin_logits(self, scaled_cosine, labels, target_cosine, norms):
        if not backend_ops.fuses_target_write():
            return super().margin_logits(scaled_cosine, labels, target_cosine, norms)
        # TensorFlow: the reweighting and the target write as one pass each way.
        target = ops.cast(self.target_logits(target_cosine, norms), "float32")
        return backend_ops.reweight_with_target(
            scaled_cosine,
            self.target_indices(labels),
            target,
            self.hardness_threshold(target_cosine),
            ops.stop_gradient(self.t.value),
            self.scale,
        )

    def target_logits(self, target_cosine, norms):
        return self.scale * additive_angular_margin(target_cosine, self.margin, "cosface")
