"""`AgeInvariantTrainingModel`: MTLFace's age-invariant recognition (AFD + cross-age adversary)."""

import keras
from keras import ops

from keras_face.age_invariant.age_estimation_head import AgeEstimationHead
from keras_face.age_invariant.age_estimation_head import age_groups
from keras_face.age_invariant.age_estimation_head import age_loss
from keras_face.age_invariant.age_estimation_head import dex_expectation
from keras_face.age_invariant.age_estimation_head import validate_num_groups
from keras_face.age_invariant.attention_feature_decomposition import AttentionFeatureDecomposition
from keras_face.layers import GradientReversal
from keras_face.models import check_embedding_backbone
from keras_face.models import embedding_head_model
from keras_face.models import feature_map_model
from keras_face.training.training_model import TrainingModel


def _check_weight(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="keras_face")
class AgeInvariantTrainingModel(TrainingModel):
    """MTLFace's age-invariant face recognition: `[image, label, age] -> logits` and ages.

    The backbone is split at its last feature map (`feature_map_model`,
    `embedding_head_model`); between the two halves an `AttentionFeatureDecomposition`
    splits the map into `x_age` and `x_id = x - x_age`. The embedding is computed from
    `x_id` by the backbone's own embedding layers and classified by the margin head
    (MTLFace: CosFace s = 64, m = 0.35). Two `AgeEstimationHead`s read age:

    - on `x_age`: `L_age = MSE(DEX age, age) + CE(group)`, which teaches the attention
      where age lives;
    - on `GradientReversal(x_id)`: the same loss `L_da` for a discriminator whose reversed
      gradient makes `x_id` (hence the embedding) carry no age.

    The loss is `L_id + age_weight * L_age + da_weight * L_da` (the authors' 0.001 and
    0.002) plus any loss a layer adds. Compile without a loss; fit on
    `((images, labels, ages), labels)` with ages in years. Logged metrics: `accuracy`
    (margin logits), `age_mae` and `group_acc` of the age head, `da_age_mae` and
    `da_group_acc` of the discriminator (near the error of predicting the mean age when
    the embedding carries no age). The authors apply no weight decay to the
    discriminator: `compile` excludes its variables from the optimizer's weight decay.

    `embedding_model` is `images -> embedding` through `x_id`: what is evaluated and
    exported.

    Args:
        backbone: functional `keras.Model` from images to embeddings
            (`keras_face.models` backbones; otherwise pass `feature_layer`).
        head: margin head, e.g. `keras_face.heads.CosFace(num_classes, 64.0, 0.35)`.
        num_groups: int. Age groups of the group losses (4 to 8). Defaults to `7`.
        age_weight: float. Weight of `L_age`. Defaults to `0.001`.
        da_weight: float. Weight of `L_da`. Defaults to `0.002`.
        grl_scale: float. Reversal coefficient. Defaults to `1.0`.
        reduction: int. AFD channel reduction. Defaults to `16`.
        spatial_kernel: int. AFD spatial kernel. Defaults to `7`.
        age_hidden: int. Hidden width of the age heads. Defaults to `512`.
        feature_layer: str. See `keras_face.models.find_feature_map`. Defaults to `None`.
        synchronized_bn: bool. The batch norms of the decomposition and the age heads
            use global-batch statistics under a `tf.distribute` strategy. Defaults to
            `False`.
        **kwargs: other keyword arguments of `keras.Model` (`name`, ...).

    Example:
        ```python
        backbone = keras_face.models.iresnet50()
        model = keras_face.age_invariant.AgeInvariantTrainingModel(
            backbone, keras_face.heads.CosFace(num_classes, scale=64.0, margin=0.35))
        model.compile(optimizer=keras_face.training.L2SGD(0.1))
        model.fit(dataset)  # ((images, labels, ages), labels)
        model.embedding_model.save("embedding.keras")
        ```

    References:
        - [Huang et al., When Age-Invariant Face Recognition Meets Face Age Synthesis,
          CVPR 2021](https://arxiv.org/abs/2103.01520)
    """

    def __init__(
        self,
        backbone,
        head,
        num_groups=7,
        age_weight=0.001,
        da_weight=0.002,
        grl_scale=1.0,
        reduction=16,
        spatial_kernel=7,
        age_hidden=512,
        feature_layer=None,
        synchronized_bn=False,
        **kwargs,
    ):
        backbone = check_embedding_backbone(backbone)
        num_groups = validate_num_groups(num_groups)
        age_weight = _check_weight("age_weight", age_weight)
        da_weight = _check_weight("da_weight", da_weight)
        trunk = feature_map_model(backbone, feature_layer)
        tail = embedding_head_model(backbone, feature_layer)
        decomposition = AttentionFeatureDecomposition(
            reduction=reduction,
            spatial_kernel=spatial_kernel,
            synchronized_bn=synchronized_bn,
            name="afd",
        )
        age_head = AgeEstimationHead(
            num_groups, hidden=age_hidden, synchronized_bn=synchronized_bn, name="age_head"
        )
        da_head = AgeEstimationHead(
            num_groups, hidden=age_hidden, synchronized_bn=synchronized_bn, name="da_head"
        )
        reversal = GradientReversal(grl_scale, name="gradient_reversal")

        spec = backbone.inputs[0]
        image = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name="image")
        label = keras.Input(shape=(), dtype="int32", name="label")
        age = keras.Input(shape=(), dtype="float32", name="age")
        x_id, x_age = decomposition(trunk(image))
        embeddings = tail(x_id)
        logits = head([embeddings, label])
        age_logits, group_logits = age_head(x_age)
        da_age_logits, da_group_logits = da_head(reversal(x_id))
        outputs = {
            "logits": logits,
            "age_logits": age_logits,
            "group_logits": group_logits,
            "da_age_logits": da_age_logits,
            "da_group_logits": da_group_logits,
        }
        kwargs.setdefault("name", "age_invariant_training_model")
        super().__init__(inputs=[image, label, age], outputs=outputs, **kwargs)
        self.backbone = backbone
        self.head = head
        self.decomposition = decomposition
        self.age_head = age_head
        self.da_head = da_head
        self.num_groups = num_groups
        self.age_weight = age_weight
        self.da_weight = da_weight
        self.grl_scale = reversal.scale
        self.reduction = reduction
        self.spatial_kernel = spatial_kernel
        self.age_hidden = age_hidden
        self.feature_layer = feature_layer
        self.synchronized_bn = bool(synchronized_bn)
        # Not tracked as a sub-model: its layers are tracked through the training graph.
        object.__setattr__(
            self,
            "_embedding_model",
            keras.Model(image, embeddings, name=f"{backbone.name}_age_invariant"),
        )
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("accuracy", "age_mae", "group_acc", "da_age_mae", "da_group_acc")
        }
        self.check_strategy_support()

    @property
    def embedding_model(self):
        """Images to embeddings through the identity features `x_id` (shares the weights)."""
        return self._embedding_model

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
                "AgeInvariantTrainingModel computes its own loss (identity + age + cross-age "
                f"adversary); compile it without one. Received: loss={loss!r}"
            )
        kwargs.pop("metrics", None)
        super().compile(optimizer=optimizer, **kwargs)
        if getattr(self.optimizer, "weight_decay", None):
            # The authors apply no weight decay to the discriminator.
            self.optimizer.exclude_from_weight_decay(var_list=self.da_head.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        ages = ops.reshape(ops.cast(x[2], "float32"), (-1,))
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        logits = y_pred["logits"]
        identity = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        main = age_loss(y_pred["age_logits"], y_pred["group_logits"], ages, self.num_groups)
        adversary = age_loss(
            y_pred["da_age_logits"], y_pred["da_group_logits"], ages, self.num_groups
        )
        loss = (
            ops.mean(identity)
            + self.age_weight * ops.mean(main)
            + self.da_weight * ops.mean(adversary)
        )
        if self.losses:
            loss = loss + ops.sum(ops.stack([ops.cast(value, "float32") for value in self.losses]))
        self._update_trackers(labels, ages, y_pred)
        return self.replica_share(loss)

    def _update_trackers(self, labels, ages, y_pred):
        groups = age_groups(ages, self.num_groups)
        correct = ops.cast(ops.equal(ops.argmax(y_pred["logits"], axis=-1), labels), "float32")
        self.trackers["accuracy"].update_state(correct)
        for prefix in ("", "da_"):
            predicted = dex_expectation(y_pred[f"{prefix}age_logits"])
            self.trackers[f"{prefix}age_mae"].update_state(ops.abs(predicted - ages))
            group_hit = ops.equal(
                ops.cast(ops.argmax(y_pred[f"{prefix}group_logits"], axis=-1), "int32"), groups
            )
            self.trackers[f"{prefix}group_acc"].update_state(ops.cast(group_hit, "float32"))

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
            "num_groups": self.num_groups,
            "age_weight": self.age_weight,
            "da_weight": self.da_weight,
            "grl_scale": self.grl_scale,
            "reduction": self.reduction,
            "spatial_kernel": self.spatial_kernel,
            "age_hidden": self.age_hidden,
            "feature_layer": self.feature_layer,
            "synchronized_bn": self.synchronized_bn,
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
