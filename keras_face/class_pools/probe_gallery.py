"""The probe/gallery pair shared by the pools: P trained, G its moving average."""

import keras
import tensorflow as tf
from keras import ops

from keras_face.class_pools import replica_ops
from keras_face.class_pools.precomputed_loss import PrecomputedLoss
from keras_face.training import keras_compat

EMBEDDINGS = ("probe", "gallery")


def unit_features(features):
    """L2-normalised float32 rows (the authors' backbones end with `F.normalize`)."""
    features = ops.cast(features, "float32")
    norm = ops.sqrt(ops.sum(ops.square(features), axis=-1, keepdims=True))
    return features / ops.maximum(norm, 1e-12)


class ProbeGalleryModel(keras.Model):
    """Base of `F2CTrainingModel` and `DCQTrainingModel`: a probe net P and a gallery net G.

    - P is the backbone, trained by the subclass's loss.
    - G is a clone of P with P's initial weights, not trainable. Once per step,
      before G's first forward pass, `update_gallery` moves it towards P:
      `theta_G <- m theta_G + (1 - m) theta_P` over P's trainable weights (the authors'
      `parameters()`); G's batch-norm moving statistics come from G's own forward passes
      in training mode, as the authors'.
    - `gallery_features` returns G's unit features without gradient; `all_gather`
      concatenates them over `tf.distribute` replicas (replica order), so that every
      replica writes the same global batch into its pool.

    Every piece of state (G's weights, the pool of the subclass) is a model variable, so
    `keras_face.training.BackupAndRestore` and `model.save` keep it. Called with
    `training=True` (what `fit` does) the model runs a training step's updates: G's
    moving average and the pool's write; otherwise it only computes the loss.

    This is a base class: use `F2CTrainingModel` or `DCQTrainingModel`.

    Args:
        backbone: `keras.Model` from images to embeddings (P).
        momentum: float in `[0, 1)`. Rate `m` of the moving average.
        embedding: str. `"probe"` or `"gallery"`: the network `embedding_model` returns
            (what a run evaluates and exports).
        **kwargs: other keyword arguments of `keras.Model`.

    Example:
        ```python
        model = keras_face.class_pools.F2CTrainingModel(backbone, pool_size=1000)
        model.embedding_model  # P, as the F2C authors evaluate
        ```
    """

    def __init__(self, backbone, momentum, embedding, **kwargs):
        super().__init__(**kwargs)
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1). Received: momentum={momentum}")
        if embedding not in EMBEDDINGS:
            raise ValueError(
                f"embedding must be one of {EMBEDDINGS}. Received: embedding={embedding!r}"
            )
        self.momentum = momentum
        self.embedding = embedding
        self.probe = backbone
        gallery = keras.models.clone_model(backbone)
        gallery.set_weights(backbone.get_weights())
        gallery.trainable = False
        # A frozen Keras batch norm runs in inference mode; G's must use batch statistics
        # and update its moving statistics in training, as the authors' gallery net does.
        # Its scale and offset stay out of the optimizer (they follow P by the moving
        # average).
        for layer in keras_compat.nested_layers(gallery):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = True
                for variable in (layer.gamma, layer.beta):
                    if variable is not None:
                        variable.trainable = False
        self.gallery = gallery
        probe_weights = backbone.weights
        gallery_weights = gallery.weights
        if len(probe_weights) != len(gallery_weights):
            raise ValueError(
                "The backbone's clone has other weights than the backbone. "
                f"Received: backbone={backbone.name!r}"
            )
        trainable = {id(variable) for variable in backbone.trainable_weights}
        self._ema_pairs = [
            (g, p) for g, p in zip(gallery_weights, probe_weights) if id(p) in trainable
        ]

    @property
    def embedding_model(self):
        """The network a run evaluates and exports: P or G (`embedding`)."""
        return self.probe if self.embedding == "probe" else self.gallery

    @property
    def head(self):
        """The margin head of the loss (what a run reports as its head)."""
        return self._margin_head

    def update_gallery(self):
        """`theta_G <- m theta_G + (1 - m) theta_P` over P's trainable weights."""
        m = self.momentum
        variables = [g for g, _ in self._ema_pairs]
        values = [g.value * m + ops.cast(p.value, g.dtype) * (1.0 - m) for g, p in self._ema_pairs]
        replica_ops.assign_in_sync(variables, values)

    def probe_features(self, images, training=True):
        """P's unit features `(n, D)`, float32, with gradient."""
        return unit_features(self.probe(images, training=training))

    def gallery_features(self, images, training=True):
        """G's unit features `(n, D)`, float32, without gradient (this replica's images).

        G runs in training mode during training (batch statistics), as the authors'.
        """
        return ops.stop_gradient(unit_features(self.gallery(images, training=training)))

    @staticmethod
    def all_gather(value):
        """`value` of every replica, concatenated in replica order (identity with one)."""
        return replica_ops.all_gather(value)

    def compile(self, optimizer="sgd", loss=None, **kwargs):
        """`keras.Model.compile` with the model's own loss (`PrecomputedLoss`).

        Args:
            optimizer: optimizer or its name. Defaults to `"sgd"`.
            loss: must be `None`: the model outputs its loss contributions.
            **kwargs: other arguments of `keras.Model.compile` (`jit_compile`, ...).
        """
        if loss is not None and not isinstance(loss, PrecomputedLoss):
            raise ValueError(
                f"{type(self).__name__} computes its own loss; compile it without one. "
                f"Received: loss={loss!r}"
            )
        super().compile(optimizer=optimizer, loss=PrecomputedLoss(), **kwargs)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def train_step(self, *args, **kwargs):
        logs = super().train_step(*args, **kwargs)
        self._synchronize_moving_statistics()
        return logs

    def _synchronize_moving_statistics(self):
        # As FaceTrainingModel: average the batch-norm moving statistics of P and G over
        # the replicas after each step, so the replicas keep one copy of them.
        strategy = keras_compat.distribute_strategy_of(self)
        if strategy is None or strategy.num_replicas_in_sync == 1:
            return
        context = tf.distribute.get_replica_context()
        if context is None:
            return
        variables = [
            variable
            for layer in keras_compat.nested_layers(self)
            if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized
            for variable in (layer.moving_mean, layer.moving_variance)
        ]
        if not variables:
            return
        averaged = context.all_reduce("mean", [variable.value for variable in variables])
        for variable, value in zip(variables, averaged):
            variable.assign(value)
