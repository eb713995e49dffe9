"""The loss of models that output their own per-example loss contributions."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_face")
class PrecomputedLoss(keras.losses.Loss):
    """`mean(y_pred)`: the model's output already is its per-example loss contribution.

    Going through a `keras.losses.Loss` keeps Keras' own handling of the loss under a
    `tf.distribute` strategy (the mean over the replica's examples divided by the number
    of replicas, then summed gradients), so a model that outputs
    `N_global * (its share of the global loss)` per example trains on exactly the
    global-batch loss. `y_true` is ignored.

    Args:
        name: str. Defaults to `"precomputed_loss"`.
        **kwargs: other arguments of `keras.losses.Loss` (`reduction`, `dtype`).

    Example:
        ```python
        model.compile(optimizer="sgd", loss=keras_face.class_pools.PrecomputedLoss())
        ```
    """

    def __init__(self, name="precomputed_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return ops.cast(y_pred, "float32")
