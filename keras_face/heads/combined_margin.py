"""Combined margin: multiplicative angular, additive angular and additive cosine margins."""

import math

import keras
from keras import ops

from keras_face.heads.base import CLIP_FALLBACK_EPSILON
from keras_face.heads.base import GRADIENT_MODES
from keras_face.heads.base import MarginHead
from keras_face.heads.base import safe_arccos
from keras_face.heads.base import straight_through
from keras_face.heads.base import validate_angular_margin
from keras_face.heads.base import validate_choice
from keras_face.heads.base import validate_positive

COMBINED_FALLBACKS = ("none", "reflect", "clip")


@keras.saving.register_keras_serializable(package="keras_face")
class CombinedMargin(MarginHead):
    """Combined margin head: `s * (cos(m1 * theta_y + m2) - m3)`.

    The target logit combines SphereFace's multiplicative angular margin `m1`, ArcFace's
    additive angular margin `m2` and CosFace's additive cosine margin `m3`; the other
    logits are `s * cos(theta_j)`. `theta_y = arccos(c_y)` is computed in a form with
    exact values and finite gradients at `|c_y| = 1`. `(1, 0, m)` is CosFace(m) and
    `(1, m, 0)` is ArcFace(m) without fallback.

    Where `m1 * theta_y + m2` passes `pi` (for `theta_y > (pi - m2) / m1`, when that is
    below `pi`), `cos` turns back up and the target is no longer monotone. `fallback`
    chooses what happens there:

    | fallback | target cosine where `m1 * theta + m2 > pi` | source |
    |---|---|---|
    | `"none"` | `cos(m1 theta + m2) - m3` | insightface MXNet `train.py` (the authors) |
    | `"reflect"` | `-2 (1 + m3) - (cos(m1 theta + m2) - m3)` (monotone) | Keras_insightface |
    | `"clip"` | `cos(clip(m1 theta + m2, 1e-4, pi - 1e-4)) - m3` | as ArcFace's `"clip"` |

    insightface's PyTorch `CombinedMarginLoss` (`arcface_torch`) is not this formula: it
    takes the ArcFace path only when `m1 == 1 and m3 == 0`, otherwise, whenever
    `m3 > 0`, it silently ignores `m1` and `m2` and computes CosFace(m3), so its
    `(1.0, 0.3, 0.2)` is CosFace with `m = 0.2`. This layer computes the true combination.

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0`.
        m1: float. Multiplicative angular margin. Defaults to `1.0`.
        m2: float. Additive angular margin in radians, in `[0, pi)`. Defaults to `0.3`.
        m3: float. Additive cosine margin. Defaults to `0.2` (insightface MXNet
            `sample_config.py`, `combined`; the paper's CM1).
        fallback: str. Target where `m1 * theta + m2 > pi`, see the table. Defaults to
            `"none"` (the authors' code).
        gradient: str. `"exact"`, or `"detached"` to keep the forward value but pass the
            gradient of the plain cosine (straight-through, as insightface
            `arcface_torch` since 2022-12). Defaults to `"exact"`.
        kernel_initializer: initializer of the class centres, shape
            `(embedding_dim, num_classes)`. Defaults to `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.CombinedMargin(num_classes=10_000, m1=0.9, m2=0.4, m3=0.15)
        logits = head([embeddings, labels], training=True)
        ```

    References:
        - [Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face
          Recognition, CVPR 2019, Sec. 2.2 and Table 1 (CM1, CM2)](https://arxiv.org/abs/1801.07698)
    """

    hyperparameters = ("scale", "m1", "m2", "m3", "fallback", "gradient")

    def __init__(
        self,
        num_classes,
        scale=64.0,
        m1=1.0,
        m2=0.3,
        m3=0.2,
        fallback="none",
        gradient="exact",
        kernel_initializer=None,
        kernel_regularizer=None,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes, kernel_initializer, kernel_regularizer, sub_centers=sub_centers, **kwargs
        )
        self.scale = validate_positive("scale", scale)
        self.m1 = validate_positive("m1", m1)
        self.m2 = validate_angular_margin("m2", m2)
        self.m3 = validate_positive("m3", m3, allow_zero=True)
        self.fallback = validate_choice("fallback", fallback, COMBINED_FALLBACKS)
        self.gradient = validate_choice("gradient", gradient, GRADIENT_MODES)

    def target_logits(self, target_cosine, norms):
        angle = self.m1 * safe_arccos(target_cosine) + self.m2
        if self.fallback == "clip":
            angle = ops.clip(angle, CLIP_FALLBACK_EPSILON, math.pi - CLIP_FALLBACK_EPSILON)
        adjusted = ops.cos(angle) - self.m3
        if self.fallback == "reflect":
            # Mirror image about -(1 + m3), the value at m1 * theta + m2 = pi.
            adjusted = ops.where(angle <= math.pi, adjusted, -2.0 * (1.0 + self.m3) - adjusted)
        if self.gradient == "detached":
            adjusted = straight_through(target_cosine, adjusted)
        return self.scale * adjusted
