"""`OcclusionAdversarialModel`: a recogniser trained against the occlusion that hurts it most."""

import keras
import numpy as np
from keras import ops

from keras_face.models import check_embedding_backbone
from keras_face.models import embedding_head_model
from keras_face.models import feature_map_model
from keras_face.occlusion.occlusion_masks import MASK_FAMILIES
from keras_face.occlusion.occlusion_masks import half_masks
from keras_face.occlusion.occlusion_masks import landmark_box_masks
from keras_face.occlusion.occlusion_masks import landmark_masks
from keras_face.occlusion.occlusion_masks import mask_to_feature_grid
from keras_face.occlusion.occlusion_masks import random_half_masks
from keras_face.training.training_model import TrainingModel

ADVERSARIES = ("worst_of_k", "generator", "random", None)
SPACES = ("image", "feature")
LANDMARK_SOURCES = ("template", "input")
# Steps of the precomputed family / random-half schedule (it repeats after that).
SCHEDULE_LENGTH = 4096
RANDOM_HALF_BANK = 64
MIN_FEATURE_MAP = 4


def _per_sample_cross_entropy(labels, logits):
    return keras.losses.sparse_categorical_crossentropy(
        labels, ops.cast(logits, "float32"), from_logits=True
    )


def imitation_loss(generator_logits, worst, clean_loss, worst_loss, threshold=0.1):
    """The learned adversary's loss: imitate the successful attacks only (A-Fast-RCNN).

    `CE(generator_logits, worst)` for the samples whose true-class probability drops by
    more than `threshold` under their worst mask, `p_y(x) - p_y(x_worst) > threshold`
    with `p_y = exp(-loss)`, and 0 for the others (an attack that does not hurt is not
    worth imitating).

    Args:
        generator_logits: tensor `(B, K)`: the generator's scores of the masks.
        worst: int tensor `(B,)`: the worst mask of each sample.
        clean_loss: tensor `(B,)`: identification loss of the clean image.
        worst_loss: tensor `(B,)`: identification loss under the worst mask.
        threshold: float. Defaults to `0.1` (A-Fast-RCNN).

    Returns:
        float32 tensor `(B,)`.

    Example:
        ```python
        loss = keras_face.occlusion.imitation_loss(logits, worst, clean_loss, worst_loss)
        ```

    References:
        - [Wang, Shrivastava and Gupta, A-Fast-RCNN, CVPR 2017](https://arxiv.org/abs/1704.03414)
    """
    drop = ops.exp(-ops.cast(clean_loss, "float32")) - ops.exp(-ops.cast(worst_loss, "float32"))
    successful = ops.cast(drop > threshold, "float32")
    cross_entropy = keras.losses.sparse_categorical_crossentropy(
        ops.cast(worst, "int32"), ops.cast(generator_logits, "float32"), from_logits=True
    )
    return successful * cross_entropy


