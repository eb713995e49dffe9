"""The training model: backbone + head, inputs `[image, label]`, output logits."""

import keras
import tensorflow as tf

from keras_face.models import check_embedding_backbone
from keras_face.training import keras_compat


@keras.saving.register_keras_serializable(package="keras_face")
class FaceTrainingModel(keras.Model):
    """Functional model `[image, label] -> logits` over a backbone and a margin head.

    The backbone (images to embeddings) is a sub-model: `model.embedding_model` *is* the
    backbone, so it shares every weight with the training model and is what gets saved
    and exported for deployment. The head receives the labels as a second input because
    the margin is applied to the target class only; it returns float32 logits for
    `SparseCategoricalCrossentropy(from_logits=True)` (the default loss of `compile`).
    Losses that a head adds itself (MagFace's feature-norm regulariser) are part of
    `model.losses` and added to the training loss by `fit`.

    Feed it `((images, labels), labels)`: `keras_face.training.make_training_dataset`
    builds such datasets.

    Args:
        backbone: `keras.Model` from images `(batch, H, W, C)` to embeddings `(batch, D)`.
        head: a `keras_face.heads` head (or `keras_face.training.SoftmaxHead`), called as
            `head([embeddings, labels])`.
        **kwargs: other keyword arguments of `keras.Model` (`name`, ...).

    Example:
        ```python
        backbone = keras_face.models.iresnet50(embedding_size=512)
        head = keras_face.heads.ArcFace(num_classes=10_572)
        model = keras_face.training.FaceTrainingModel(backbone, head)
        model.compile(optimizer=keras_face.training.L2SGD(0.1))
        model.fit(dataset, epochs=20)
        model.embedding_model.save("embedding.keras")
        ```
    """

    def __init__(self, backbone, head, **kwargs):
        check_embedding_backbone(backbone)
        image_spec = backbone.inputs[0]
        image = keras.Input(shape=tuple(image_spec.shape[1:]), dtype=image_spec.dtype, name="image")
        label = keras.Input(shape=(), dtype="int32", name="label")
        embeddings = backbone(image)
        logits = head([embeddings, label])
        kwargs.setdefault("name", "face_training_model")
        super().__init__(inputs=[image, label], outputs=logits, **kwargs)
        self.backbone = backbone
        self.head = head
        if keras_compat.distribute_strategy_of(self) is not None:
            # The workarounds below run under a strategy only.
            keras_compat.check_keras_version()

    @property
    def embedding_model(self):
        """The backbone: images to embeddings, sharing the training model's weights."""
        return self.backbone

    def compile(self, optimizer="sgd", loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` with the face-recognition defaults.

        Args:
            optimizer: optimizer or its name. Defaults to `"sgd"`.
            loss: Defaults to `SparseCategoricalCrossentropy(from_logits=True)`.
            metrics: Defaults to `[SparseCategoricalAccuracy("accuracy")]` (on the
                margin logits while training, so below the closed-set accuracy).
            **kwargs: other arguments of `keras.Model.compile` (`jit_compile`, ...).
        """
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics is None:
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # The private names of Keras and TensorFlow used below live in `keras_compat`, each
    # pinned by a test (tests/training/test_keras_compat.py) and verified on the Keras
    # versions of `keras_compat.VERIFIED_KERAS_VERSIONS`.

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Overrides Keras's hook (`keras_compat.SYMBOLIC_BUILD_HOOK`). Under a
        # tf.distribute strategy, Keras (3.15) builds the metrics and the loss from the
        # shapes of a real batch, which it first averages across replicas with
        # `strategy.reduce`; under MultiWorkerMirroredStrategy that reduce fails
        # ("Attempt to convert a value (PerReplica...) to a Tensor"). The shapes and
        # dtypes are known from the model's inputs: `((image, label), label)`.
        if keras_compat.distribute_strategy_of(self) is None:
            return
        image, label = self.inputs
        with self.distribute_strategy.scope():
            keras_compat.symbolic_build(self, data_batch=((image, label), label))

    def _multi_worker(self):
        return keras_compat.in_multi_worker_mode(keras_compat.distribute_strategy_of(self))

    def _as_multi_worker_logs(self, logs):
        # Keras (3.15) averages the step's logs across workers with
        # `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars ("Invalid
        # reduction dimension 0 for input with 0 dimensions", tensorflow#72388). Give
        # every value a leading axis of 1: the reduction then returns the mean scalar.
        if not self._multi_worker():
            return logs
        return {name: keras.ops.reshape(value, (1,)) for name, value in logs.items()}

    def train_step(self, *args, **kwargs):
        logs = super().train_step(*args, **kwargs)
        self._synchronize_moving_statistics()
        return self._as_multi_worker_logs(logs)

    def _synchronize_moving_statistics(self):
        # Under a tf.distribute strategy each replica updates the batch-norm moving
        # statistics from its own part of the global batch, and Keras (3.15) keeps those
        # per-replica copies apart: after training the replicas hold different moving
        # statistics, the saved model holds the first replica's, and `predict` under the
        # strategy mixes them. Average them across replicas after every step (one small
        # all-reduce), as the mean aggregation of tf.keras 2 did: every replica then holds
        # the same statistics, whose moving mean is the moving average of the global
        # batch means. Layers with `synchronized=True` already agree.
        strategy = keras_compat.distribute_strategy_of(self)
        if strategy is None or strategy.num_replicas_in_sync == 1:
            return
        context = tf.distribute.get_replica_context()
        if context is None:
            return
        variables = self._replica_local_statistics()
        if not variables:
            return
        averaged = context.all_reduce("mean", [variable.value for variable in variables])
        for variable, value in zip(variables, averaged):
            variable.assign(value)

    def _replica_local_statistics(self):
        variables = []
        for layer in keras_compat.nested_layers(self):
            if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
                variables.extend(
                    variable
                    for variable in (layer.moving_mean, layer.moving_variance)
                    if variable is not None
                )
        return variables

    def test_step(self, *args, **kwargs):
        return self._as_multi_worker_logs(super().test_step(*args, **kwargs))

    def compile_from_config(self, config):
        # `compile` only adds defaults, so a saved compile config replays through it.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
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


def build_training_model(backbone, head, name="face_training_model"):
    """Assemble `[image, label] -> logits` from a backbone and a head (`FaceTrainingModel`).

    Args:
        backbone: `keras.Model` from images to embeddings.
        head: margin head, e.g. `keras_face.heads.ArcFace(num_classes)`.
        name: str. Model name. Defaults to `"face_training_model"`.

    Returns:
        A `FaceTrainingModel`; its `embedding_model` is `backbone`.

    Example:
        ```python
        model = keras_face.training.build_training_model(
            keras_face.models.iresnet18(), keras_face.heads.ArcFace(1000))
        ```
    """
    return FaceTrainingModel(backbone, head, name=name)
