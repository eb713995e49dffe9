"""SphereFace (A-Softmax): multiplicative angular margin with an annealed blend."""

import math

import keras
from keras import ops

from keras_face.heads.base import MarginHead
from keras_face.heads.base import validate_positive


def chebyshev_polynomial(cosine, degree):
    """`cos(degree * theta)` as the Chebyshev polynomial `T_degree(cos theta)`.

    Built by the recurrence `T_{n+1} = 2 c T_n - T_{n-1}` (`T_0 = 1`, `T_1 = c`), which
    gives face.evoLVe's table (`T_4 = 8c^4 - 8c^2 + 1`) for every integer degree.
    """
    previous, current = ops.ones_like(cosine), cosine
    if degree == 0:
        return previous
    for _ in range(degree - 1):
        previous, current = current, 2.0 * cosine * current - previous
    return current


def _counter_dtype():
    # JAX truncates int64 to int32 unless `jax_enable_x64` is set; int32 counts to
    # 2**31 - 1 steps, far beyond any training run.
    if keras.backend.backend() == "jax":
        import jax  # JAX-only branch.

        if not jax.config.jax_enable_x64:
            return "int32"
    return "int64"


@keras.saving.register_keras_serializable(package="keras_face")
class SphereFace(MarginHead):
    r"""Multiplicative angular margin head (SphereFace, A-Softmax).

    The class centres are L2-normalised, the embeddings are not: every logit is the raw,
    differentiable norm `||x||` times a cosine. The target cosine is replaced by
    `psi(theta) = (-1)^k cos(m theta) - 2k`, `k = floor(m theta / pi)` (monotone from 1 at
    `theta = 0` to `-(2m - 1)` at `theta = pi`), blended with the plain cosine by a weight
    `lambda` that is annealed during training, as in the authors' Caffe layer:

    $$z_j = \|x\| \cos\theta_j, \qquad
    z_y = \|x\| \, \frac{\lambda \cos\theta_y + \psi(\theta_y)}{1 + \lambda},$$

    $$\lambda = \max\bigl(\lambda_{min},\;
    \lambda_{base} (1 + \gamma \cdot \mathrm{iteration})^{-\mathrm{power}}\bigr).$$

    `cos(m theta)` is computed as the Chebyshev polynomial `T_m(cos theta)`; `theta` and `k`
    carry no gradient (the gradient flows through `T_m` only, finite at `|cos| = 1`).
    The iteration counter is a non-trainable integer weight (saved with the model and in
    checkpoints, settable through `head.iteration` to resume), incremented before use and
    only when training. With the authors' constants, `lambda` is 892.857 at the first
    step and reaches `lambda_min = 5` at step 1659. The PyTorch port sphereface_pytorch uses
    `lambda_base=1500, lambda_gamma=0.1` instead (`lambda = 1363.6` at step 1, 5 from step
    2990). With `training=False` (or no labels) the head returns `||x|| cos theta`.

    Args:
        num_classes: int. Number of identities.
        margin: int. The multiplicative angular margin `m` (an integer, >= 1).
            Defaults to `4`.
        lambda_base: float. `lambda_base` of the annealing schedule. Defaults to `1000.0`.
        lambda_gamma: float. `gamma` of the annealing schedule. Defaults to `0.12`.
        lambda_power: float. `power` of the annealing schedule. Defaults to `1.0`.
        lambda_min: float. Floor of `lambda`. Defaults to `5.0`.
        normalize_features: bool. `False` (A-Softmax): logits scaled by the raw norm
            `||x||`. `True`: scaled by the fixed `scale` instead. Defaults to `False`.
        scale: float. The fixed scale `s` used when `normalize_features=True` (ignored
            otherwise). Defaults to `64.0`.
        kernel_initializer: initializer of the class centres. Defaults to
            `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.SphereFace(num_classes=10_000)
        logits = head([embeddings, labels], training=True)
        head.iteration  # 1: training steps seen so far
        head.iteration = 20_000  # resume the lambda schedule
        ```

    References:
        - [Liu et al., SphereFace: Deep Hypersphere Embedding for Face Recognition,
          CVPR 2017](https://arxiv.org/abs/1704.08063)
        - [Liu et al., Large-Margin Softmax Loss for Convolutional Neural Networks,
          ICML 2016](https://arxiv.org/abs/1612.02295) (the `lambda` blend)
        - [wy1iu/sphereface](https://github.com/wy1iu/sphereface) (authors' Caffe code,
          `sphereface_model.prototxt`: base 1000, gamma 0.12, power 1, lambda_min 5)
    """

    hyperparameters = (
        "margin",
        "lambda_base",
        "lambda_gamma",
        "lambda_power",
        "lambda_min",
        "normalize_features",
        "scale",
    )

    def __init__(
        self,
        num_classes,
        margin=4,
        lambda_base=1000.0,
        lambda_gamma=0.12,
        lambda_power=1.0,
        lambda_min=5.0,
        normalize_features=False,
        scale=64.0,
        kernel_initializer=None,
        kernel_regularizer=None,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes, kernel_initializer, kernel_regularizer, sub_centers=sub_centers, **kwargs
        )
        is_integral = isinstance(margin, int) or (isinstance(margin, float) and margin.is_integer())
        if isinstance(margin, bool) or not is_integral or margin < 1:
            raise ValueError(
                "margin must be a positive integer (SphereFace's m multiplies the angle; "
                f"cos(m theta) is a Chebyshev polynomial). Received: margin={margin!r}"
            )
        self.margin = int(margin)
        self.lambda_base = validate_positive("lambda_base", lambda_base, allow_zero=True)
        self.lambda_gamma = validate_positive("lambda_gamma", lambda_gamma, allow_zero=True)
        self.lambda_power = validate_positive("lambda_power", lambda_power, allow_zero=True)
        self.lambda_min = validate_positive("lambda_min", lambda_min, allow_zero=True)
        if not isinstance(normalize_features, bool):
            raise ValueError(
                "normalize_features must be a bool. "
                f"Received: normalize_features={normalize_features!r}"
            )
        self.normalize_features = normalize_features
        self.scale = validate_positive("scale", scale)

    def build_state(self):
        self._iteration = self.add_weight(
            name="iteration",
            shape=(),
            dtype=_counter_dtype(),
            initializer="zeros",
            trainable=False,
            # Every replica increments by one: keep the first replica's value.
            aggregation="only_first_replica",
        )

    @property
    def iteration(self):
        """Training steps seen so far (the `iteration` of the `lambda` schedule)."""
        if not self.built:
            return 0
        return int(ops.convert_to_numpy(self._iteration.value))

    @iteration.setter
    def iteration(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"iteration must be a non-negative integer. Received: iteration={value!r}"
            )
        if not self.built:
            raise ValueError(
                "Build the head (call it once or build the model) before setting its "
                f"iteration counter. Received: iteration={value}"
            )
        self._iteration.assign(value)

    def current_lambda(self):
        """`lambda` for the current value of the iteration counter (float32 scalar)."""
        iteration = ops.cast(self._iteration.value, "float32")
        annealed = self.lambda_base * ops.power(
            1.0 + self.lambda_gamma * iteration, -self.lambda_power
        )
        return ops.maximum(annealed, self.lambda_min)

    def logit_scale(self, norms):
        if self.normalize_features:
            return self.scale
        return ops.expand_dims(norms, 1)

    def update_state(self, scaled_cosine, target_cosine, norms):
        # The Caffe layer does `iter_ += 1` before computing lambda.
        self._iteration.assign(self._iteration.value + 1)

    def psi(self, target_cosine):
        """`(-1)^k T_m(c) - 2k` with `k = floor(m arccos(c) / pi)` detached."""
        theta = ops.arccos(ops.stop_gradient(target_cosine))
        k = ops.clip(ops.floor(self.margin * theta / math.pi), 0.0, float(self.margin))
        sign = 1.0 - 2.0 * ops.mod(k, 2.0)
        return sign * chebyshev_polynomial(target_cosine, self.margin) - 2.0 * k

    def target_logits(self, target_cosine, norms):
        weight = self.current_lambda()
        blended = (weight * target_cosine + self.psi(target_cosine)) / (1.0 + weight)
        if self.normalize_features:
            return self.scale * blended
        return norms * blended
