"""ElasticFace: ArcFace and CosFace with a random margin per sample."""

import keras
from keras import ops

from keras_face.heads import backend_ops
from keras_face.heads.base import ARC_FALLBACKS
from keras_face.heads.base import GRADIENT_MODES
from keras_face.heads.base import MarginHead
from keras_face.heads.base import additive_angular_margin
from keras_face.heads.base import straight_through
from keras_face.heads.base import validate_angular_margin
from keras_face.heads.base import validate_choice
from keras_face.heads.base import validate_positive


class _ElasticMargin(MarginHead):
    """Shared part of the ElasticFace heads: the per-sample margins.

    Each training call draws `m_i ~ N(margin, margin_std^2)` for every sample from the
    layer's `SeedGenerator`. With `plus=True` (ElasticFace+) the sorted draws are
    assigned by rank: the sample with the lowest target cosine gets the largest margin.
    """

    def __init__(
        self,
        num_classes,
        scale,
        margin,
        margin_std,
        plus,
        plus_reference_order,
        seed,
        kernel_initializer,
        kernel_regularizer,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes, kernel_initializer, kernel_regularizer, sub_centers=sub_centers, **kwargs
        )
        self.scale = validate_positive("scale", scale)
        self.margin = validate_positive("margin", margin, allow_zero=True)
        self.margin_std = validate_positive("margin_std", margin_std, allow_zero=True)
        self.plus = bool(plus)
        self.plus_reference_order = bool(plus_reference_order)
        if self.plus_reference_order and not self.plus:
            raise ValueError(
                "plus_reference_order only applies to the ElasticFace+ assignment; set "
                "plus=True. Received: plus=False, plus_reference_order=True"
            )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def draw_margins(self, shape):
        """Fresh margins `m_i ~ N(margin, margin_std^2)`, float32, of the given shape."""
        return keras.random.normal(
            shape,
            mean=self.margin,
            stddev=self.margin_std,
            dtype="float32",
            seed=self.seed_generator,
        )

    def sample_margins(self, target_cosine):
        """The margin of every sample of the batch, `(B,)`, given its target cosine.

        Under a `tf.distribute` strategy the margins are drawn for the whole global batch
        (the same draw on every replica: one seed state) and each replica takes its own
        rows; ElasticFace+ ranks the target cosines of the global batch. So 2 replicas
        give the margins of 1 replica on the same global batch.
        """
        rows = backend_ops.replica_rows(ops.shape(target_cosine)[0])
        if rows is None:
            return self.margins_by_rank(target_cosine)
        global_size, offset = rows
        global_target = None
        if self.plus:
            global_target = backend_ops.cross_replica_concat(ops.stop_gradient(target_cosine))
        margins = self.margins_by_rank(global_target, (global_size,))
        return ops.slice(margins, (offset,), ops.shape(target_cosine)[:1])

    def margins_by_rank(self, target_cosine, shape=None):
        """Draw the margins of a batch of `shape` (`plus`: by rank of `target_cosine`).

        `shape` defaults to the shape of `target_cosine` (which may be `None` when
        `plus=False` and `shape` is given).
        """
        margins = self.draw_margins(ops.shape(target_cosine) if shape is None else shape)
        if not self.plus:
            return margins
        ascending_margins = ops.sort(margins)
        # Position r of `by_similarity` holds the sample with the r-th largest c_y.
        by_similarity = ops.argsort(-ops.stop_gradient(target_cosine))
        if self.plus_reference_order:
            # ElasticFace's utils/losses.py: margin[argsort_desc(c_y)], the sort
            # permutation used where its inverse is meant (not monotone in c_y).
            return ops.take(ascending_margins, by_similarity)
        # Rank of each sample (the inverse permutation): the most similar sample gets
        # the smallest margin, the least similar the largest.
        rank = ops.argsort(by_similarity)
        return ops.take(ascending_margins, rank)