@keras.saving.register_keras_serializable(package="keras_face")
class OcclusionAdversarialModel(TrainingModel):
    """Occlusion-adversarial training: `[image, label] -> logits`, robust to the worst mask.

    Every step draws one mask family (uniformly, from a fixed schedule keyed by the step):
    boxes at the landmarks (eyes, both eyes, nose, mouth), the halves (left, right, upper,
    lower) or random halves of a 4 x 4 grid (`keras_face.occlusion` masks). The adversary
    picks, per image, the family's mask that hurts identification most:
    `k* = argmax_k CE(s cos(f(x_k), W_y))` with the plain scaled cosine of the head in
    inference mode and no gradient (`"worst_of_k"`); or a learned generator (a Dense layer
    on the stop-gradient feature map, one score per mask of each family) samples the mask
    from `softmax(g / temperature)` and learns to imitate the worst mask of the samples
    whose true-class probability it drops by more than `score_threshold`
    (`"generator"`, A-Fast-RCNN's ASDN, `imitation_loss` weighted by
    `generator_weight`); or a random one (`"random"`, the augmentation baseline). The
    recogniser minimises

        L = clean_weight * CE(h([f(x), y])) + occluded_weight * CE(h([f(x_k*), y]))

    with margin logits in training mode (A-Fast-RCNN's alternating clean and occluded
    batches, as one loss). With `space="feature"` the masks drop cells of the backbone's
    last feature map instead of pixels, so the K candidates cost K passes of the
    embedding layers rather than of the whole backbone; the map must be at least 4 x 4.

    With `landmarks="template"` the faces are taken as aligned to the ArcFace template
    (their landmarks are the template's, `keras_face.data.arcface_template`; a flipped
    aligned face has the mirrored template, whose boxes are the same set). With
    `landmarks="input"` the model takes `[image, label, landmarks]` (`(5, 2)` pixels per
    image, mirrored with the image when the pipeline flips it: `make_training_dataset(...,
    extras=(landmarks,), flipped_extras=(mirror_landmarks(landmarks, width),))`) and the
    landmark boxes follow each face (image space only). Logged metrics:
    `clean_loss`, `occluded_loss` and `adversary_gain` (mean of `max_k l_k - mean_k l_k`:
    what the choice gains over a random mask). `choice_counts` `(families, 5)` counts the
    chosen masks (the adversary's history).

    Args:
        backbone: functional `keras.Model` from images to embeddings.
        head: margin head, e.g. `keras_face.heads.ArcFace(num_classes)`.
        adversary: str or `None`. `"worst_of_k"`, `"generator"`, `"random"` or `None`
            (no masks). Defaults to `"worst_of_k"`.
        families: sequence of str. Mask families among `MASK_FAMILIES`. Defaults to all.
        space: str. `"image"` or `"feature"`. Defaults to `"image"`.
        clean_weight: float. Defaults to `1.0`.
        occluded_weight: float. Defaults to `1.0`.
        fill: float. Value of occluded pixels (0 = grey after [-1, 1] preprocessing).
            Defaults to `0.0`.
        radius: float. Landmark boxes' half-size relative to the image. Defaults to `0.12`.
        seed: int. Seed of the family schedule and the random masks. Defaults to `0`.
        generator_weight: float. Weight of the generator's mean imitation loss
            (A-Fast-RCNN's 0.0025). Defaults to `0.0025`.
        score_threshold: float. Probability drop that makes an attack worth imitating.
            Defaults to `0.1`.
        temperature: float. Temperature of the generator's sampling. Defaults to `1.0`.
        landmarks: str. `"template"` or `"input"` (see above). Defaults to `"template"`.
        feature_layer: str. See `keras_face.models.find_feature_map`. Defaults to `None`.
        **kwargs: other keyword arguments of `keras.Model`.

    Example:
        ```python
        model = keras_face.occlusion.OcclusionAdversarialModel(
            keras_face.models.mobilefacenet(input_shape=(64, 64, 3)),
            keras_face.heads.ArcFace(num_classes, scale=16.0), space="feature")
        model.compile(optimizer="sgd")
        model.fit(dataset)  # ((images, labels), labels)
        ```

    References:
        - [Wang, Shrivastava and Gupta, A-Fast-RCNN: Hard Positive Generation via
          Adversary, CVPR 2017](https://arxiv.org/abs/1704.03414)
        - [Chen et al., Adversarial Occlusion-aware Face Detection, BTAS 2018](https://arxiv.org/abs/1709.05188)
    """

    def __init__(
        self,
        backbone,
        head,
        adversary="worst_of_k",
        families=MASK_FAMILIES,
        space="image",
        clean_weight=1.0,
        occluded_weight=1.0,
        fill=0.0,
        radius=0.12,
        seed=0,
        generator_weight=0.0025,
        score_threshold=0.1,
        temperature=1.0,
        landmarks="template",
        feature_layer=None,
        **kwargs,
    ):
        backbone = check_embedding_backbone(backbone)
        if adversary not in ADVERSARIES:
            raise ValueError(
                "adversary must be 'worst_of_k', 'generator', 'random' or None. "
                f"Received: adversary={adversary!r}"
            )
        families = tuple(families)
        unknown = [name for name in families if name not in MASK_FAMILIES]
        if not families or unknown:
            raise ValueError(
                f"families must be a non-empty subset of {MASK_FAMILIES}. "
                f"Received: families={families!r}"
            )
        if space not in SPACES:
            raise ValueError(f"space must be 'image' or 'feature'. Received: space={space!r}")
        if landmarks not in LANDMARK_SOURCES:
            raise ValueError(
                f"landmarks must be 'template' or 'input'. Received: landmarks={landmarks!r}"
            )
        if landmarks == "input" and space != "image":
            raise ValueError(
                "Per-image landmarks place boxes in image space: use space='image'. "
                f"Received: landmarks='input', space={space!r}"
            )
        for name, value in (("clean_weight", clean_weight), ("occluded_weight", occluded_weight)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number >= 0. Received: {name}={value!r}")
        trunk = feature_map_model(backbone, feature_layer)
        tail = embedding_head_model(backbone, feature_layer)
        spec = backbone.inputs[0]
        image = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name="image")
        label = keras.Input(shape=(), dtype="int32", name="label")
        inputs = [image, label]
        if landmarks == "input":
            inputs.append(keras.Input(shape=(5, 2), dtype="float32", name="landmarks"))
        feature_map = trunk(image)
        logits = head([tail(feature_map), label])
        kwargs.setdefault("name", "occlusion_adversarial_model")
        super().__init__(
            inputs=inputs,
            outputs={"logits": logits, "feature_map": feature_map},
            **kwargs,
        )
        self.backbone = backbone
        self.head = head
        self.trunk = trunk
        self.tail = tail
        self.adversary = adversary
        self.families = families
        self.space = space
        self.clean_weight = float(clean_weight)
        self.occluded_weight = float(occluded_weight)
        self.fill = float(fill)
        self.radius = float(radius)
        self.seed = int(seed)
        self.landmarks = landmarks
        self.generator_weight = float(generator_weight)
        self.score_threshold = float(score_threshold)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0. Received: temperature={temperature!r}")
        self.temperature = float(temperature)
        self.feature_layer = feature_layer
        image_size = tuple(spec.shape[1:3])
        self._build_mask_tables(image_size, tuple(feature_map.shape[1:3]))
        self.choice_counts = self.add_weight(
            shape=(len(families), 5),
            initializer="zeros",
            trainable=False,
            name="choice_counts",
            aggregation="sum",
        )
        # The random adversary's draws (its state is a model variable, so resumes exactly).
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="occlusion_seed")
        # The learned adversary: one score per mask slot of each family.
        self.generator = keras.Sequential(
            [
                keras.layers.Flatten(name="generator_flatten"),
                keras.layers.Dense(
                    len(families) * 5, kernel_initializer="zeros", name="generator_scores"
                ),
            ],
            name="occlusion_generator",
        )
        self.generator.build((None, *feature_map.shape[1:]))
        names = ["clean_loss", "occluded_loss", "adversary_gain"]
        if adversary == "generator":
            names += ["generator_loss", "generator_agreement"]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.check_strategy_support()

    def _build_mask_tables(self, image_size, feature_size):
        if self.space == "feature" and min(feature_size) < MIN_FEATURE_MAP:
            raise ValueError(
                f"Feature-space masks need a feature map of at least {MIN_FEATURE_MAP}x"
                f"{MIN_FEATURE_MAP}; this backbone gives {feature_size[0]}x{feature_size[1]} at "
                f"{image_size[0]}x{image_size[1]} images (use images of at least "
                f"{MIN_FEATURE_MAP * image_size[0] // max(feature_size[0], 1)} px, or "
                f"space='image'). Received: feature map size {feature_size}"
            )
        size = image_size if self.space == "image" else feature_size

        def resize(masks):
            masks = np.asarray(masks, np.float32)
            return masks if self.space == "image" else mask_to_feature_grid(masks, feature_size)

        fixed = {
            "landmarks": resize(landmark_masks(image_size, radius=self.radius)),
            "halves": resize(half_masks(image_size)),
        }
        rng = np.random.default_rng([self.seed, 6])
        bank = resize(random_half_masks(image_size, 4, RANDOM_HALF_BANK, seed=[self.seed, 7]))
        tables = []
        counts = []
        for name in self.families:
            if name == "random_half":
                masks = np.zeros((5, *size), np.float32)  # drawn per step from the bank
                counts.append(4)
            else:
                masks = np.concatenate([fixed[name], fixed[name][-1:]])[:5]
                counts.append(len(fixed[name]))
            tables.append(masks)
        # Fixed tables (F, 5, h, w); padding repeats the last mask, which never changes an
        # argmax and is never drawn by the random adversary (it draws below the count).
        self._fixed_masks = np.stack(tables)
        self._mask_counts = np.asarray(counts, np.int32)
        self._random_bank = bank
        self._family_schedule = rng.integers(0, len(self.families), SCHEDULE_LENGTH).astype(
            np.int32
        )
        self._random_schedule = np.stack(
            [rng.permutation(RANDOM_HALF_BANK)[:4] for _ in range(SCHEDULE_LENGTH)]
        ).astype(np.int32)
        self._random_family = (
            self.families.index("random_half") if "random_half" in self.families else -1
        )
        self._landmark_family = (
            self.families.index("landmarks") if "landmarks" in self.families else -1
        )

    @property
    def embedding_model(self):
        """The backbone: images to embeddings (what is evaluated and exported)."""
        return self.backbone

    @property
    def metrics(self):
        return [*super().metrics, *self.trackers.values()]

    def compile(self, optimizer="sgd", loss=None, **kwargs):
        """`keras.Model.compile` without a loss: the loss is the model's own.

        Args:
            optimizer: optimizer or its name. Defaults to `"sgd"`.
            loss: must be `None`.
            **kwargs: other arguments of `keras.Model.compile` (`jit_compile`, ...).
        """
        if loss is not None:
            raise ValueError(
                "OcclusionAdversarialModel computes its own loss (clean + occluded); compile "
                f"it without one. Received: loss={loss!r}"
            )
        kwargs.pop("metrics", None)
        super().compile(optimizer=optimizer, **kwargs)

    def step_masks(self, step):
        """`(family index, masks (5, h, w), count)` of an optimizer step (the schedule)."""
        index = ops.mod(ops.cast(step, "int32"), SCHEDULE_LENGTH)
        family = ops.take(ops.convert_to_tensor(self._family_schedule), index)
        masks = ops.take(ops.convert_to_tensor(self._fixed_masks), family, axis=0)
        if self._random_family >= 0:
            drawn = ops.take(
                ops.convert_to_tensor(self._random_bank),
                ops.take(ops.convert_to_tensor(self._random_schedule), index, axis=0),
                axis=0,
            )
            drawn = ops.concatenate([drawn, drawn[-1:]], axis=0)
            masks = ops.where(ops.equal(family, self._random_family), drawn, masks)
        count = ops.take(ops.convert_to_tensor(self._mask_counts), family)
        return family, masks, count

    def _occlude(self, x, masks):
        masks = ops.expand_dims(ops.cast(masks, x.dtype), -1)
        return x * (1.0 - masks) + ops.cast(self.fill, x.dtype) * masks

    def _embed(self, x, training):
        if self.space == "image":
            return self.backbone(x, training=training)
        return self.tail(x, training=training)

    def candidate_losses(self, x, labels, masks):
        """Per-candidate, per-sample identification damage `l_k` `(K, B)`, no gradient.

        Args:
            x: images (image space) or feature maps (feature space) `(B, h, w, C)`.
            labels: int tensor `(B,)`.
            masks: tensor `(K, h, w)`, or `(B, K, h, w)` per sample.

        Returns:
            float32 tensor `(K, B)`: softmax cross-entropy of the head's plain scaled cosine
            logits (inference mode, no margin) on each masked batch.
        """
        x = ops.stop_gradient(x)
        losses = []
        per_sample = len(masks.shape) == 4
        for k in range(masks.shape[1] if per_sample else masks.shape[0]):
            mask = masks[:, k] if per_sample else ops.broadcast_to(masks[k], ops.shape(x)[:3])
            embeddings = self._embed(self._occlude(x, mask), training=False)
            logits = self.head([embeddings, labels], training=False)
            losses.append(_per_sample_cross_entropy(labels, logits))
        return ops.stop_gradient(ops.stack(losses))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        clean = ops.mean(_per_sample_cross_entropy(labels, y_pred["logits"]))
        loss = self.clean_weight * clean
        if self.losses:
            loss = loss + ops.sum(ops.stack([ops.cast(value, "float32") for value in self.losses]))
        self.trackers["clean_loss"].update_state(clean)
        if not training or self.adversary is None:
            return self.replica_share(loss)
        source = x[0] if self.space == "image" else y_pred["feature_map"]
        step = self.optimizer.iterations if self.optimizer is not None else 0
        family, masks, count = self.step_masks(step)
        batch = ops.shape(labels)[0]
        if self.landmarks == "input" and self._landmark_family >= 0:
            # The landmark family follows each face; the other families are shared.
            boxes = landmark_box_masks(x[2], tuple(source.shape[1:3]), self.radius)
            shared = ops.broadcast_to(ops.expand_dims(masks, 0), ops.shape(boxes))
            masks = ops.where(ops.equal(family, self._landmark_family), boxes, shared)
        extra = 0.0
        if self.adversary in ("worst_of_k", "generator"):
            candidates = self.candidate_losses(source, labels, masks)
            valid = ops.expand_dims(ops.arange(5) < count, 1)
            candidates = ops.where(valid, candidates, -1e9)
            choice = ops.argmax(candidates, axis=0)
            best = ops.max(candidates, axis=0)
            mean = ops.sum(ops.where(valid, candidates, 0.0), axis=0) / ops.cast(count, "float32")
            self.trackers["adversary_gain"].update_state(best - mean)
            if self.adversary == "generator":
                choice, extra = self._generator_choice(
                    source, labels, y_pred["feature_map"], family, count, choice, best
                )
        else:
            draw = keras.random.uniform((batch,), seed=self.seed_generator)
            choice = ops.cast(ops.floor(draw * ops.cast(count, "float32")), "int32")
        choice = ops.cast(choice, "int32")
        if len(masks.shape) == 4:
            chosen = ops.sum(masks * ops.one_hot(choice, 5, dtype=masks.dtype)[:, :, None, None], 1)
        else:
            chosen = ops.take(masks, choice, axis=0)
        embeddings = self._embed(self._occlude(source, chosen), training=True)
        logits = self.head([embeddings, labels], training=True)
        occluded = ops.mean(_per_sample_cross_entropy(labels, logits))
        self.trackers["occluded_loss"].update_state(occluded)
        hits = ops.sum(ops.one_hot(choice, 5, dtype="float32"), axis=0)
        self.choice_counts.assign_add(
            ops.expand_dims(ops.one_hot(family, len(self.families), dtype="float32"), 1)
            * ops.expand_dims(hits, 0)
        )
        return self.replica_share(loss + self.occluded_weight * occluded + extra)

    def _generator_choice(self, source, labels, feature_map, family, count, worst, worst_loss):
        """The generator's sampled masks and its weighted imitation loss."""
        scores = self.generator(ops.stop_gradient(feature_map))
        scores = ops.take(ops.reshape(scores, (-1, len(self.families), 5)), family, axis=1)
        scores = ops.where(ops.expand_dims(ops.arange(5) < count, 0), scores, -1e9)
        choice = ops.cast(
            keras.random.categorical(scores / self.temperature, 1, seed=self.seed_generator)[:, 0],
            "int32",
        )
        clean_embeddings = self._embed(ops.stop_gradient(source), training=False)
        clean_loss = _per_sample_cross_entropy(
            labels, self.head([clean_embeddings, labels], training=False)
        )
        imitation = imitation_loss(
            scores, worst, ops.stop_gradient(clean_loss), worst_loss, self.score_threshold
        )
        self.trackers["generator_loss"].update_state(imitation)
        self.trackers["generator_agreement"].update_state(
            ops.cast(ops.equal(choice, ops.cast(worst, "int32")), "float32")
        )
        return choice, self.generator_weight * ops.mean(imitation)

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
            "adversary": self.adversary,
            "families": list(self.families),
            "space": self.space,
            "clean_weight": self.clean_weight,
            "occluded_weight": self.occluded_weight,
            "fill": self.fill,
            "radius": self.radius,
            "seed": self.seed,
            "generator_weight": self.generator_weight,
            "score_threshold": self.score_threshold,
            "temperature": self.temperature,
            "landmarks": self.landmarks,
            "feature_layer": self.feature_layer,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        backbone = keras.saving.deserialize_keras_object(
            config.pop("backbone"), custom_objects=custom_objects
        )
        head = keras.saving.deserialize_keras_object(
            config.pop("head"), custom_objects=custom_objects
        )
        return cls(backbone, head, **config)
