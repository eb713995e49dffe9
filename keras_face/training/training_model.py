"""`TrainingModel`: what every training model of the package needs under `tf.distribute`."""

import keras
import tensorflow as tf

from keras_face.heads import backend_ops
from keras_face.training import keras_compat


class TrainingModel(keras.Model):
    """Base of the package's training models: `fit` under one device or a strategy.

    A training model is functional, takes `[image, label, *extras]` (the input named
    `"label"` is also the target `y`) and is fed `((image, label, *extras), label)`.
    Under a `tf.distribute` strategy this base makes `fit` correct where Keras alone is
    not: it builds the metrics from the inputs' shapes (not from a cross-replica reduce
    that fails under MultiWorkerMirroredStrategy), averages the batch-norm moving
    statistics across replicas after every step, and gives multi-worker logs the axis
    Keras' cross-worker mean needs. Subclasses call `check_strategy_support()` at the end
    of `__init__` and override `symbolic_batch` when the target is not the label input.

    Example:
        ```python
        class MyTrainingModel(keras_face.training.TrainingModel):
            def __init__(self, backbone, head, **kwargs):
                image = keras.Input(backbone.input_shape[1:], name="image")
                label = keras.Input((), dtype="int32", name="label")
                super().__init__([image, label], head([backbone(image), label]), **kwargs)
                self.check_strategy_support()
        ```
    """

    def check_strategy_support(self):
        """Check the Keras version when the model is built under a strategy."""
        if keras_compat.distribute_strategy_of(self) is not None:
            # The workarounds below run under a strategy only.
            keras_compat.check_keras_version()

    @staticmethod
    def replica_share(loss):
        """A replica's mean loss as its share of the global-batch loss (for `compute_loss`).

        Under a `tf.distribute` strategy the replicas' gradients are summed, so a model
        that computes its own loss in `compute_loss` (rather than through a compiled
        `keras.losses.Loss`, which Keras scales) divides its replica mean by the number of
        replicas; Keras multiplies it back for the logged loss. Without a strategy (or on
        another backend) the loss is unchanged.

        Args:
            loss: scalar tensor, the mean over the replica's examples.

        Returns:
            The scaled scalar.
        """
        return backend_ops.replica_share(loss)

    def compile_from_config(self, config):
        # A subclass's `compile` only adds defaults or checks the loss, so a saved compile
        # config replays through it.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def symbolic_batch(self):
        """`(inputs, target)` of one batch, symbolic: `(tuple(self.inputs), label input)`."""
        labels = [tensor for tensor in self.inputs if tensor.name.startswith("label")]
        target = labels[0] if labels else None
        return tuple(self.inputs), target

    # The private names of Keras and TensorFlow used below live in `keras_compat`, each
    # pinned by a test (tests/training/test_keras_compat.py) and verified on the Keras
    # versions of `keras_compat.VERIFIED_KERAS_VERSIONS`.

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Overrides Keras's hook (`keras_compat.SYMBOLIC_BUILD_HOOK`). Under a
        # tf.distribute strategy, Keras (3.15) builds the metrics and the loss from the
        # shapes of a real batch, which it first averages across replicas with
        # `strategy.reduce`; under MultiWorkerMirroredStrategy that reduce fails
        # ("Attempt to convert a value (PerReplica...) to a Tensor"). The shapes and
        # dtypes are known from the model's inputs (`symbolic_batch`).
        if keras_compat.distribute_strategy_of(self) is None:
            return
        with self.distribute_strategy.scope():
            keras_compat.symbolic_build(self, data_batch=self.symbolic_batch())

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