@keras.saving.register_keras_serializable(package="keras_face")
class ElasticArcFace(_ElasticMargin):
    """ElasticFace-Arc head: ArcFace with a random additive angular margin per sample.

    Every training call draws a fresh margin `m_i ~ N(m, sigma^2)` for each sample and
    computes `s * cos(theta_y + m_i)` for its target class and `s * cos(theta_j)` for
    the others. Inference (`training=False`) returns `s * cos(theta_j)` and draws
    nothing. Under a `tf.distribute` strategy the margins are drawn per row of the
    global batch (ElasticFace+ ranks the global batch): 2 replicas train as 1 device.
    Like the reference, the default applies no fallback past
    `theta_y = pi - m_i`; ArcFace's fallbacks and straight-through gradient are
    available (see `ArcFace`).

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0`.
        margin: float. Mean `m` of the margins, in radians, in `[0, pi)`. Defaults to `0.5`.
        margin_std: float. Standard deviation `sigma` of the margins. Defaults to `0.05`
            (ElasticFace `config/config.py`; its ElasticFace+ runs use `0.0175` for Arc
            and `0.02` for Cos, its class constructors `0.0125`).
        plus: bool. ElasticFace+: assign the sorted margins by rank of the target
            cosine, the largest margin to the sample farthest from its centre.
            Defaults to `False`.
        plus_reference_order: bool. With `plus=True`, reproduce the reference code's
            assignment `margin_sorted[argsort_desc(c_y)]` bit for bit (it gathers with
            the sort permutation instead of its inverse, so the margins are not
            monotone in `c_y` unless the batch is already sorted). Defaults to `False`.
        seed: int or `None`. Seed of the layer's `keras.random.SeedGenerator`.
            Defaults to `None`.
        fallback: str. Target beyond `pi - m_i`: `"none"`, `"cosface"`, `"easy"`,
            `"clip"` or `"reflect"`, see `ArcFace`. Defaults to `"none"` (the
            reference's `utils/losses.py`).
        gradient: str. `"exact"` or `"detached"` (straight-through), see `ArcFace`.
            Defaults to `"exact"`.
        kernel_initializer: initializer of the class centres, shape
            `(embedding_dim, num_classes)`. Defaults to `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.ElasticArcFace(num_classes=10_000, seed=0)
        logits = head([embeddings, labels], training=True)
        # ElasticFace+ (the authors' Arc+ setting).
        head = keras_face.heads.ElasticArcFace(10_000, margin_std=0.0175, plus=True)
        ```

    References:
        - [Boutros et al., ElasticFace: Elastic Margin Loss for Deep Face Recognition,
          CVPR Workshops 2022](https://arxiv.org/abs/2109.09416)
    """

    hyperparameters = (
        "scale",
        "margin",
        "margin_std",
        "plus",
        "plus_reference_order",
        "fallback",
        "gradient",
        "seed",
    )

    def __init__(
        self,
        num_classes,
        scale=64.0,
        margin=0.5,
        margin_std=0.05,
        plus=False,
        plus_reference_order=False,
        fallback="none",
        gradient="exact",
        seed=None,
        kernel_initializer=None,
        kernel_regularizer=None,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes,
            scale,
            margin,
            margin_std,
            plus,
            plus_reference_order,
            seed,
            kernel_initializer,
            kernel_regularizer,
            sub_centers=sub_centers,
            **kwargs,
        )
        validate_angular_margin("margin", self.margin)
        self.fallback = validate_choice("fallback", fallback, ARC_FALLBACKS)
        self.gradient = validate_choice("gradient", gradient, GRADIENT_MODES)

    def target_logits(self, target_cosine, norms):
        margins = self.sample_margins(target_cosine)
        adjusted = additive_angular_margin(target_cosine, margins, self.fallback)
        if self.gradient == "detached":
            adjusted = straight_through(target_cosine, adjusted)
        return self.scale * adjusted


@keras.saving.register_keras_serializable(package="keras_face")
class ElasticCosFace(_ElasticMargin):
    """ElasticFace-Cos head: CosFace with a random additive cosine margin per sample.

    Every training call draws a fresh margin `m_i ~ N(m, sigma^2)` for each sample and
    computes `s * (cos(theta_y) - m_i)` for its target class and `s * cos(theta_j)` for
    the others. Inference (`training=False`) returns `s * cos(theta_j)` and draws
    nothing. Under a `tf.distribute` strategy the margins are drawn per row of the
    global batch (ElasticFace+ ranks the global batch): 2 replicas train as 1 device.

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0`.
        margin: float. Mean `m` of the margins. Defaults to `0.35`.
        margin_std: float. Standard deviation `sigma` of the margins. Defaults to `0.05`
            (ElasticFace `config/config.py`; its ElasticFace+ runs use `0.0175` for Arc
            and `0.02` for Cos, its class constructors `0.0125`).
        plus: bool. ElasticFace+: assign the sorted margins by rank of the target
            cosine, the largest margin to the sample farthest from its centre.
            Defaults to `False`.
        plus_reference_order: bool. With `plus=True`, reproduce the reference code's
            assignment `margin_sorted[argsort_desc(c_y)]` bit for bit (it gathers with
            the sort permutation instead of its inverse, so the margins are not
            monotone in `c_y` unless the batch is already sorted). Defaults to `False`.
        seed: int or `None`. Seed of the layer's `keras.random.SeedGenerator`.
            Defaults to `None`.
        kernel_initializer: initializer of the class centres, shape
            `(embedding_dim, num_classes)`. Defaults to `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class `K`: the class cosine is the largest of
            its K columns, taken before the margin (see `CosineClassifier`).
            Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.ElasticCosFace(num_classes=10_000, seed=0)
        logits = head([embeddings, labels], training=True)
        # ElasticFace+ (the authors' Cos+ setting).
        head = keras_face.heads.ElasticCosFace(10_000, margin_std=0.02, plus=True)
        ```

    References:
        - [Boutros et al., ElasticFace: Elastic Margin Loss for Deep Face Recognition,
          CVPR Workshops 2022](https://arxiv.org/abs/2109.09416)
    """

    hyperparameters = (
        "scale",
        "margin",
        "margin_std",
        "plus",
        "plus_reference_order",
        "seed",
    )

    def __init__(
        self,
        num_classes,
        scale=64.0,
        margin=0.35,
        margin_std=0.05,
        plus=False,
        plus_reference_order=False,
        seed=None,
        kernel_initializer=None,
        kernel_regularizer=None,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes,
            scale,
            margin,
            margin_std,
            plus,
            plus_reference_order,
            seed,
            kernel_initializer,
            kernel_regularizer,
            sub_centers=sub_centers,
            **kwargs,
        )

    def target_logits(self, target_cosine, norms):
        margins = self.sample_margins(target_cosine)
        return self.scale * (target_cosine - margins)
