"""ArcFace: additive angular margin."""

import keras

from keras_face.heads.base import ARC_FALLBACKS
from keras_face.heads.base import GRADIENT_MODES
from keras_face.heads.base import MarginHead
from keras_face.heads.base import additive_angular_margin
from keras_face.heads.base import straight_through
from keras_face.heads.base import validate_angular_margin
from keras_face.heads.base import validate_choice
from keras_face.heads.base import validate_positive


@keras.saving.register_keras_serializable(package="keras_face")
class ArcFace(MarginHead):
    """Additive angular margin head (ArcFace).

    Computes `s * cos(theta_y + m)` for the target class and `s * cos(theta_j)` for the
    others, where `theta` is the angle between the L2-normalised embedding and class
    centre. Past `theta_y = pi - m`, where `cos(theta + m)` stops decreasing, the target
    follows `fallback`:

    | fallback | target cosine where it applies | source |
    |---|---|---|
    | `"cosface"` | `c - m sin m` if `c <= cos(pi - m)` | insightface 2018-2020, CurricularFace |
    | `"easy"` | `c` where `c <= 0` | `easy_margin=True`; MagFace's default |
    | `"none"` | `cos(theta + m)` everywhere | the paper; insightface `arcface_torch` |
    | `"clip"` | `cos(clip(theta + m, 1e-4, pi - 1e-4))` | AdaFace's `ArcFace` |
    | `"reflect"` | `-2 - cos(theta + m)` if `c <= cos(pi - m)` | Keras_insightface |

    (`"cosface"`: the default of insightface's `train_softmax.py` of 2018-2020, also
    face.evoLVe's; `"reflect"` is continuous and monotone.)

    `gradient="detached"` keeps the forward value but passes the gradient of the plain
    cosine (insightface `arcface_torch` since 2022-12, opensphere's CGD).

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0`.
        margin: float. Additive angular margin `m` in radians, in `[0, pi)`. Defaults to `0.5`.
        fallback: str. Target beyond `pi - m`, see the table. Defaults to `"cosface"`.
        gradient: str. `"exact"` or `"detached"`. Defaults to `"exact"`.
        kernel_initializer: initializer of the class centres. Defaults to
            `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.ArcFace(num_classes=10_000)
        logits = head([embeddings, labels], training=True)
        ```

    References:
        - [Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face
          Recognition, CVPR 2019](https://arxiv.org/abs/1801.07698)
    """

    hyperparameters = ("scale", "margin", "fallback", "gradient")

    def __init__(
        self,
        num_classes,
        scale=64.0,
        margin=0.5,
        fallback="cosface",
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
        self.margin = validate_angular_margin("margin", margin)
        self.fallback = validate_choice("fallback", fallback, ARC_FALLBACKS)
        self.gradient = validate_choice("gradient", gradient, GRADIENT_MODES)

    def target_logits(self, target_cosine, norms):
        adjusted = additive_angular_margin(target_cosine, self.margin, self.fallback)
        if self.gradient == "detached":
            adjusted = straight_through(target_cosine, adjusted)
        return self.scale * adjusted
