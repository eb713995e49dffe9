"""AdaFace: quality-adaptive margin driven by the embedding norm."""

import math

import keras
from keras import ops

from keras_face.heads import backend_ops
from keras_face.heads.base import MarginHead
from keras_face.heads.base import validate_positive


@keras.saving.register_keras_serializable(package="keras_face")
class AdaFace(MarginHead):
    r"""Quality-adaptive margin head (AdaFace).

    The embedding norm, a proxy of image quality, is standardised by moving averages of
    its batch mean and standard deviation and sets both an angular and an additive
    margin: a low norm gives ArcFace's `cos(theta + m)` (de-emphasising hard samples), an
    average norm CosFace's `cos(theta) - m`, a high norm `cos(theta - m) - 2m`
    (emphasising hard samples). With `c` clipped to `[-1 + eps, 1 - eps]` for every class
    and `a = clip(||x||, 0.001, 100)` (no gradient):

    $$\hat z = \mathrm{clip}\Bigl(h \, \frac{a - \mu}{\sigma + \epsilon}, -1, 1\Bigr),
    \qquad g_{angle} = -m \hat z, \qquad g_{add} = m + m \hat z,$$

    $$z_y = s \bigl(\cos(\mathrm{clip}(\theta_y + g_{angle}, \epsilon, \pi - \epsilon))
    - g_{add}\bigr), \qquad z_j = s\,c_j,$$

    $$\mu \leftarrow \alpha\,\mathrm{mean}(a) + (1 - \alpha)\,\mu, \qquad
    \sigma \leftarrow \alpha\,\mathrm{std}(a) + (1 - \alpha)\,\sigma,
    \qquad \mu_0 = 20,\ \sigma_0 = 100.$$

    `batch_mean` (`mu`) and `batch_std` (`sigma`) are non-trainable float32 weights
    (saved with the model and in checkpoints), updated only when training and *before*
    they are used in the same step. `std` is the unbiased (N - 1) standard deviation, as
    `torch.std`; a global batch of one sample divides by 1 instead of 0 (the reference
    turns NaN forever). Under a `tf.distribute` strategy the moments are those of the
    global batch (all replicas). With `training=False` (or no labels) the head returns
    `s * cos theta` (no eps clip).

    Defaults are the author's runs (`scripts/run_ir101_ms1mv2.sh`, mk-minchul/AdaFace#30):
    `m = 0.4, h = 0.333, t_alpha = 0.01`; the class in `head.py` defaults to
    `t_alpha = 1.0` and `config.py` to `m = 0.5, h = 0` (which reduces to CosFace). The
    weight on the new batch is the code's 0.01, not the paper's 0.99.

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0`.
        margin: float. The margin `m`. Defaults to `0.4`.
        h: float. Concentration `h` of the standardised norm. Defaults to `0.333`.
        t_alpha: float. Weight `alpha` of the new batch in the moving averages, in
            `(0, 1]`. Defaults to `0.01`.
        epsilon: float. The `eps` of the cosine and angle clips and of the
            standardisation. Defaults to `1e-3`.
        kernel_initializer: initializer of the class centres. Defaults to
            `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.AdaFace(num_classes=10_000)
        logits = head([embeddings, labels], training=True)
        float(head.batch_mean), float(head.batch_std)
        ```

    References:
        - [Kim et al., AdaFace: Quality Adaptive Margin for Face Recognition,
          CVPR 2022](https://arxiv.org/abs/2204.00964)
        - [mk-minchul/AdaFace](https://github.com/mk-minchul/AdaFace) (authors' code,
          `head.py`, `scripts/run_ir101_ms1mv2.sh`)
    """

    hyperparameters = ("scale", "margin", "h", "t_alpha", "epsilon")

    # Norm clip of the reference (`torch.clip(norms, min=0.001, max=100)`).
    NORM_CLIP = (1e-3, 100.0)
    # Initial moving averages (`batch_mean = 20`, `batch_std = 100` buffers).
    INITIAL_MEAN = 20.0
    INITIAL_STD = 100.0

    def __init__(
        self,
        num_classes,
        scale=64.0,
        margin=0.4,
        h=0.333,
        t_alpha=0.01,
        epsilon=1e-3,
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
        self.h = validate_positive("h", h, allow_zero=True)
        self.t_alpha = validate_positive("t_alpha", t_alpha)
        if self.t_alpha > 1.0:
            raise ValueError(f"t_alpha must be in (0, 1]. Received: t_alpha={t_alpha}")
        self.epsilon = validate_positive("epsilon", epsilon)
        if self.epsilon >= 0.5:
            raise ValueError(f"epsilon must be in (0, 0.5). Received: epsilon={epsilon}")

    def build_state(self):
        # Every replica computes the same global-batch values: keep the first replica's.
        self.batch_mean = self.add_weight(
            name="batch_mean",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(self.INITIAL_MEAN),
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )
        self.batch_std = self.add_weight(
            name="batch_std",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(self.INITIAL_STD),
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )

    def clipped_norm(self, norms):
        """`clip(||x||, 0.001, 100)`, detached (the reference's `safe_norms`)."""
        return ops.stop_gradient(ops.clip(norms, *self.NORM_CLIP))

    def clipped_cosine(self, cosine):
        return backend_ops.clip_values(cosine, -1.0 + self.epsilon, 1.0 - self.epsilon)

    def update_state(self, scaled_cosine, target_cosine, norms):
        mean, std, count = self.global_batch_moments(self.clipped_norm(norms))
        alpha = self.t_alpha
        self.assign_if_batch(
            self.batch_mean, alpha * mean + (1.0 - alpha) * self.batch_mean.value, count
        )
        self.assign_if_batch(
            self.batch_std, alpha * std + (1.0 - alpha) * self.batch_std.value, count
        )

    def scaled_bounds(self):
        """`s (-1 + eps), s (1 - eps)`: the non-target clip of the scaled cosines.

        s cos(clip(arccos c, eps, pi - eps)) equals s c for c within 1 - eps of +-1, and
        s clip(c, -1 + eps, 1 - eps) is one clip of s c (s > 0; exact for s = 64).
        """
        return self.scale * (-1.0 + self.epsilon), self.scale * (1.0 - self.epsilon)

    def scaled_nontarget_logits(self, scaled_cosine, target_cosine, norms):
        return backend_ops.clip_values(scaled_cosine, *self.scaled_bounds())

    def margin_logits(self, scaled_cosine, labels, target_cosine, norms):
        if not backend_ops.fuses_target_write():
            return super().margin_logits(scaled_cosine, labels, target_cosine, norms)
        # TensorFlow: the clip and the target write as one pass each way.
        target = ops.cast(self.target_logits(target_cosine, norms), "float32")
        return backend_ops.clip_with_target(
            scaled_cosine, self.target_indices(labels), target, *self.scaled_bounds()
        )

    def target_logits(self, target_cosine, norms):
        mean = ops.stop_gradient(self.batch_mean.value)
        std = ops.stop_gradient(self.batch_std.value)
        standardized = ops.clip(
            self.h * (self.clipped_norm(norms) - mean) / (std + self.epsilon), -1.0, 1.0
        )
        angular_margin = -self.margin * standardized
        additive_margin = self.margin + self.margin * standardized
        theta = ops.arccos(self.clipped_cosine(target_cosine))
        theta = ops.clip(theta + angular_margin, self.epsilon, math.pi - self.epsilon)
        return self.scale * (ops.cos(theta) - additive_margin)
