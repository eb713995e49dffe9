"""MagFace: magnitude-aware angular margin with a norm regulariser."""

import keras
from keras import ops

from keras_face.heads.base import MarginHead
from keras_face.heads.base import additive_angular_margin
from keras_face.heads.base import validate_angular_margin
from keras_face.heads.base import validate_choice
from keras_face.heads.base import validate_positive

MAG_VARIANTS = ("arcface", "cosface")


def magface_min_lambda_g(scale, lower_norm, upper_norm, lower_margin, upper_margin):
    """Smallest `lambda_g` for which MagFace's loss has a unique optimal norm.

    The authors' trainers check `lambda_g >= s k u_a^2 l_a^2 / (u_a^2 - l_a^2)` with
    `k = (u_m - l_m) / (u_a - l_a)` (MagFace `run/trainer.py`); 22.587 for the defaults.
    """
    slope = (upper_margin - lower_margin) / (upper_norm - lower_norm)
    return scale * slope * upper_norm**2 * lower_norm**2 / (upper_norm**2 - lower_norm**2)


@keras.saving.register_keras_serializable(package="keras_face")
class MagFace(MarginHead):
    r"""Magnitude-aware margin head (MagFace).

    The embedding norm `a = ||x||`, clipped to `[l_a, u_a]`, sets a per-sample margin that
    grows linearly from `l_m` to `u_m`; a regulariser `g(a)` added to the model losses
    pulls the norm of easy samples up, so that the norm measures face quality:

    $$\bar a = \mathrm{clip}(\|x\|, l_a, u_a), \qquad
    m(\bar a) = \frac{u_m - l_m}{u_a - l_a} (\bar a - l_a) + l_m,$$

    $$z_y = s \cdot \begin{cases} \cos(\theta_y + m(\bar a)) & c_y > 0 \\
    c_y & \text{otherwise,} \end{cases} \qquad z_j = s\,c_j, \qquad
    \mathcal{L} \mathrel{+}= \lambda_g \cdot \frac{1}{B} \sum_i
    \Bigl(\frac{\bar a_i}{u_a^2} + \frac{1}{\bar a_i}\Bigr).$$

    The `c_y > 0` switch is the "easy margin" the authors trained with (`MagLinear(...,
    easy_margin=True)`); `easy_margin=False` uses ArcFace's `"cosface"` fallback
    `c_y - m sin m` where `c_y <= cos(pi - m)`. `variant="cosface"` gives Mag-CosFace,
    `z_y = s (c_y - m(a))` (the authors' `--arc 0`, with `l_m = 0.35, lambda_g = 150`).
    The clipped norm is *not* detached: inside `(l_a, u_a)` it gets gradient from the
    cross-entropy (through the margin) and from `g`; outside, the clip zeroes both.

    The regulariser is added with `add_loss` on every training call with labels (the
    per-replica mean, which Keras scales for `tf.distribute`). The authors require
    `lambda_g >= s k u_a^2 l_a^2 / (u_a^2 - l_a^2)`, `k = (u_m - l_m) / (u_a - l_a)`,
    for `g` to have a unique optimal norm (22.587 for the defaults); smaller values are
    rejected at construction. With `training=False` (or no labels) the head returns
    `s * cos theta` and adds no loss.

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0`.
        lower_norm: float. `l_a`, lower bound of the norm. Defaults to `10.0`.
        upper_norm: float. `u_a`, upper bound of the norm. Defaults to `110.0`.
        lower_margin: float. `l_m`, margin (radians) at `l_a`. Defaults to `0.45`.
        upper_margin: float. `u_m`, margin (radians) at `u_a`; below pi with
            `variant="arcface"`. Defaults to `0.8`.
        lambda_g: float. Weight of the norm regulariser. Defaults to `35.0`.
        easy_margin: bool. `True`: no margin where `c_y <= 0` (the authors' setting);
            `False`: ArcFace's `"cosface"` fallback. Arc variant only. Defaults to `True`.
        variant: str. `"arcface"` (Mag-ArcFace, `cos(theta_y + m(a))`) or `"cosface"`
            (Mag-CosFace, `c_y - m(a)`). Defaults to `"arcface"`.
        kernel_initializer: initializer of the class centres. Defaults to
            `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.MagFace(num_classes=10_000)
        logits = head([embeddings, labels], training=True)
        head.losses  # [lambda_g * mean(g(a))]
        ```

    References:
        - [Meng et al., MagFace: A Universal Representation for Face Recognition and
          Quality Assessment, CVPR 2021](https://arxiv.org/abs/2103.06627)
        - [IrvingMeng/MagFace](https://github.com/IrvingMeng/MagFace) (authors' code,
          `models/magface.py`, `run/run.sh`, `run/trainer.py`)
    """

    hyperparameters = (
        "scale",
        "lower_norm",
        "upper_norm",
        "lower_margin",
        "upper_margin",
        "lambda_g",
        "easy_margin",
        "variant",
    )

    def __init__(
        self,
        num_classes,
        scale=64.0,
        lower_norm=10.0,
        upper_norm=110.0,
        lower_margin=0.45,
        upper_margin=0.8,
        lambda_g=35.0,
        easy_margin=True,
        variant="arcface",
        kernel_initializer=None,
        kernel_regularizer=None,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes, kernel_initializer, kernel_regularizer, sub_centers=sub_centers, **kwargs
        )
        self.scale = validate_positive("scale", scale)
        self.lower_norm = validate_positive("lower_norm", lower_norm)
        self.upper_norm = validate_positive("upper_norm", upper_norm)
        if self.upper_norm <= self.lower_norm:
            raise ValueError(
                "upper_norm must be greater than lower_norm. "
                f"Received: lower_norm={lower_norm}, upper_norm={upper_norm}"
            )
        self.lower_margin = validate_positive("lower_margin", lower_margin, allow_zero=True)
        self.upper_margin = validate_positive("upper_margin", upper_margin, allow_zero=True)
        if self.upper_margin < self.lower_margin:
            raise ValueError(
                "upper_margin must not be smaller than lower_margin. "
                f"Received: lower_margin={lower_margin}, upper_margin={upper_margin}"
            )
        self.lambda_g = validate_positive("lambda_g", lambda_g, allow_zero=True)
        if not isinstance(easy_margin, bool):
            raise ValueError(f"easy_margin must be a bool. Received: easy_margin={easy_margin!r}")
        self.easy_margin = easy_margin
        self.variant = validate_choice("variant", variant, MAG_VARIANTS)
        if self.variant == "arcface":
            # An angle: lower_margin <= upper_margin < pi.
            validate_angular_margin("upper_margin", self.upper_margin)
        min_lambda_g = magface_min_lambda_g(
            self.scale, self.lower_norm, self.upper_norm, self.lower_margin, self.upper_margin
        )
        if self.lambda_g < min_lambda_g:
            raise ValueError(
                f"lambda_g={self.lambda_g:g} is below MagFace's feasibility bound "
                f"s*k*u_a^2*l_a^2/(u_a^2 - l_a^2) = {min_lambda_g:.4f} (k = (u_m - l_m)/"
                f"(u_a - l_a)) for scale={self.scale:g}, lower_norm={self.lower_norm:g}, "
                f"upper_norm={self.upper_norm:g}, lower_margin={self.lower_margin:g}, "
                f"upper_margin={self.upper_margin:g}: the norm regulariser would have no "
                "unique optimum. Use a larger lambda_g (the authors use 35). "
                f"Received: lambda_g={lambda_g}"
            )

    def clipped_norm(self, norms):
        """`clip(||x||, l_a, u_a)`, with gradient inside the interval."""
        return ops.clip(norms, self.lower_norm, self.upper_norm)

    def norm_margin(self, clipped_norm):
        """`m(a)`, linear from `l_m` at `l_a` to `u_m` at `u_a`."""
        slope = (self.upper_margin - self.lower_margin) / (self.upper_norm - self.lower_norm)
        return slope * (clipped_norm - self.lower_norm) + self.lower_margin

    def norm_regularizer(self, clipped_norm):
        """`g(a) = a / u_a^2 + 1 / a`, minimal at `a = u_a`."""
        return clipped_norm / self.upper_norm**2 + 1.0 / clipped_norm

    def target_logits(self, target_cosine, norms):
        clipped = self.clipped_norm(norms)
        # The regulariser goes with the margin: only on training calls with labels.
        self.add_loss(self.lambda_g * ops.mean(self.norm_regularizer(clipped)))
        margin = self.norm_margin(clipped)
        if self.variant == "cosface":
            return self.scale * (target_cosine - margin)
        fallback = "easy" if self.easy_margin else "cosface"
        return self.scale * additive_angular_margin(target_cosine, margin, fallback)
